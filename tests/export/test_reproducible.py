"""Two stepped offline runs of one scenario and seed give byte-identical exports, except for
the signature material; another seed gives another export. (The reproducibility proof the
design promises.)

Every run registers its agents with fresh key pairs (a seed that decided secret keys would let
anyone holding the scenario sign as its agents), so ``agents.public_key`` and ``actions.sig``
differ between runs; everything else, byte for byte, does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moltsim.export import ExportOptions, export_run
from moltsim.export.records import ENTITIES
from tests.export.conftest import SmokeRuns

pytestmark = pytest.mark.slow
KEYED = {"agents.jsonl": "public_key", "actions.jsonl": "sig"}
"""Files holding signature material, and the field that holds it."""


def _export(run: Path, out: Path) -> dict[str, bytes]:
    export_run(run, out, ExportOptions())
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _without(data: bytes, field: str) -> list[str]:
    """JSONL lines with ``field`` blanked, as text (key order and everything else kept)."""
    lines = []
    for line in data.decode().splitlines():
        record = json.loads(line)
        record[field] = None
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return lines


def test_same_seed_gives_byte_identical_exports(smoke_runs: SmokeRuns, tmp_path: Path) -> None:
    first = _export(smoke_runs.first, tmp_path / "first")
    again = _export(smoke_runs.again, tmp_path / "again")
    assert set(first) == {f"{e}.jsonl" for e in ENTITIES} | {"manifest.json"}
    for name in sorted(set(first) - set(KEYED) - {"manifest.json"}):
        assert first[name] == again[name], f"{name} differs between two runs of one seed"
    for name, field in KEYED.items():
        assert first[name] != again[name], f"{name}: fresh keys give fresh {field}s"
        assert _without(first[name], field) == _without(again[name], field), name
    one, two = json.loads(first["manifest.json"]), json.loads(again["manifest.json"])
    for manifest in (one, two):
        for name in KEYED:
            del manifest["files"][name]["sha256"]
    assert one == two
    assert first["posts.jsonl"] and first["comments.jsonl"] and first["votes.jsonl"]


def test_another_seed_gives_another_export(smoke_runs: SmokeRuns, tmp_path: Path) -> None:
    first = _export(smoke_runs.first, tmp_path / "first")
    other = _export(smoke_runs.seed8, tmp_path / "seed8")
    assert first["posts.jsonl"] != other["posts.jsonl"]
    assert _without(first["actions.jsonl"], "sig") != _without(other["actions.jsonl"], "sig")
    assert json.loads(other["manifest.json"])["seed"] == 8
