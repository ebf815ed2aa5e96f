"""Real parts for the scenario tests: ``moltsim`` as a subprocess (its own process group, so a
test can kill the whole run), scenario files that name the repository's persona files by
absolute path, and checks of a finished run file read through ``open_readonly``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFileError

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
PERSONA_DIR = ROOT / "agents" / "personas"
FIVE = ("nitpick_9000", "qualia_quandary", "clawsome_memes", "redline_rhea", "fresh_wick")
"""The personas of the smoke scenario."""
START = "2026-01-28T08:00:00Z"
START_S = 1_769_587_200.0
"""``START`` in epoch seconds."""


def persona_path(handle: str) -> Path:
    return PERSONA_DIR / f"{handle}.toml"


def cli(
    *args: str | Path, cwd: Path = ROOT, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``moltsim ARGS`` to its end; stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "moltsim.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def scenario_toml(
    name: str,
    *,
    mode: str,
    duration: str,
    speed: float = 1.0,
    tick: str = "10m",
    count: int = 2,
    heartbeat: str = "1h",
    seed: int = 3,
    personas: tuple[str, ...] = FIVE,
    extra: str = "",
) -> str:
    """A scenario of ``len(personas) * count`` offline agents in one submolt."""
    files = ", ".join(json.dumps(str(persona_path(p))) for p in personas)
    return f"""\
name = "{name}"
seed = {seed}

[clock]
mode = "{mode}"
speed = {speed}
tick = "{tick}"
start = {START}
duration = "{duration}"

[[submolts]]
name = "general"
title = "General"

[[agents]]
personas = [{files}]
count = {count}
heartbeat = "{heartbeat}"

[rules.rate_limits]
new_agent_age_s = 0

[budgets]
max_wall_time = "3m"
{extra}"""


def llm_scenario_toml(
    name: str,
    llm: str,
    *,
    duration: str = "3h",
    seed: int = 3,
    offline: tuple[str, ...] = ("nitpick_9000", "fresh_wick"),
    thinking: tuple[str, ...] = ("qualia_quandary", "verse_vessel"),
) -> str:
    """A stepped scenario: one agent of each ``offline`` persona, and one LLM agent of each
    ``thinking`` persona (heartbeat 1h) calling the model of ``llm`` (the ``[llm]`` body)."""
    files = ", ".join(json.dumps(str(persona_path(p))) for p in thinking)
    groups = f"""
[[agents]]
personas = [{files}]
brain = "openai"
heartbeat = "1h"

