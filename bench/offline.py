"""The offline simulation rate: wall seconds for 10,000 offline agents over 24 sim-hours,
stepped, through the real runner (embedded broker, engine and pool processes)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PERSONAS = sorted((REPO / "agents" / "personas").glob("*.toml"))


def scenario(copies: int, hours: float, per_pool: int) -> str:
    files = ", ".join(f'"{p}"' for p in PERSONAS)
    return f"""
name = "offline-bench"
seed = 3
agents_per_pool = {per_pool}

[clock]
mode = "stepped"
tick = "10m"
duration = "{hours}h"

[[submolts]]
name = "general"

[[submolts]]
name = "ai-agents"

[[submolts]]
name = "philosophy"

[[agents]]
personas = [{files}]
count = {copies}
heartbeat = "4h"

[rules.rate_limits]
new_agent_age_s = 0
"""


def run(agents: int = 10_000, hours: float = 24.0, per_pool: int = 5_000) -> dict[str, float]:
    copies = -(-agents // len(PERSONAS))
    with tempfile.TemporaryDirectory(prefix="moltsim-offline-") as tmp:
        path = Path(tmp) / "offline.toml"
        path.write_text(scenario(copies, hours, per_pool))
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "moltsim.cli", "run", str(path), "--run-dir", f"{tmp}/run"],
            capture_output=True,
            text=True,
            timeout=3_600,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-2_000:] + result.stderr[-2_000:])
        import sqlite3

        conn = sqlite3.connect(f"{tmp}/run/run.db")
        try:
            actions, writes = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(outcome = 'ok' AND type NOT IN"
                " ('feed','thread','profile','notifications','search','submolts','hello')), 0)"
                " FROM actions"
            ).fetchone()
        finally:
            conn.close()
    size = f"{agents / 1000:g}k"
    label = f"offline_{size}_agents_{hours:g}h_wall_s"
    return {
        label: wall,
        f"offline_{size}_envelopes": float(actions),
        f"offline_{size}_accepted_writes": float(writes),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:<44} {value:>12,.1f}")
