"""Faults in the middle of a real run: the engine SIGKILLed (the runner restarts it and nothing
acknowledged is lost), the whole runner SIGKILLed (``--resume`` finishes the run)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.scenario.conftest import (
    START_S,
    count,
    ledger_time,
    meta,
    problems,
    run_db,
    running,
    scenario_toml,
    wait_for,
)

pytestmark = pytest.mark.slow

HOUR = 3600.0
TICK = 600.0


def reached(run_dir: Path, sim_time: float) -> bool:
    last = ledger_time(run_dir)
    return last is not None and last >= sim_time


# --- the engine killed ----------------------------------------------------------------------

RT_DURATION = 12 * HOUR


@dataclass(frozen=True)
class EngineKilled:
    run_dir: Path
    returncode: int
    output: str
    killed_pid: int
    killed_at_sim: float
    killed_at_wall: float


@pytest.fixture(scope="module")
def engine_killed(tmp_path_factory: pytest.TempPathFactory) -> EngineKilled:
    """A realtime run of 10 agents (12 sim-hours at 3,600x: about 12 s) whose engine gets a
    SIGKILL once a third of the way."""
    base = tmp_path_factory.mktemp("engine-kill")
    scenario = base / "realtime.toml"
    scenario.write_text(
        scenario_toml("engine-kill", mode="realtime", speed=3600, duration="12h")
    )  # fmt: skip
    run_dir = base / "run"
    with running(scenario, run_dir) as run:
        wait_for(lambda: run.engine() is not None, 30, "the engine process")
        wait_for(
            lambda: reached(run_dir, START_S + RT_DURATION / 3), 60, "a third of the run"
        )  # fmt: skip
        engine = run.engine()
        assert engine is not None
        at_sim = ledger_time(run_dir)
        assert at_sim is not None
        at_wall = time.time()
        engine.kill()  # SIGKILL

        def replaced() -> bool:
            new = run.engine()
            return new is not None and new.pid != engine.pid

        wait_for(replaced, 30, "the runner to start a new engine")
        code = run.wait(timeout=120)
        return EngineKilled(run_dir, code, run.text, engine.pid, at_sim, at_wall)


def test_the_runner_restarts_a_killed_engine(engine_killed: EngineKilled) -> None:
    out = engine_killed.output
    assert engine_killed.returncode == 0, out[-3000:]
    assert "engine exited with -9" in out, out[-3000:]
    assert "engine restarted" in out, out[-3000:]
    assert "duration was reached" in out
    starts = [
        line
        for line in (engine_killed.run_dir / "logs" / "engine.jsonl").read_text().splitlines()
        if json.loads(line)["msg"].startswith("engine for run")
    ]
    assert len(starts) == 2
    assert not psutil.pid_exists(engine_killed.killed_pid)


def test_the_run_goes_on_after_the_engine_restart(engine_killed: EngineKilled) -> None:
    with run_db(engine_killed.run_dir) as conn:
        end = float(meta(conn)["end"])
        last = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()[0]
        after = count(
            conn,
            f"SELECT COUNT(*) FROM actions WHERE outcome = 'ok'"
            f" AND wall_time > {engine_killed.killed_at_wall + 1.0}"
            " AND type IN ('post', 'comment', 'vote')",
        )
    assert end == START_S + RT_DURATION
    assert engine_killed.killed_at_sim < end - 2 * HOUR  # the kill was mid-run
    assert after > 0, "no write was accepted after the engine came back"
    assert last >= end - HOUR  # within one heartbeat of the end


def test_a_killed_engine_loses_and_doubles_nothing(engine_killed: EngineKilled) -> None:
    """Every envelope an agent numbered is in the ledger (nothing it was told was done, or
    still waited for, got lost), accepted at most once; scores, karma, threads and rate
    limits hold across the restart."""
    with run_db(engine_killed.run_dir) as conn:
        assert count(conn, "SELECT COUNT(*) FROM agents") == 10
        assert problems(conn) == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_restart_is_recorded_in_the_run_logs(engine_killed: EngineKilled) -> None:
    records = [
        json.loads(line)
        for file in sorted((engine_killed.run_dir / "logs").glob("*.jsonl"))
        for line in file.read_text().splitlines()
    ]
    assert any("restart" in str(r.get("msg", "")) for r in records)


# --- the whole runner killed, then --resume -------------------------------------------------

ST_DURATION = 12 * HOUR


@dataclass(frozen=True)
class Resumed:
    run_dir: Path
    killed_code: int | None
    left_alive: list[int]
    at_kill: float
    agents_before: list[tuple[str, bytes]]
    keys_before: dict[str, bytes]
    returncode: int
    output: str


def agents_and_keys(run_dir: Path) -> tuple[list[tuple[str, bytes]], dict[str, bytes]]:
    with run_db(run_dir) as conn:
        agents = conn.execute("SELECT handle, public_key FROM agents ORDER BY id").fetchall()
    keys = {p.name: p.read_bytes() for p in sorted((run_dir / "keys").iterdir())}
    return [(str(h), bytes(k)) for h, k in agents], keys


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    """A stepped run (72 ticks) whose whole process group gets a SIGKILL part way, then
    ``moltsim run SCENARIO --run-dir RUN --resume``."""
    base = tmp_path_factory.mktemp("resume")
    scenario = base / "stepped.toml"
    scenario.write_text(scenario_toml("resume", mode="stepped", duration="12h", tick="10m"))
    run_dir = base / "run"
    with running(scenario, run_dir) as run:
        wait_for(
            lambda: reached(run_dir, START_S + 0.4 * ST_DURATION), 60, "40% of the run"
        )  # fmt: skip
        run.kill_group()
        killed_code = run.process.returncode
        time.sleep(0.2)
        left_alive = run.group_alive()
    at_kill = ledger_time(run_dir)
    assert at_kill is not None
    agents, keys = agents_and_keys(run_dir)
    with running(scenario, run_dir, "--resume", log=base / "resume.out") as again:
        code = again.wait(timeout=120)
        output = again.text
    return Resumed(run_dir, killed_code, left_alive, at_kill, agents, keys, code, output)


def test_killing_the_runner_group_leaves_no_process(resumed: Resumed) -> None:
    assert resumed.killed_code == -9
    assert resumed.left_alive == []


def test_resume_finishes_an_interrupted_run(resumed: Resumed) -> None:
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert "duration was reached" in resumed.output
    with run_db(resumed.run_dir) as conn:
        end = float(meta(conn)["end"])
        last = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()[0]
        hellos = count(conn, "SELECT COUNT(*) FROM actions WHERE type = 'hello'")
    assert end == START_S + ST_DURATION
    assert resumed.at_kill < end - 2 * HOUR  # it was interrupted well before its end
    assert end - TICK <= last <= end  # resumed to the last tick, not past it
    assert hellos == 20  # every agent came back once


def test_resume_keeps_the_same_agents_and_keys(resumed: Resumed) -> None:
    agents, keys = agents_and_keys(resumed.run_dir)
    assert agents == resumed.agents_before
    assert len(agents) == 10
    assert keys == resumed.keys_before


def test_a_resumed_run_is_consistent(resumed: Resumed) -> None:
    with run_db(resumed.run_dir) as conn:
        assert problems(conn) == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- a stepped engine restart ---------------------------------------------------------------


def test_a_stepped_run_keeps_ticking_after_an_engine_restart(tmp_path: Path) -> None:
    scenario = tmp_path / "stepped.toml"
    scenario.write_text(scenario_toml("step-kill", mode="stepped", duration="12h", tick="10m"))
    run_dir = tmp_path / "run"
    with running(scenario, run_dir) as run:
        wait_for(lambda: reached(run_dir, START_S + 0.3 * ST_DURATION), 60, "30% of the run")
        engine = run.engine()
        assert engine is not None
        at = ledger_time(run_dir)
        assert at is not None
        engine.kill()
        # A healthy restart takes a second or two; the stall this guards against lasted 60 s.
        wait_for(lambda: reached(run_dir, at + 3 * TICK), 20, "the clock to pass 3 more ticks")