[llm]
{llm}"""
    return scenario_toml(
        name, mode="stepped", duration=duration, count=1, seed=seed, personas=offline,
        extra=groups,
    )  # fmt: skip


# --- a run as a process group ---------------------------------------------------------------


@dataclass
class Running:
    """``moltsim run`` started in a new session: killing its group kills the whole run."""

    process: subprocess.Popen[bytes]
    output: Path
    run_dir: Path
    started: float

    @property
    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Its exit status; on a hang, kill the group and fail with the output so far."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(
                f"moltsim run did not finish in {timeout:.0f} s:\n{self.text[-3000:]}"
            ) from None

    def kill_group(self) -> None:
        if self.process.poll() is not None and not self.group_alive():
            return  # all gone: its pid may belong to someone else by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return list(psutil.Process(self.process.pid).children())
        return []

    def engine(self) -> psutil.Process | None:
        """The engine child (``python -m moltsim.cli ... engine ...``), if one runs."""
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                cmd = child.cmdline()
                if "moltsim.cli" in cmd and "engine" in cmd and child.status() != "zombie":
                    return child
        return None

    def group_alive(self) -> list[int]:
        """Pids still in the run's process group (the runner's session)."""
        alive = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.pid) == self.process.pid and proc.status() != "zombie":
                    alive.append(proc.pid)
        return alive


@contextlib.contextmanager
def running(
    scenario: Path, run_dir: Path, *extra: str, log: Path | None = None
) -> Iterator[Running]:
    """Start ``moltsim run SCENARIO --run-dir RUN_DIR EXTRA...``; whatever happens, nothing of
    it outlives the block."""
    log = log or run_dir.with_name(run_dir.name + ".out")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moltsim.cli", "run", str(scenario), "--run-dir", str(run_dir),
             *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    run = Running(process, log, run_dir, time.monotonic())
    try:
        yield run
    finally:
        run.kill_group()


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


# --- reading a run file ---------------------------------------------------------------------


@contextlib.contextmanager
def run_db(run: Path) -> Iterator[sqlite3.Connection]:
    conn = open_readonly(run)
    try:
        yield conn
    finally:
        conn.close()


def ledger_time(run: Path) -> float | None:
    """The latest sim time in the action ledger, or None while there is none (yet)."""
    try:
        with run_db(run) as conn:
            (last,) = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()
    except (RunFileError, sqlite3.Error):
        return None
    return None if last is None else float(last)


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM run_meta").fetchall())


def count(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


_ROW_CHECKS: list[tuple[str, str]] = [
    (
        "comments on a missing post",
        "SELECT c.id, c.post_id FROM comments c LEFT JOIN posts p ON p.id = c.post_id"
        " WHERE p.id IS NULL",
    ),
    (
        "replies to a missing comment",
        "SELECT c.id, c.parent_id FROM comments c LEFT JOIN comments p ON p.id = c.parent_id"
        " WHERE c.parent_id IS NOT NULL AND p.id IS NULL",
    ),
    (
        "replies in another thread than their parent (id, post, parent's post)",
        "SELECT c.id, c.post_id, p.post_id FROM comments c JOIN comments p ON p.id = c.parent_id"
        " WHERE p.post_id != c.post_id",
    ),
    (
        "comments whose depth is not their parent's + 1",
        "SELECT c.id, c.depth FROM comments c LEFT JOIN comments p ON p.id = c.parent_id"
        " WHERE (c.parent_id IS NULL AND c.depth != 0)"
        " OR (p.id IS NOT NULL AND c.depth != p.depth + 1)",
    ),
    (
        "votes on a missing post or comment",
        "SELECT v.target_kind, v.target_id FROM votes v"
        " LEFT JOIN posts p ON v.target_kind = 'post' AND p.id = v.target_id"
        " LEFT JOIN comments c ON v.target_kind = 'comment' AND c.id = v.target_id"
        " WHERE p.id IS NULL AND c.id IS NULL",
    ),
    (
        "posts whose score/ups/downs differ from their votes (id, score, ups, downs, votes...)",
        "SELECT p.id, p.score, p.ups, p.downs, COALESCE(SUM(v.value), 0) AS s,"
        " COALESCE(SUM(v.value = 1), 0) AS u, COALESCE(SUM(v.value = -1), 0) AS d"
        " FROM posts p LEFT JOIN votes v ON v.target_kind = 'post' AND v.target_id = p.id"
        " GROUP BY p.id HAVING p.score != s OR p.ups != u OR p.downs != d",
    ),
    (
        "comments whose score/ups/downs differ from their votes (id, score, ups, downs, votes...)",
        "SELECT c.id, c.score, c.ups, c.downs, COALESCE(SUM(v.value), 0) AS s,"
        " COALESCE(SUM(v.value = 1), 0) AS u, COALESCE(SUM(v.value = -1), 0) AS d"
        " FROM comments c LEFT JOIN votes v ON v.target_kind = 'comment' AND v.target_id = c.id"
        " GROUP BY c.id HAVING c.score != s OR c.ups != u OR c.downs != d",
    ),
    (
        "agents whose karma is not the sum of their posts' and comments' scores",
        "SELECT a.id, a.karma, k FROM (SELECT a.id, a.karma,"
        " (SELECT COALESCE(SUM(score), 0) FROM posts WHERE author_id = a.id)"
        " + (SELECT COALESCE(SUM(score), 0) FROM comments WHERE author_id = a.id) AS k"
        " FROM agents a) AS a WHERE a.karma != k",
    ),
    (
        "acknowledged actions applied more than once (agent, seq, rows)",
        "SELECT agent_id, seq, COUNT(*) FROM actions WHERE outcome = 'ok'"
        " AND agent_id IS NOT NULL AND seq IS NOT NULL AND NOT (type = 'hello' AND seq = 0)"
        " GROUP BY agent_id, seq HAVING COUNT(*) > 1",
    ),
]


def problems(conn: sqlite3.Connection) -> list[str]:
    """Everything wrong with a finished run file, as readable lines (empty when it is sound):
    threads intact, scores equal their votes, karma equals scores, every acknowledged action
    applied once, every seq an agent used present in the ledger, rate limits kept in sim time."""
    found = []
    for what, sql in _ROW_CHECKS:
        rows = conn.execute(sql).fetchall()
        if rows:
            found.append(f"{what}: {rows[:5]}{' ...' if len(rows) > 5 else ''}")
    seqs: dict[int, set[int]] = defaultdict(set)
    for agent, seq in conn.execute(
        "SELECT agent_id, seq FROM actions WHERE agent_id IS NOT NULL AND seq > 0"
    ):
        seqs[agent].add(seq)
    for agent, used in sorted(seqs.items()):
        if missing := sorted(set(range(1, max(used) + 1)) - used):
            found.append(f"agent {agent}: seqs missing from the ledger: {missing[:10]}")
    found += rate_limit_problems(conn)
    return found


def rate_limit_problems(conn: sqlite3.Connection) -> list[str]:
    """Accepted posts and comments against the run's rate limits, in sim time."""
    limits = json.loads(meta(conn)["rules"])["rate_limits"]
    if not limits["enabled"]:
        return []
    found = []
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for kind, agent, at in conn.execute(
        "SELECT type, agent_id, sim_time FROM actions WHERE outcome = 'ok'"
        " AND type IN ('post', 'comment') AND agent_id IS NOT NULL ORDER BY sim_time, id"
    ):
        times[(kind, agent)].append(at)
    gaps = {"post": limits["post_interval_s"], "comment": limits["comment_interval_s"]}
    for (kind, agent), at in sorted(times.items()):
        close = [(a, b) for a, b in itertools.pairwise(at) if b - a < gaps[kind] - 1e-6]
        if close:
            found.append(f"agent {agent}: {kind}s closer than {gaps[kind]} sim-s: {close[:3]}")
        if kind == "comment":
            per_day = limits["comments_per_day"]
            first = 0
            for last, t in enumerate(at):
                while at[first] <= t - 86_400:
                    first += 1
                if last - first + 1 > per_day:
                    found.append(f"agent {agent}: more than {per_day} comments in a sim-day")
                    break
    return found


