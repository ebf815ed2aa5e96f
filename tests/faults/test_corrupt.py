"""Broken input files around a real run: a pool manifest garbled mid-run (its pool is then
killed, so it must read it again), then a key file, a persona file, the scenario and the run
folder's copy of it (read when the original is gone) garbled before ``--resume``. Each stops
the run with an error that names the file; once the file is mended, ``--resume`` finishes the
run with nothing lost or doubled."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltsim.engine.rules import HOUR
from moltsim.identity.credentials import credentials_path
from tests.faults.faultrun import ack_journal, advanced, children, verdict
from tests.scenario.conftest import (
    FIVE,
    START_S,
    ledger_time,
    persona_path,
    running,
    scenario_toml,
    squash,
    wait_for,
)

pytestmark = pytest.mark.slow

DURATION = 12 * HOUR


@contextmanager
def garbled(path: Path, junk: bytes) -> Iterator[Path]:
    """``path`` holds ``junk`` inside the block, its own bytes again after it."""
    original = path.read_bytes()
    path.write_bytes(junk)
    try:
        yield path
    finally:
        path.write_bytes(original)


@dataclass(frozen=True)
class Attempt:
    returncode: int
    output: str
    file: Path


@dataclass(frozen=True)
class Mended:
    run_dir: Path
    journal: Path
    manifest: Attempt
    key: Attempt
    persona: Attempt
    scenario: Attempt
    scenario_copy: Attempt
    last_before: dict[str, float | None]
    finished: Attempt


@pytest.fixture(scope="module")
def mended(tmp_path_factory: pytest.TempPathFactory) -> Mended:
    base = tmp_path_factory.mktemp("corrupt")
    personas = base / "personas"
    personas.mkdir()
    text = scenario_toml("corrupt", mode="stepped", duration="12h", tick="10m")
    for handle in FIVE:
        shutil.copy(persona_path(handle), personas / f"{handle}.toml")
        text = text.replace(str(persona_path(handle)), str(personas / f"{handle}.toml"))
    scenario = base / "corrupt.toml"
    scenario.write_text("agents_per_pool = 5\n" + text)
    run_dir = base / "run"
    last_before: dict[str, float | None] = {}

    def resume(name: str, file: Path) -> Attempt:
        with running(scenario, run_dir, "--resume", log=base / f"{name}.out") as run:
            code = run.wait(timeout=90)
            return Attempt(code, run.text, file)

    with ack_journal(base / "acks") as journal:
        manifest = run_dir / "pools" / "pool-1.json"
        with running(scenario, run_dir) as run:
            wait_for(lambda: len(children(run, "pool")) == 2, 30, "two pools")
            advanced(run_dir, START_S + 0.3 * DURATION, 60, "30% of the run")
            handle = json.loads(manifest.read_text())["agents"][0]["handle"]
            with garbled(manifest, b'{"pool": "pool-1", "agents": [{"handle": 7'):
                pool = min(children(run, "pool"), key=lambda p: p.pid)
                pool.kill()
                code = run.wait(timeout=60)
            first = Attempt(code, run.text, manifest)
        last_before["manifest"] = ledger_time(run_dir)

        key = credentials_path(run_dir / "keys", handle)
        with garbled(key, b"not a key"):
            after_key = resume("key", key)
        last_before["key"] = ledger_time(run_dir)

        persona = personas / f"{FIVE[1]}.toml"
        with garbled(persona, b'handle = "unterminated\n'):
            after_persona = resume("persona", persona)
        last_before["persona"] = ledger_time(run_dir)

        with garbled(scenario, b"name = 5\n[clock\n"):
            after_scenario = resume("scenario", scenario)
        last_before["scenario"] = ledger_time(run_dir)

        copy = run_dir / "scenario.toml"
        moved = scenario.rename(base / "elsewhere.toml")
        try:
            with garbled(copy, b"[[agents]]\ncount = -1\n"):
                after_copy = resume("copy", copy)
        finally:
            moved.rename(scenario)
        last_before["scenario_copy"] = ledger_time(run_dir)

        finished = resume("finished", scenario)
    return Mended(
        run_dir,
        journal,
        first,
        after_key,
        after_persona,
        after_scenario,
        after_copy,
        last_before,
        finished,
    )


def stopped_naming_the_file(attempt: Attempt, code: int) -> None:
    assert attempt.returncode == code, attempt.output[-3000:]
    assert str(attempt.file) in squash(attempt.output), attempt.output[-3000:]


def test_a_garbled_pool_manifest_stops_the_run_naming_it(mended: Mended) -> None:
    stopped_naming_the_file(mended.manifest, 1)
    out = squash(mended.manifest.output)
    assert "pool-1cannotgoon" in out
    assert "isnotavalidpoolmanifest" in out
    assert "--resume" in out
    logged = [line for line in mended.manifest.output.splitlines() if " run WARNING " in line]
    assert sum("pool-1 restarted" in line for line in logged) == 1  # tried once, then stopped


def test_a_garbled_key_file_stops_a_resume_naming_it(mended: Mended) -> None:
    stopped_naming_the_file(mended.key, 1)
    assert "isnotamoltsimcredentialfile" in squash(mended.key.output)


@pytest.mark.parametrize("which", ["persona", "scenario", "scenario_copy"])
def test_a_garbled_scenario_or_persona_refuses_a_resume_naming_it(
    mended: Mended, which: str
) -> None:
    attempt = getattr(mended, which)
    stopped_naming_the_file(attempt, 2)
    assert "Traceback" not in attempt.output


def test_nothing_moves_while_an_input_is_broken(mended: Mended) -> None:
    """A refused resume writes nothing; the one stopped by the key file may only go on for the
    pool whose keys are intact, never past the run's end."""
    last = mended.last_before
    assert last["persona"] == last["scenario"] == last["scenario_copy"] == last["key"]


def test_a_mended_run_resumes_to_its_end(mended: Mended) -> None:
    assert mended.finished.returncode == 0, mended.finished.output[-3000:]
    assert "duration was reached" in mended.finished.output
    assert (ledger_time(mended.run_dir) or 0) >= START_S + DURATION - HOUR


def test_a_mended_run_lost_and_doubled_nothing(mended: Mended) -> None:
    assert verdict(mended.run_dir, mended.journal) == []
