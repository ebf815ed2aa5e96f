"""The run folder's disk fills up in the middle of a run (a small tmpfs, so it needs the right
to mount one: root, as in CI's container). The engine stops with a clear message instead of
crashing again and again, the runner stops the run saying why, and once space is freed
``--resume`` finishes it with nothing acknowledged lost or doubled."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltsim.engine.rules import HOUR
from moltsim.store.runfile import DiskFullError, RunFile
from tests.faults.faultrun import ack_journal, advanced, children, two_pool_scenario, verdict
from tests.scenario.conftest import (
    START_S,
    ledger_time,
    running,
    squash,
    wait_for,
)

pytestmark = pytest.mark.slow

DURATION = 16 * HOUR
DISK = "24m"


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK` mounted on ``path``; skips the test where mounting is refused."""
    path.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mount.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no room left; returns it (delete it to free space)."""
    filler = disk / "filler"
    block = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@dataclass(frozen=True)
class DiskFull:
    run_dir: Path
    journal: Path
    full_code: int
    full_output: str
    at_full: float | None
    resumed_code: int
    resumed_output: str


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiskFull]:
    base = tmp_path_factory.mktemp("disk")
    scenario = two_pool_scenario(base, "disk", "16h")
    with small_disk(base / "disk") as disk, ack_journal(base / "acks") as journal:
        run_dir = disk / "run"
        with running(scenario, run_dir, log=base / "full.out") as run:
            wait_for(lambda: len(children(run, "pool")) == 2, 30, "two pools")
            advanced(run_dir, START_S + 2 * HOUR, 30, "two sim-hours of actions")
            filler = fill(disk)
            full_code = run.wait(timeout=60)
            full_output = run.text
        at_full = ledger_time(run_dir)
        filler.unlink()
        with running(scenario, run_dir, "--resume", log=base / "resumed.out") as again:
            resumed_code = again.wait(timeout=90)
            resumed_output = again.text
        yield DiskFull(
            run_dir, journal, full_code, full_output, at_full, resumed_code, resumed_output
        )


def test_a_full_disk_stops_the_run_saying_so(disk_full: DiskFull) -> None:
    out = disk_full.full_output
    assert disk_full.full_code == 1, out[-3000:]
    assert "enginecannotgoon" in squash(out), out[-3000:]
    assert "nospace" in squash(out).lower(), out[-3000:]
    assert "--resume" in out


def test_the_engine_is_not_restarted_into_a_full_disk(disk_full: DiskFull) -> None:
    logged = [line for line in disk_full.full_output.splitlines() if " run WARNING " in line]
    assert not any("engine restarted" in line for line in logged), logged


def test_resume_after_freeing_space_finishes_the_run(disk_full: DiskFull) -> None:
    assert disk_full.resumed_code == 0, disk_full.resumed_output[-3000:]
    assert "duration was reached" in disk_full.resumed_output
    assert disk_full.at_full is not None and disk_full.at_full < START_S + DURATION - 2 * HOUR
    assert (ledger_time(disk_full.run_dir) or 0) >= START_S + DURATION - HOUR


def test_a_full_disk_loses_and_doubles_nothing(disk_full: DiskFull) -> None:
    assert verdict(disk_full.run_dir, disk_full.journal) == []


async def test_a_write_that_fills_the_disk_says_so(tmp_path: Path) -> None:
    """Runs anywhere (no mount): SQLite's page limit gives the same SQLITE_FULL as a full disk.
    SQLite has already rolled back by then; the error must be the full disk, not the failed
    second ROLLBACK that used to hide it."""
    runfile = await RunFile.open(tmp_path / "run.db")
    try:
        (pages,) = await (await runfile._conn.execute("PRAGMA page_count")).fetchone()  # type: ignore[misc]
        await runfile._conn.execute(f"PRAGMA max_page_count = {int(pages) + 2}")
        rows: list[tuple[object, ...]] = [(f"k{i}", "x" * 2000) for i in range(200)]
        with pytest.raises(DiskFullError, match="no space left for the run file"):
            await runfile.write([("INSERT INTO run_meta (key, value) VALUES (?, ?)", rows)])
        assert not runfile._conn.in_transaction
        await runfile.write([("INSERT INTO run_meta (key, value) VALUES (?, ?)", rows[:1])])
    finally:
        await runfile.close()
