"""Samples of a run's health: memory, descriptors and CPU of each process the runner
supervises, the run file's size, and the action rate.

The runner takes a sample every ``[metrics] interval`` and hands it to the engine, which writes
it to the ``metrics`` table of the run file (the engine is the run file's only writer).

Per process: ``rss_kb``, ``open_files``, ``threads``, ``cpu_percent``, ``restarts``.
``open_files`` counts every descriptor (files, sockets, pipes), so a leak of any of them shows;
``cpu_percent`` is of one core, averaged since the previous sample. Run-wide (``process = ''``):
``run_file_bytes``, ``actions_per_min``, ``refused_per_min``, ``agents_online``; the rates are
over the time since the previous sample.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from moltsim.engine.service import MetricSample

MIN_SPAN_S = 1.0
"""Rates (CPU, actions) need at least this much wall time since the previous sample: over a
shorter span the clock-tick granularity of CPU times makes them noise."""


@dataclass(frozen=True)
class Watched:
    """A process to sample: its name in the metrics table, its pid (None while it is down),
    and how often it has been restarted."""

    name: str
    pid: int | None
    restarts: int = 0


@dataclass
class Sampler:
    """Turns the state of a run into ``metrics`` rows, one call per interval."""

    run_file: Path
    _processes: dict[str, tuple[psutil.Process, float, float]] = field(default_factory=dict)
    """Per name: the process, and its CPU seconds and the wall time at the previous sample."""
    _last: tuple[float, int, int] | None = None
    """Wall time, accepted and refused totals at the previous sample."""

    def sample(
        self,
        watched: list[Watched],
        *,
        sim_time: float,
        accepted: int,
        refused: int,
        agents_online: int,
        wall_time: float | None = None,
    ) -> list[MetricSample]:
        wall = time.time() if wall_time is None else wall_time
        rows: list[MetricSample] = []
        for proc in watched:
            for name, value in self._process(proc, wall).items():
                rows.append((wall, sim_time, proc.name, name, value))
        run_wide: dict[str, float] = {
            "run_file_bytes": float(run_file_bytes(self.run_file)),
            "agents_online": float(agents_online),
        }
        if self._last is None or wall - self._last[0] >= MIN_SPAN_S:
            if self._last is not None:
                minutes = (wall - self._last[0]) / 60
                run_wide["actions_per_min"] = (accepted - self._last[1]) / minutes
                run_wide["refused_per_min"] = (refused - self._last[2]) / minutes
            self._last = (wall, accepted, refused)
        rows += [(wall, sim_time, "", name, value) for name, value in run_wide.items()]
        return rows

    def _process(self, watched: Watched, wall: float) -> dict[str, float]:
        """What can be read of one process now; nothing but ``restarts`` while it is down."""
        values = {"restarts": float(watched.restarts)}
        if watched.pid is None:
            return values
        known = self._processes.get(watched.name)
        if known and known[0].pid != watched.pid:
            known = None  # restarted: a new process
        try:
            proc = known[0] if known else psutil.Process(watched.pid)
            with proc.oneshot():
                rss = proc.memory_info().rss
                if rss == 0 or proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.ZombieProcess(proc.pid)  # exiting: its memory is gone already
                values["rss_kb"] = rss / 1024
                values["open_files"] = float(_descriptors(proc))
                values["threads"] = float(proc.num_threads())
                times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            self._processes.pop(watched.name, None)
            return {"restarts": float(watched.restarts)}
        cpu = float(times.user + times.system)
        if known and wall - known[2] < MIN_SPAN_S:
            return values  # too soon for a CPU figure; keep the earlier reference point
        if known:
            values["cpu_percent"] = 100 * (cpu - known[1]) / (wall - known[2])
        self._processes[watched.name] = (proc, cpu, wall)
        return values


def _descriptors(proc: psutil.Process) -> int:
    if hasattr(proc, "num_fds"):
        return int(proc.num_fds())
    return int(proc.num_handles())  # Windows


def run_file_bytes(db: Path) -> int:
    """The run file's size on disk: the database and its write-ahead log."""
    total = 0
    for path in (db, db.with_name(db.name + "-wal")):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def this_process(restarts: int = 0) -> Watched:
    return Watched("runner", os.getpid(), restarts)
