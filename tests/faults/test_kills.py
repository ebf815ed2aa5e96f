"""SIGKILL, again and again, inside one real run: the engine five times and each pool once. The
runner brings every part back, the run reaches its end, and the run file holds every action a
pool was told was done, exactly once, with the forum's invariants intact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltsim.engine.rules import HOUR
from tests.faults.faultrun import (
    accepted_since,
    ack_journal,
    children,
    one,
    replaced,
    two_pool_scenario,
    verdict,
)
from tests.scenario.conftest import START_S, ledger_time, running, wait_for

pytestmark = pytest.mark.slow

ENGINE_KILLS = 5


@dataclass(frozen=True)
class Killed:
    run_dir: Path
    journal: Path
    returncode: int
    output: str
    engine_pids: list[int]
    pool_pids: list[int]


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    """10 offline agents in two pools, realtime at 3,600x for 16 sim-hours; between kills the
    ledger must move on, so every kill lands on a working run."""
    base = tmp_path_factory.mktemp("kills")
    scenario = two_pool_scenario(base, "kills", "16h")
    run_dir = base / "run"
    engine_pids: list[int] = []
    pool_pids: list[int] = []
    with ack_journal(base / "acks") as journal, running(scenario, run_dir) as run:
        one(run, "engine")
        wait_for(lambda: len(children(run, "pool")) == 2, 30, "two pools")
        accepted_since(run_dir, 0.0, 30, "the first action")
        for kill in range(ENGINE_KILLS):
            engine = one(run, "engine")
            engine_pids.append(engine.pid)
            engine.kill()
            replaced(run, "engine", engine)
            accepted_since(run_dir, time.time(), 40, f"an action after engine kill #{kill + 1}")
            if kill in (1, 3):
                pool = sorted(children(run, "pool"), key=lambda p: p.pid)[0]
                pool_pids.append(pool.pid)
                pool.kill()
                replaced(run, "pool", pool)
        code = run.wait(timeout=150)
        return Killed(run_dir, journal, code, run.text, engine_pids, pool_pids)


def test_the_run_reaches_its_end_through_every_kill(killed: Killed) -> None:
    out = killed.output
    assert killed.returncode == 0, out[-3000:]
    assert "duration was reached" in out, out[-3000:]
    logged = [line for line in out.splitlines() if " run WARNING " in line]
    assert sum("engine exited with -9" in line for line in logged) == ENGINE_KILLS
    assert sum("exited with -9" in line for line in logged) == ENGINE_KILLS + 2
    assert len(set(killed.engine_pids)) == ENGINE_KILLS


def test_every_engine_start_is_in_its_log(killed: Killed) -> None:
    starts = [
        line
        for line in (killed.run_dir / "logs" / "engine.jsonl").read_text().splitlines()
        if json.loads(line)["msg"].startswith("engine for run")
    ]
    assert len(starts) == ENGINE_KILLS + 1


def test_after_every_kill_nothing_acknowledged_is_lost_or_doubled(killed: Killed) -> None:
    assert verdict(killed.run_dir, killed.journal) == []


def test_the_run_went_on_to_its_last_hour(killed: Killed) -> None:
    last = ledger_time(killed.run_dir)
    assert last is not None and last >= START_S + 15 * HOUR


def test_a_restarted_part_does_not_load_the_llm_client() -> None:
    """Every engine, pool and runner start imports ``moltsim.cli``; the openai package alone
    took 0.6 s of it, on the path of every restart and resume. Only LLM brains need it."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, moltsim.cli; print('openai' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr
