"""Shared parts of the fault tests: a real run whose pools keep a journal of every request the
engine acknowledged, the processes of that run by role, and one verdict on a run file after a
fault (integrity, forum invariants, every acknowledged action applied exactly once)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil

from moltsim.store.runfile import RunFileError
from moltsim.wire.client import ACK_JOURNAL_ENV
from tests.scenario.conftest import Running, problems, run_db, scenario_toml, wait_for


def two_pool_scenario(folder: Path, name: str, duration: str) -> Path:
    """``folder/NAME.toml``: the run the fault tests break. Ten offline agents in two pools of
    five, in real time at 3,600x with a 30-minute heartbeat, so actions keep coming."""
    text = scenario_toml(name, mode="realtime", speed=3600, duration=duration, heartbeat="30m")
    path = folder / f"{name}.toml"
    path.write_text("agents_per_pool = 5\n" + text)
    return path


@contextlib.contextmanager
def ack_journal(folder: Path) -> Iterator[Path]:
    """Pools started inside the block (the runner's children inherit the environment) append
    every acknowledged ``AGENT SEQ`` to ``folder/<pool>.acks``."""
    before = os.environ.get(ACK_JOURNAL_ENV)
    os.environ[ACK_JOURNAL_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            del os.environ[ACK_JOURNAL_ENV]
        else:
            os.environ[ACK_JOURNAL_ENV] = before


def acknowledged(journal: Path) -> Counter[tuple[str, int]]:
    """How many ok replies each (handle, seq) got, over every pool process that ever ran."""
    acks: Counter[tuple[str, int]] = Counter()
    for path in sorted(journal.glob("*.acks")):
        for line in path.read_text().splitlines():
            handle, seq = line.split()
            acks[(handle, int(seq))] += 1
    return acks


def lost_or_doubled(conn: sqlite3.Connection, acks: Counter[tuple[str, int]]) -> list[str]:
    """Acknowledged actions that are not in the ledger as accepted exactly once."""
    ids = dict(conn.execute("SELECT handle, id FROM agents").fetchall())
    accepted = Counter(
        (agent, seq)
        for agent, seq in conn.execute(
            "SELECT agent_id, seq FROM actions WHERE outcome = 'ok' AND seq > 0"
        )
    )
    lost = sorted(key for key in acks if accepted[(ids.get(key[0]), key[1])] == 0)
    doubled = sorted(key for key in acks if accepted[(ids.get(key[0]), key[1])] > 1)
    found = []
    if lost:
        found.append(f"{len(lost)} acknowledged actions missing from the ledger: {lost[:5]}")
    if doubled:
        found.append(f"{len(doubled)} acknowledged actions applied twice: {doubled[:5]}")
    return found


def verdict(run_dir: Path, journal: Path) -> list[str]:
    """Everything wrong with a run after a fault; empty when it is sound."""
    acks = acknowledged(journal)
    found = [] if acks else [f"no acknowledged action in {journal}"]
    with run_db(run_dir) as conn:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            found.append(f"integrity_check: {check[:5]}")
        found += problems(conn)
        found += lost_or_doubled(conn, acks)
    return found


# --- the processes of a run -----------------------------------------------------------------


def role_of(process: psutil.Process) -> str | None:
    """``engine``, ``pool``, ``broker`` (embedded) for a child of the runner, else ``None``."""
    with contextlib.suppress(psutil.Error):
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        cmd = process.cmdline()
        if "moltsim.wire.embedded" in cmd:
            return "broker"
        if "moltsim.cli" in cmd:
            for role in ("engine", "pool"):
                if role in cmd:
                    return role
    return None


def children(run: Running, role: str) -> list[psutil.Process]:
    return [child for child in run.children() if role_of(child) == role]


def one(run: Running, role: str, timeout: float = 30.0) -> psutil.Process:
    """The single live child of ``role``, waiting for it to (re)appear."""
    found: list[psutil.Process] = []

    def present() -> bool:
        found[:] = children(run, role)
        return len(found) == 1

    wait_for(present, timeout, f"one {role} process")
    return found[0]


def replaced(run: Running, role: str, old: psutil.Process, timeout: float = 30.0) -> None:
    """Wait until a different process holds ``role`` (and the old one is gone)."""
    wait_for(
        lambda: any(p.pid != old.pid for p in children(run, role)) and not old.is_running(),
        timeout,
        f"the runner to replace the {role} (pid {old.pid})",
    )


def last_accepted(run_dir: Path) -> float | None:
    """Sim time of the latest action an agent got accepted, or None while there is none."""
    try:
        with run_db(run_dir) as conn:
            (last,) = conn.execute(
                "SELECT MAX(sim_time) FROM actions WHERE outcome = 'ok' AND seq > 0"
            ).fetchone()
    except (RunFileError, sqlite3.Error):
        return None
    return None if last is None else float(last)


def advanced(run_dir: Path, since: float | None, timeout: float, what: str) -> float:
    """Wait until an agent's action later than ``since`` is accepted; returns its sim time."""
    latest: list[float] = []

    def moved() -> bool:
        last = last_accepted(run_dir)
        if last is not None and (since is None or last > since):
            latest[:] = [last]
            return True
        return False

    wait_for(moved, timeout, what)
    return latest[0]


def accepted_since(run_dir: Path, wall: float, timeout: float, what: str) -> None:
    """Wait until an agent's action is accepted with a wall time after ``wall`` (an epoch
    time): after a part was replaced, proof that the new one works, not the old one's tail."""

    def found() -> bool:
        try:
            with run_db(run_dir) as conn:
                row = conn.execute(
                    "SELECT 1 FROM actions WHERE outcome = 'ok' AND seq > 0 AND wall_time > ?"
                    " LIMIT 1",
                    (wall,),
                ).fetchone()
        except (RunFileError, sqlite3.Error):
            return False
        return row is not None

    wait_for(found, timeout, what)
