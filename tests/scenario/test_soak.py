"""The soak's verdict (``bench/soak.py``), judged on synthetic run files: a healthy half hour
passes, and each kind of decay (a leak of memory or descriptors, a run file that swells, an
action rate that collapses, errors, restarts, a run that did not finish) fails its own check.
The soak itself is a benchmark (``make soak``), not a test."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench import soak
from moltsim.scenario.load import load_scenario, plan_agents
from moltsim.store.runfile import RunFile

T0 = 1_800_000_000.0
MINUTES = 30
PROCESSES = ("engine", "runner", "broker", "pool-1", "pool-2")


@dataclass
class Shape:
    """A half-hour soak, sampled each minute; every field a way to spoil it."""

    actions_per_min: float = 300.0
    rate_at_end: float = 1.0
    """Multiplies the action rate over the run, linearly, up to this at the end."""
    rss_mb_per_hour: dict[str, float] = field(default_factory=lambda: {"engine": 10.0})
    rss_filled_mb: dict[str, float] = field(default_factory=dict)
    """Growth of a bounded structure: linear over the first 40% of the run, then flat."""
    fds_gained: dict[str, int] = field(default_factory=dict)
    run_file_bytes_per_action: float = 900.0
    state: str = "finished"
    outcomes: dict[str, int] = field(default_factory=dict)
    """Extra refused envelopes, by code."""
    restarts: dict[str, int] = field(default_factory=dict)
    log_lines: list[dict[str, str]] = field(default_factory=list)


async def make_run(folder: Path, shape: Shape) -> Path:
    db = folder / "run.db"
    runfile = await RunFile.open(db)
    await runfile.set_meta(state=shape.state, state_at=T0 + MINUTES * 60)
    await runfile.close()
    metrics: list[tuple[float, float, str, str, float]] = []
    actions: list[tuple[float, float, str]] = []
    size = 50e6
    for minute in range(MINUTES + 1):
        wall = T0 + 60 * minute
        rate = shape.actions_per_min * (1 + (shape.rate_at_end - 1) * minute / MINUTES)
        if minute:
            count = round(rate)
            actions += [(wall - 60 + 60 * (i + 0.5) / count, wall, "ok") for i in range(count)]
            size += count * shape.run_file_bytes_per_action
        wobble = 600 * math.sin(minute)  # KB: allocators breathe
        for process in PROCESSES:
            rss = 80_000 + wobble + shape.rss_mb_per_hour.get(process, 0.0) * 1024 * minute / 60
            rss += shape.rss_filled_mb.get(process, 0.0) * 1024 * min(1.0, minute / 12)
            fds = 12 + round(shape.fds_gained.get(process, 0) * minute / MINUTES)
            metrics += [
                (wall, wall, process, "rss_kb", rss),
                (wall, wall, process, "open_files", float(fds)),
                (wall, wall, process, "cpu_percent", 20.0),
                (wall, wall, process, "restarts", float(shape.restarts.get(process, 0))),
            ]
        metrics += [
            (wall, wall, "", "run_file_bytes", size),
            (wall, wall, "", "agents_online", 1e3),
        ]
        if minute:
            metrics.append((wall, wall, "", "actions_per_min", float(round(rate))))
    for code, n in shape.outcomes.items():
        actions += [(T0 + 60, T0 + 60, code)] * n
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO metrics (wall_time, sim_time, process, name, value)"
            " VALUES (?, ?, ?, ?, ?)",
            metrics,
        )
        conn.executemany(
            "INSERT INTO actions (wall_time, sim_time, type, payload, outcome)"
            " VALUES (?, ?, 'vote', '{}', ?)",
            actions,
        )
    conn.close()
    logs = folder / "logs"
    logs.mkdir()
    (logs / "run.jsonl").write_text("".join(json.dumps(line) + "\n" for line in shape.log_lines))
    (logs / "engine.out").write_text("")
    return folder


def failed(verdict: soak.Verdict) -> list[str]:
    return [c.name for c in verdict.checks if not c.ok]


async def test_a_healthy_half_hour_passes(tmp_path: Path) -> None:
    verdict = soak.verdict_for(await make_run(tmp_path, Shape()))
    assert failed(verdict) == [], "\n".join(verdict.lines())
    assert verdict.ok and verdict.lines()[-1] == "soak verdict: PASS"
    names = [c.name for c in verdict.checks]
    assert "engine RSS growth" in names and "pool-2 open files" in names
    assert verdict.figures["soak_wall_minutes"] == 30
    assert verdict.figures["soak_run_file_kb_per_action"] == pytest.approx(900 / 1024, rel=0.01)
    assert verdict.figures["soak_actions_per_min_last"] == 300
    assert verdict.figures["soak_engine_rss_kb_per_action"] == pytest.approx(
        10 * 1024 / 300 / 60, rel=0.15
    )


@pytest.mark.parametrize(
    ("shape", "check"),
    [
        (Shape(rss_mb_per_hour={"pool-2": 60.0}), "pool-2 RSS growth"),
        (Shape(rss_mb_per_hour={"runner": 40.0}), "runner RSS growth"),
        (Shape(rss_mb_per_hour={"engine": 250.0}), "engine RSS growth"),
        (Shape(fds_gained={"broker": 40}), "broker open files"),
        (Shape(run_file_bytes_per_action=9_000), "run file growth"),
        (Shape(rate_at_end=0.2), "action rate, last vs first"),
        (Shape(outcomes={"internal": 1}), "errors (internal, malformed, forged...)"),
        (Shape(outcomes={"bad_signature": 3}), "errors (internal, malformed, forged...)"),
        (Shape(outcomes={"replay": 200}), "replays"),
        (Shape(outcomes={"rate_limited": 5_000}), "refused by the rules"),
        (Shape(restarts={"engine": 1}), "restarts (engine, pools, broker)"),
        (Shape(state="interrupted"), "run state"),
        (
            Shape(log_lines=[{"level": "error", "msg": "processing a group failed"}]),
            "errors in the logs",
        ),
    ],
)
async def test_each_kind_of_decay_fails_its_own_check(
    tmp_path: Path, shape: Shape, check: str
) -> None:
    verdict = soak.verdict_for(await make_run(tmp_path, shape))
    assert failed(verdict) == [check], "\n".join(verdict.lines())
    assert verdict.lines()[-1] == "soak verdict: FAIL"


async def test_small_wobbles_and_a_brief_dip_do_not_fail(tmp_path: Path) -> None:
    """A pool that settles 5 MB higher (below the noise floor) and a rate 30% lower at the end
    are a healthy run."""
    shape = Shape(rss_mb_per_hour={"engine": 10.0, "pool-1": 10.0}, rate_at_end=0.7)
    verdict = soak.verdict_for(await make_run(tmp_path, shape))
    assert failed(verdict) == [], "\n".join(verdict.lines())


async def test_memory_that_fills_up_during_the_warm_up_and_then_stays_is_no_leak(
    tmp_path: Path,
) -> None:
    """Agents' memories and the engine's reply windows are bounded: they fill over the first
    sim-days (the first half of a soak), then stay. The same growth kept up is a leak."""
    filled = Shape(rss_filled_mb={"pool-1": 30.0, "pool-2": 30.0})
    verdict = soak.verdict_for(await make_run(tmp_path / "filled", filled))
    assert failed(verdict) == [], "\n".join(verdict.lines())
    leaking = Shape(rss_mb_per_hour={"engine": 10.0, "pool-1": 30.0 / 12 * 60})
    verdict = soak.verdict_for(await make_run(tmp_path / "leaking", leaking))
    assert failed(verdict) == ["pool-1 RSS growth"]


async def test_restarts_logged_by_the_runner_count_too(tmp_path: Path) -> None:
    lines = [{"level": "warning", "msg": "pool-1 restarted (restart #1)"}]
    verdict = soak.verdict_for(await make_run(tmp_path, Shape(log_lines=lines)))
    assert failed(verdict) == ["restarts (engine, pools, broker)"]


async def test_the_command_exits_non_zero_on_a_failed_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = await make_run(tmp_path / "good", Shape())
    bad = await make_run(tmp_path / "bad", Shape(state="failed"))
    assert soak.main(["--verdict", str(good)]) == 0
    assert "soak verdict: PASS" in capsys.readouterr().out
    assert soak.main(["--verdict", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL run state" in out and "soak verdict: FAIL" in out


async def test_a_run_without_metrics_fails(tmp_path: Path) -> None:
    runfile = await RunFile.open(tmp_path / "run.db")
    await runfile.set_meta(state="finished", state_at=T0)
    await runfile.close()
    verdict = soak.verdict_for(tmp_path)
    assert failed(verdict) == ["metrics"]


def test_the_soak_scenario_is_a_thousand_offline_agents_in_fast_real_time() -> None:
    scenario = load_scenario(soak.SCENARIO)
    agents = plan_agents(scenario, soak.SCENARIO)
    assert 1_000 <= len(agents) <= 1_050
    assert {a.brain for a in agents} == {"offline"}
    assert scenario.clock.mode == "realtime" and scenario.clock.speed >= 100
    assert scenario.metrics.interval == 60
    assert scenario.budgets.max_wall_time is None  # --duration decides
    assert scenario.clock.duration / scenario.clock.speed == pytest.approx(30 * 60)
