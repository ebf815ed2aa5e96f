"""Reading a run's state and its ``metrics`` table (the samples the runner takes of the run's
health), for ``moltsim stats``, the soak verdict and any other reader; and the token prices of
the scenario saved with the run, which the watcher's header and the report price tokens with.

Run files made before schema 3 have no ``metrics`` table and no ``state``: readers get empty
series and a state inferred from the ledger.
"""

from __future__ import annotations

import sqlite3
import statistics
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

Series = dict[tuple[str, str], list[tuple[float, float]]]
"""``(process, name)`` to its ``(wall_time, value)`` samples, oldest first."""

WARMUP_FRACTION = 0.5
WARMUP_MIN_S = 120.0
"""Growth is judged after a warm-up: the first half of the run, and at least its first two
minutes. Processes import and connect, every agent subscribes and follows on its first
heartbeats, and bounded structures (agents' memories, the engine's window of recent replies)
fill over the first sim-days; a leak goes on growing after that, a cache does not."""


@dataclass(frozen=True)
class RunState:
    state: str
    """running, finished, stopped, interrupted, failed; or ``unknown`` for an older run file
    whose ledger does not reach the scenario's end."""
    at: float | None
    """Wall time of the last change; None when inferred from the ledger."""


def run_state(conn: sqlite3.Connection) -> RunState:
    meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
    if "state" in meta:
        at = meta.get("state_at")
        return RunState(meta["state"], float(at) if at else None)
    (last,) = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()
    end = meta.get("end")
    if last is not None and end is not None and float(last) >= float(end):
        return RunState("finished", None)
    return RunState("unknown", None)


def token_prices(scenario_text: str | None) -> tuple[float, float] | None:
    """Prompt and completion token prices (USD) from the scenario saved with the run
    (``run_meta.scenario``), or None where it names none or cannot be read."""
    if not scenario_text:
        return None
    try:
        budgets = tomllib.loads(scenario_text).get("budgets", {})
        prompt = float(budgets.get("prompt_token_price_usd", 0.0))
        completion = float(budgets.get("completion_token_price_usd", 0.0))
    except (tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError):
        return None
    return (prompt, completion) if prompt or completion else None


def has_metrics(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metrics'"
    ).fetchone()
    return found is not None


def read_series(conn: sqlite3.Connection) -> Series:
    series: Series = defaultdict(list)
    if not has_metrics(conn):
        return {}
    for process, name, wall, value in conn.execute(
        "SELECT process, name, wall_time, value FROM metrics ORDER BY wall_time, id"
    ):
        series[(process, name)].append((float(wall), float(value)))
    return dict(series)


@dataclass(frozen=True)
class Growth:
    """How a series moved: the median of its first fifth against that of its last fifth."""

    first: float
    last: float
    hours: float
    """Wall hours between the middles of the two windows (0 with a single sample)."""

    @property
    def change(self) -> float:
        return self.last - self.first

    @property
    def per_hour(self) -> float:
        return self.change / self.hours if self.hours > 0 else 0.0


def steady(
    samples: list[tuple[float, float]], start: float, span: float
) -> list[tuple[float, float]]:
    """The samples after the warm-up of a run that began at ``start`` and lasted ``span``
    seconds; in a run too short for that, the later half of them (at least two)."""
    warmup = max(WARMUP_FRACTION * span, WARMUP_MIN_S)
    kept = [s for s in samples if s[0] >= start + warmup]
    return kept if len(kept) >= 2 else samples[min(len(samples) // 2, len(samples) - 2) :]


def growth(samples: list[tuple[float, float]], fraction: float = 0.2) -> Growth:
    """Compare the first and the last ``fraction`` of the samples (at least one each); medians
    so that one spike does not decide."""
    if not samples:
        raise ValueError("no samples")
    size = max(1, round(len(samples) * fraction))
    head, tail = samples[:size], samples[-size:]
    first = statistics.median(v for _, v in head)
    last = statistics.median(v for _, v in tail)
    middle_head = statistics.median(t for t, _ in head)
    middle_tail = statistics.median(t for t, _ in tail)
    return Growth(first, last, (middle_tail - middle_head) / 3600)


def _wall(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary_lines(conn: sqlite3.Connection) -> list[str]:
    """The run's state and a few lines on its metrics: last values, and their growth after the
    warm-up (see :func:`steady`)."""
    state = run_state(conn)
    lines = [f"state     {state.state}" + (f" since {_wall(state.at)}" if state.at else "")]
    series = read_series(conn)
    if not series:
        return lines
    walls = [t for samples in series.values() for t, _ in samples]
    span = max(walls) - min(walls)
    count = max(len(s) for s in series.values())
    lines.append(
        f"metrics   {count:,} samples over {span / 60:.1f} wall minutes"
        " (growth: after the first half)"
    )
    start = min(walls)
    processes = sorted({p for p, _ in series if p}, key=lambda p: (p != "engine", p))
    for process in processes:
        parts = []
        if rss := series.get((process, "rss_kb")):
            g = growth(steady(rss, start, span))
            parts.append(f"rss {rss[-1][1] / 1024:,.1f} MB ({g.change / 1024:+,.1f} MB)")
        if fds := series.get((process, "open_files")):
            gained = round(growth(steady(fds, start, span)).change)
            parts.append(f"open files {fds[-1][1]:,.0f} ({gained:+,d})")
        if cpu := series.get((process, "cpu_percent")):
            parts.append(f"cpu {statistics.mean(v for _, v in cpu):,.0f}% avg")
        if (restarts := series.get((process, "restarts"))) and restarts[-1][1]:
            parts.append(f"{restarts[-1][1]:,.0f} restarts")
        lines.append(f"  {process:<12}" + ", ".join(parts))
    parts = []
    if size := series.get(("", "run_file_bytes")):
        parts.append(f"run file {size[-1][1] / 1e6:,.1f} MB")
    if rate := series.get(("", "actions_per_min")):
        parts.append(f"{statistics.mean(v for _, v in rate):,.0f} actions/min avg")
    if online := series.get(("", "agents_online")):
        peak = max(v for _, v in online)
        parts.append(f"{online[-1][1]:,.0f} agents online (at most {peak:,.0f})")
    if parts:
        lines.append(f"  {'run':<12}" + ", ".join(parts))
    return lines
