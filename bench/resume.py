"""Resume after SIGKILL: a realtime run of a few hundred offline agents has its whole process
group killed, then ``moltsim run --resume`` starts it again. The figure is the wall time from
launching the resume to the first action the engine newly accepts from an agent (the run is
then really back), with the time to the engine's broker connection beside it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PERSONAS = sorted((REPO / "agents" / "personas").glob("*.toml"))


def scenario(copies: int) -> str:
    files = ", ".join(f'"{p}"' for p in PERSONAS)
    return f"""
name = "resume-bench"
seed = 5

[clock]
mode = "realtime"
speed = 600
duration = "7d"

[[submolts]]
name = "general"

[[agents]]
personas = [{files}]
count = {copies}
heartbeat = "1h"

[rules.rate_limits]
new_agent_age_s = 0
"""


def start(path: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``moltsim run`` in a session of its own, so that one signal reaches all of it."""
    out = open(run_dir.with_name(run_dir.name + ".out"), "ab")  # noqa: SIM115 - the child's
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "moltsim.cli", "run", str(path), "--run-dir", str(run_dir),
             *extra],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the run's whole group and wait until none of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and group_alive(process.pid):
        time.sleep(0.05)


def group_alive(group: int) -> bool:
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def accepted_after(db: Path, action_id: int) -> tuple[int, int]:
    """(rows after ``action_id``, accepted agent actions after it), read-only."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return 0, 0
    try:
        rows, accepted = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(outcome = 'ok' AND seq > 0), 0) FROM actions"
            " WHERE id > ?",
            (action_id,),
        ).fetchone()
        return int(rows), int(accepted)
    except sqlite3.Error:
        return 0, 0
    finally:
        conn.close()


def last_action(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()[0])
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> float:
    """Seconds until ``check()`` is true; raises after ``timeout``."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(poll)
    return time.perf_counter() - started


def engine_ready_after(logs: Path, since_wall: float) -> float | None:
    """Seconds from ``since_wall`` to the first engine broker connection logged after it."""
    path = logs / "engine.jsonl"
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["ts"] >= since_wall and record["msg"].startswith("engine connected"):
                return float(record["ts"]) - since_wall
    return None


def run(agents: int = 300, rounds: int = 3, warmup_actions: int = 300) -> dict[str, float]:
    copies = -(-agents // len(PERSONAS))
    resumes: list[float] = []
    readies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="moltsim-resume-") as tmp:
        path = Path(tmp) / "resume.toml"
        path.write_text(scenario(copies))
        run_dir = Path(tmp) / "run"
        db = run_dir / "run.db"
        process = start(path, run_dir)
        try:
            for round_ in range(rounds):
                base = last_action(db) if db.exists() else 0
                wait_until(
                    lambda: accepted_after(db, base)[1] >= warmup_actions,  # noqa: B023
                    120,
                    f"{warmup_actions} accepted actions (round {round_ + 1})",
                )
                kill_group(process)
                killed_at = last_action(db)
                launched_wall = time.time()
                process = start(path, run_dir, "--resume")
                resumes.append(
                    wait_until(
                        lambda: accepted_after(db, killed_at)[1] > 0,  # noqa: B023
                        120,
                        "accepted action after the resume",
                    )
                )
                ready = engine_ready_after(run_dir / "logs", launched_wall)
                if ready is not None:
                    readies.append(ready)
        finally:
            kill_group(process)
    figures = {
        "resume_after_kill_s": statistics.median(resumes),
        "resume_after_kill_max_s": max(resumes),
        "resume_agents": float(copies * len(PERSONAS)),
    }
    if readies:
        figures["resume_engine_ready_s"] = statistics.median(readies)
    return figures


if __name__ == "__main__":
    print(run(agents=int(sys.argv[1]) if len(sys.argv) > 1 else 300))
