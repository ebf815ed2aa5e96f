"""``python -m bench.soak``: run ``scenarios/soak.toml`` for some wall minutes, then judge the
run's health from the metrics in its run file, its ledger and its logs.

    python -m bench.soak --minutes 30            what ``make soak`` runs
    python -m bench.soak --verdict RUN_DIR       judge a run that already ran

A soak that ran records its figures (``soak_*``) in ``bench-results.json``.

The verdict leaves out the first half of the run as warm-up (every bounded structure fills
during it: each agent's memory of 300 posts and 200 agents, the engine's window of recent
replies per agent, which at the scenario's 480x takes about 5 sim-days, 15 wall minutes), then
compares the first and the last fifth of the rest: with samples each minute, 30 minutes gives
three per window, 5 minutes one. It exits 1 when a check fails. Every threshold is stated below
and printed next to its figure.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import record
from moltsim.scenario.load import load_scenario
from moltsim.store.metrics import Series, growth, read_series, run_state, steady
from moltsim.store.reader import open_readonly

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "scenarios" / "soak.toml"

WINDOW_FRACTION = 0.2
"""The first and the last fifth of the samples after the warm-up are compared (medians, or
means for the action rate). The warm-up is the first half of the run (``steady``)."""

RSS_MB_PER_HOUR = 20.0
"""Most a runner, broker or pool may grow per wall hour (their working sets are bounded)..."""
RSS_NOISE_MB = 8.0
"""...unless the change is below this (allocator arenas and caches come and go)."""
ENGINE_RSS_KB_PER_ACTION = 3.0
"""The engine's working set grows with the forum (posts, votes, each agent's window of recent
replies): its growth is judged per accepted action, not per hour."""
OPEN_FILES_GROWTH = 8
"""Most descriptors (files, sockets, pipes) a process may gain from first to last window."""
RUN_FILE_KB_PER_ACTION = 4.0
"""Most the run file (database and WAL) may grow per accepted action: a WAL that is never
folded back would exceed it."""
RATE_FLOOR = 0.5
"""The last window's accepted actions per minute must be at least this share of the first's."""
RULE_REFUSALS_MAX = 0.25
"""Most the share of envelopes the forum's rules may refuse (rate limits, gone, duplicate...):
offline agents meet them now and then, never most of the time."""
REPLAYS_MAX = 0.001
"""Most the share of envelopes refused as replays (resends after a lost reply are harmless)."""
ERROR_CODES = (
    "internal", "malformed", "too_large", "unknown_agent", "bad_signature", "not_your_agent",
)  # fmt: skip
"""Refusals that our own pools must never cause: any one fails the soak."""


@dataclass(frozen=True)
class Check:
    name: str
    figure: str
    limit: str
    ok: bool


@dataclass(frozen=True)
class Verdict:
    checks: list[Check]
    figures: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        width = max(len(c.name) for c in self.checks)
        out = [
            f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<{width}}  {c.figure:<28} limit {c.limit}"
            for c in self.checks
        ]
        out.append(f"soak verdict: {'PASS' if self.ok else 'FAIL'}")
        return out


def _accepted(conn: sqlite3.Connection, begin: float, end: float) -> int:
    (n,) = conn.execute(
        "SELECT COUNT(*) FROM actions WHERE outcome = 'ok' AND wall_time > ? AND wall_time <= ?",
        (begin, end),
    ).fetchone()
    return int(n)


def judge(conn: sqlite3.Connection, logs: Path | None = None) -> Verdict:
    """The soak's checks, from a run file (and its run folder's ``logs/`` when given)."""
    series = read_series(conn)
    checks: list[Check] = []
    figures: dict[str, float] = {}
    state = run_state(conn).state
    checks.append(Check("run state", state, "finished", state == "finished"))
    if not series:
        checks.append(Check("metrics", "none recorded", "samples", False))
        return Verdict(checks, figures)
    walls = [t for samples in series.values() for t, _ in samples]
    start, span = min(walls), max(walls) - min(walls)
    figures["soak_wall_minutes"] = span / 60
    processes = sorted({p for p, _ in series if p}, key=lambda p: (p != "engine", p))
    for process in processes:
        rss = steady(series.get((process, "rss_kb"), []), start, span)
        if len(rss) >= 2:
            checks.append(_rss_check(conn, process, rss, figures))
        fds = steady(series.get((process, "open_files"), []), start, span)
        if len(fds) >= 2:
            gained = growth(fds, WINDOW_FRACTION).change
            figures[f"soak_{process}_open_files_growth"] = gained
            checks.append(
                Check(f"{process} open files", f"{gained:+.0f}", f"+{OPEN_FILES_GROWTH}",
                      gained <= OPEN_FILES_GROWTH)
            )  # fmt: skip
    checks.append(
        _run_file_check(conn, steady(series.get(("", "run_file_bytes"), []), start, span), figures)
    )
    checks.append(
        _rate_check(steady(series.get(("", "actions_per_min"), []), start, span), figures)
    )
    checks += _refusal_checks(conn, figures)
    restarts = _restarts(series, logs)
    figures["soak_restarts"] = restarts
    checks.append(Check("restarts (engine, pools, broker)", f"{restarts}", "0", restarts == 0))
    if logs is not None:
        errors = _log_errors(logs)
        figures["soak_log_errors"] = len(errors)
        shown = f"{len(errors)}" + (f" ({errors[0][:60]})" if errors else "")
        checks.append(Check("errors in the logs", shown, "0", not errors))
    return Verdict(checks, figures)


def _rss_check(
    conn: sqlite3.Connection,
    process: str,
    rss: list[tuple[float, float]],
    figures: dict[str, float],
) -> Check:
    g = growth(rss, WINDOW_FRACTION)
    mb, mb_h = g.change / 1024, g.per_hour / 1024
    figures[f"soak_{process}_rss_mb_per_hour"] = mb_h
    figures[f"soak_{process}_rss_mb_last"] = rss[-1][1] / 1024
    if process == "engine":
        size = max(1, round(len(rss) * WINDOW_FRACTION))
        begin = statistics.median(t for t, _ in rss[:size])
        end = statistics.median(t for t, _ in rss[-size:])
        actions = _accepted(conn, begin, end)
        per_action = g.change / actions if actions else (0.0 if g.change <= 0 else float("inf"))
        figures["soak_engine_rss_kb_per_action"] = per_action
        return Check(
            "engine RSS growth", f"{mb:+.1f} MB, {per_action:.2f} KB/action",
            f"{ENGINE_RSS_KB_PER_ACTION} KB/action", per_action <= ENGINE_RSS_KB_PER_ACTION,
        )  # fmt: skip
    ok = mb_h <= RSS_MB_PER_HOUR or mb < RSS_NOISE_MB
    return Check(
        f"{process} RSS growth", f"{mb:+.1f} MB, {mb_h:+.1f} MB/h",
        f"{RSS_MB_PER_HOUR:g} MB/h (or < {RSS_NOISE_MB:g} MB)", ok,
    )  # fmt: skip


def _run_file_check(
    conn: sqlite3.Connection, size: list[tuple[float, float]], figures: dict[str, float]
) -> Check:
    if len(size) < 2:
        return Check("run file growth", "too few samples", "2 samples", False)
    g = growth(size, WINDOW_FRACTION)
    actions = _accepted(conn, size[0][0], size[-1][0])
    grown = size[-1][1] - size[0][1]
    per_action = grown / 1024 / actions if actions else 0.0
    figures["soak_run_file_mb_per_hour"] = g.per_hour / 1e6
    figures["soak_run_file_kb_per_action"] = per_action
    figures["soak_run_file_mb_last"] = size[-1][1] / 1e6
    return Check(
        "run file growth", f"{grown / 1e6:+.1f} MB, {per_action:.2f} KB/action",
        f"{RUN_FILE_KB_PER_ACTION:g} KB/action", per_action <= RUN_FILE_KB_PER_ACTION,
    )  # fmt: skip


def _rate_check(rate: list[tuple[float, float]], figures: dict[str, float]) -> Check:
    if len(rate) < 2:
        return Check("action rate", "too few samples", "2 samples", False)
    size = max(1, round(len(rate) * WINDOW_FRACTION))
    first = statistics.mean(v for _, v in rate[:size])
    last = statistics.mean(v for _, v in rate[-size:])
    share = last / first if first > 0 else 0.0
    figures["soak_actions_per_min_first"] = first
    figures["soak_actions_per_min_last"] = last
    return Check(
        "action rate, last vs first", f"{last:,.0f} vs {first:,.0f}/min ({share:.2f})",
        f">= {RATE_FLOOR:g}x", first > 0 and share >= RATE_FLOOR,
    )  # fmt: skip


def _refusal_checks(conn: sqlite3.Connection, figures: dict[str, float]) -> list[Check]:
    counts = dict(conn.execute("SELECT outcome, COUNT(*) FROM actions GROUP BY outcome"))
    total = sum(counts.values()) or 1
    errors = {code: counts[code] for code in ERROR_CODES if counts.get(code)}
    replays = counts.get("replay", 0)
    rules = total - counts.get("ok", 0) - sum(errors.values()) - replays
    figures["soak_envelopes"] = total
    figures["soak_rule_refusal_share"] = rules / total
    figures["soak_error_refusals"] = sum(errors.values())
    return [
        Check("errors (internal, malformed, forged...)", json.dumps(errors) if errors else "0",
              "0", not errors),
        Check("replays", f"{replays:,} of {total:,}", f"{REPLAYS_MAX:.1%}",
              replays / total <= REPLAYS_MAX),
        Check("refused by the rules", f"{rules / total:.1%} of {total:,}",
              f"{RULE_REFUSALS_MAX:.0%}", rules / total <= RULE_REFUSALS_MAX),
    ]  # fmt: skip


def _restarts(series: Series, logs: Path | None) -> int:
    """Restarts of supervised processes: the last ``restarts`` sample of each, or what the
    runner logged, whichever says more."""
    from_metrics = sum(
        int(samples[-1][1]) for (_, name), samples in series.items() if name == "restarts"
    )
    from_logs = 0
    if logs is not None and (run_log := logs / "run.jsonl").exists():
        text = run_log.read_text(errors="replace")
        from_logs = sum("restarted (restart #" in line for line in text.splitlines())
    return max(from_metrics, from_logs)


def _log_errors(logs: Path) -> list[str]:
    """Error records in the JSON-lines logs and tracebacks in the processes' output."""
    found = []
    for path in sorted(logs.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                found.append(f"{path.name}: {record.get('msg', '')}")
    for path in sorted(logs.glob("*.out")):
        if "Traceback" in path.read_text(errors="replace"):
            found.append(f"{path.name}: a traceback")
    return found


def verdict_for(run_dir: Path) -> Verdict:
    conn = open_readonly(run_dir)
    try:
        return judge(conn, run_dir / "logs" if (run_dir / "logs").is_dir() else None)
    finally:
        conn.close()


def run_soak(minutes: float, scenario: Path, run_dir: Path) -> int:
    """``moltsim run`` for ``minutes`` of wall time (the sim duration the scenario's speed
    covers in that time); returns its exit status."""
    speed = load_scenario(scenario).clock.speed
    duration = minutes * 60 * speed
    print(f"soak: {scenario} for {minutes:g} wall minutes ({duration / 3600:g} sim-hours at"
          f" {speed:g}x) in {run_dir}", flush=True)  # fmt: skip
    command = [sys.executable, "-m", "moltsim.cli", "run", str(scenario), "--run-dir",
               str(run_dir), "--duration", f"{duration:g}"]  # fmt: skip
    return subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="wall minutes (default 30)")
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    parser.add_argument("--run-dir", type=Path, help="where the run goes (default runs/soak-...)")
    parser.add_argument("--verdict", type=Path, metavar="RUN_DIR", help="only judge this run")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    run_dir = args.verdict
    if run_dir is None:
        run_dir = args.run_dir or REPO / "runs" / time.strftime("soak-%Y%m%d-%H%M%S")
        code = run_soak(args.minutes, args.scenario, run_dir)
        if code != 0:
            print(f"soak: moltsim run exited with {code}", file=sys.stderr)
    verdict = verdict_for(run_dir)
    if args.verdict is None:
        print("soak figures (bench-results.json):")
        record(verdict.figures)
    print(f"soak verdict for {run_dir}:")
    for line in verdict.lines():
        print(line)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
