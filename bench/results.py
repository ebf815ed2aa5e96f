"""Figures go to ``bench-results.json`` at the repository root as flat ``{"name": number}``."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "bench-results.json"


def record(figures: dict[str, float], path: Path = RESULTS) -> None:
    """Merge ``figures`` into the results file (other benchmarks' figures are kept)."""
    current: dict[str, float] = {}
    if path.exists():
        current = json.loads(path.read_text())
    current.update({name: round(value, 3) for name, value in figures.items()})
    path.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")
    for name, value in figures.items():
        print(f"  {name:<48} {value:>14,.1f}")