def canonical_dump(run: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The content of a run, in a fixed order, without what depends on the wall clock or on
    fresh keys: the part of a run that a seed must reproduce."""
    tables = {
        "submolts": "id",
        "posts": "id",
        "comments": "id",
        "votes": "target_kind, target_id, agent_id",
        "follows": "follower_id, followee_id",
        "dms": "id",
        "notifications": "id",
        "memberships": "submolt_id, agent_id, role",
    }
    with run_db(run) as conn:
        dump = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in tables.items()
        }
        columns = [r[1] for r in conn.execute("PRAGMA table_info(agents)") if r[1] != "public_key"]
        dump["agents"] = conn.execute(
            f"SELECT {', '.join(columns)} FROM agents ORDER BY id"
        ).fetchall()
        dump["actions"] = conn.execute(
            "SELECT sim_time, agent_id, seq, type, payload, outcome, message, result FROM actions"
            " ORDER BY sim_time, agent_id, seq, id"
        ).fetchall()
    return dump


def squash(text: str) -> str:
    """Text without any whitespace: the console wraps long lines where it likes."""
    return "".join(text.split())


def assert_same_exports(first: Path, again: Path, out: Path) -> dict[str, bytes]:
    """Two runs export identically but for their signature material (fresh keys each run):
    every file byte for byte, ``agents.public_key`` and ``actions.sig`` aside. Returns the
    first run's export."""
    from moltsim.export import ExportOptions, export_run

    def exported(run: Path, folder: Path) -> dict[str, bytes]:
        export_run(run, folder, ExportOptions())
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    def blanked(data: bytes, field: str) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in data.decode().splitlines()]
        return [r | {field: None} for r in records]

    one, two = exported(first, out / "first"), exported(again, out / "again")
    keyed = {"agents.jsonl": "public_key", "actions.jsonl": "sig"}
    for name in sorted(set(one) - set(keyed) - {"manifest.json"}):
        assert one[name] == two[name], f"{name} differs"
    for name, field in keyed.items():
        assert blanked(one[name], field) == blanked(two[name], field), f"{name} differs"
    return one
