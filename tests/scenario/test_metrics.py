"""Run metrics and run state: the sampler on real processes, the engine writing what the runner
hands it, run files from before the metrics table, and real ``moltsim run`` processes that
record samples and move from ``running`` to ``finished`` (or ``interrupted``)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from moltsim.engine.service import Engine
from moltsim.scenario.load import load_scenario
from moltsim.scenario.metrics import Sampler, Watched, run_file_bytes, this_process
from moltsim.scenario.schema import Metrics
from moltsim.store.metrics import growth, read_series, run_state, summary_lines
from moltsim.store.runfile import RunFile, RunFileError
from moltsim.tomlfile import ConfigError
from moltsim.wire.gateway import Gateway
from moltsim.wire.server import run_control
from tests.scenario.conftest import (
    START_S,
    cli,
    meta,
    run_db,
    running,
    scenario_toml,
    squash,
    wait_for,
)

T0 = 1_800_000_000.0


# --- the sampler ----------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_sampler_reads_memory_descriptors_and_cpu_of_real_processes(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    db = tmp_path / "run.db"
    db.write_bytes(b"x" * 5000)
    (tmp_path / "run.db-wal").write_bytes(b"y" * 3000)
    sampler = Sampler(db)
    watched = [this_process(), Watched("pool-1", sleeper.pid, 2), Watched("engine", None, 1)]
    began = time.time()
    first = sampler.sample(
        watched, sim_time=T0, accepted=100, refused=5, agents_online=7, wall_time=began
    )
    rows = {(p, n): v for _, _, p, n, v in first}
    assert 10_000 < rows[("runner", "rss_kb")] < 4_000_000  # 10 MB .. 4 GB for a Python process
    assert 3 <= rows[("pool-1", "open_files")] < 1_000
    assert rows[("pool-1", "threads")] >= 1
    assert rows[("pool-1", "restarts")] == 2
    assert rows[("engine", "restarts")] == 1
    assert ("engine", "rss_kb") not in rows  # down: nothing but its restarts
    assert ("runner", "cpu_percent") not in rows  # no earlier sample to compare with
    assert rows[("", "run_file_bytes")] == 8000 == run_file_bytes(db)
    assert rows[("", "agents_online")] == 7
    assert ("", "actions_per_min") not in rows
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn some CPU in this process
        pass
    time.sleep(max(0.0, began + 1.2 - time.time()))
    second = sampler.sample(
        watched, sim_time=T0 + 60, accepted=400, refused=35, agents_online=7, wall_time=time.time()
    )
    rows = {(p, n): v for _, _, p, n, v in second}
    assert rows[("runner", "cpu_percent")] > 5
    assert 0 <= rows[("pool-1", "cpu_percent")] < 20  # it sleeps
    assert all(w == second[0][0] and s == T0 + 60 for w, s, *_ in second)


def test_sampler_rates_are_per_minute_and_skip_spans_too_short_to_mean_anything(
    tmp_path: Path,
) -> None:
    sampler = Sampler(tmp_path / "run.db")
    kw = {"watched": [], "sim_time": T0, "agents_online": 0}
    sampler.sample(**kw, accepted=0, refused=0, wall_time=T0)  # type: ignore[arg-type]
    rows = sampler.sample(**kw, accepted=600, refused=30, wall_time=T0 + 30)  # type: ignore[arg-type]
    rates = {n: v for *_, n, v in rows if n.endswith("_per_min")}
    assert rates == {"actions_per_min": 1200.0, "refused_per_min": 60.0}
    rows = sampler.sample(**kw, accepted=601, refused=30, wall_time=T0 + 30.2)  # type: ignore[arg-type]
    assert not [n for *_, n, _ in rows if n.endswith("_per_min")]
    rows = sampler.sample(**kw, accepted=1200, refused=30, wall_time=T0 + 60)  # type: ignore[arg-type]
    assert {n: v for *_, n, v in rows}["actions_per_min"] == 1200.0


def test_a_restarted_process_is_sampled_afresh(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    sampler = Sampler(tmp_path / "run.db")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler.sample([Watched("pool-1", sleeper.pid)], sim_time=T0, accepted=0, refused=0,
                       agents_online=0, wall_time=T0)  # fmt: skip
        rows = sampler.sample([Watched("pool-1", other.pid, 1)], sim_time=T0, accepted=0,
                              refused=0, agents_online=0, wall_time=T0 + 5)  # fmt: skip
    finally:
        other.kill()
        other.wait()
    names = {n for _, _, p, n, _ in rows if p == "pool-1"}
    assert "rss_kb" in names and "cpu_percent" not in names  # a new pid: no CPU reference yet
    gone = sampler.sample([Watched("pool-1", other.pid, 1)], sim_time=T0, accepted=0, refused=0,
                          agents_online=0, wall_time=T0 + 10)  # fmt: skip
    assert [(p, n, v) for _, _, p, n, v in gone if p == "pool-1"] == [("pool-1", "restarts", 1.0)]


def test_a_process_on_its_way_out_is_not_sampled_as_using_no_memory(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process.kill()
        wait_for(
            lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, 10, "a zombie"
        )
        rows = Sampler(tmp_path / "run.db").sample(
            [Watched("pool-1", process.pid)], sim_time=T0, accepted=0, refused=0,
            agents_online=0, wall_time=T0,
        )  # fmt: skip
    finally:
        process.wait()
    assert [(p, n) for _, _, p, n, _ in rows if p == "pool-1"] == [("pool-1", "restarts")]


# --- the engine writes them ------------------------------------------------------------------


async def test_the_engine_writes_samples_and_the_run_state_in_its_commits(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    engine = await Engine.open(db)
    try:
        gateway = await Gateway.open(engine, lambda: T0)
        samples = [[T0 + 1, T0, "engine", "rss_kb", 51_200], [T0 + 1, T0, "", "agents_online", 3]]
        assert await run_control(gateway, {"kind": "metrics", "samples": samples}) == {
            "ok": True,
            "samples": 2,
        }
        assert await run_control(gateway, {"kind": "state", "state": "running", "at": T0}) == {
            "ok": True
        }
        with run_db(tmp_path) as conn:  # committed before the answer
            assert read_series(conn) == {
                ("engine", "rss_kb"): [(T0 + 1, 51_200.0)],
                ("", "agents_online"): [(T0 + 1, 3.0)],
            }
            assert run_state(conn).state == "running"
            assert run_state(conn).at == T0
        for bad in (
            [[T0, T0, "engine", "rss_kb"]],
            [[T0, T0, "engine", "rss_kb", "lots"]],
            [[T0, T0, "engine", "", 1]],
            [[T0, None, "engine", "rss_kb", 1]],
            json.loads('[[1, 2, "engine", "rss_kb", NaN]]'),  # would fail the whole commit
            [[T0, T0, "engine", "rss_kb", math.inf]],
            "rss_kb",
        ):
            with pytest.raises((ValueError, TypeError)):
                await run_control(gateway, {"kind": "metrics", "samples": bad})
        with pytest.raises(ValueError, match="unknown run state 'paused'"):
            await run_control(gateway, {"kind": "state", "state": "paused"})
        with pytest.raises(ValueError):
            await run_control(gateway, {"kind": "state", "state": "failed", "at": "soon"})
        # Refused commands changed nothing, and the engine still commits.
        await run_control(gateway, {"kind": "metrics", "samples": [[T0 + 2, T0, "", "x", 1]]})
    finally:
        await engine.close()
    with run_db(tmp_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone() == (3,)
        assert meta(conn)["state"] == "running"


# --- older run files -------------------------------------------------------------------------


async def test_a_run_file_without_metrics_or_state_reads_and_gains_them_when_opened(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    runfile = await RunFile.open(db)
    await runfile.set_meta(end=T0 + 100)
    await runfile.close()
    with sqlite3.connect(db) as conn:  # made as by the previous schema
        conn.execute("DROP TABLE metrics")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0003_metrics'")
        conn.execute("UPDATE run_meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute(
            "INSERT INTO actions (sim_time, wall_time, type, payload, outcome)"
            " VALUES (?, 0, 'register', '{}', 'ok')",
            (T0 + 100,),
        )
    conn.close()
    with run_db(tmp_path) as ro:
        assert read_series(ro) == {}
        assert run_state(ro).state == "finished"  # the ledger reaches the end
        assert summary_lines(ro) == ["state     finished"]
    runfile = await RunFile.open(db)
    await runfile.close()
    with run_db(tmp_path) as ro:
        assert read_series(ro) == {}
        assert meta(ro)["schema_version"] == "3"


def test_growth_compares_the_medians_of_the_first_and_last_fifth() -> None:
    samples = [(T0 + 360 * i, 100.0 + (500 if i == 2 else 0) + 10 * (i >= 8)) for i in range(10)]
    g = growth(samples)
    assert (g.first, g.last, g.change) == (100.0, 110.0, 10.0)
    assert g.hours == pytest.approx(0.8)
    assert g.per_hour == pytest.approx(12.5)
    assert growth(samples[:1]).per_hour == 0.0


# --- the scenario setting --------------------------------------------------------------------


def test_the_interval_is_a_validated_scenario_setting(tmp_path: Path) -> None:
    assert Metrics().interval == 60.0
    assert Metrics.model_validate({"interval": "2m"}).interval == 120.0
    for bad, why in (("0.5s", "greater than or equal to 1"), ("often", "a duration")):
        path = tmp_path / "bad.toml"
        path.write_text(
            scenario_toml(
                "m", mode="realtime", duration="1h", extra=f'\n[metrics]\ninterval = "{bad}"\n'
            )
        )
        with pytest.raises(ConfigError) as caught:
            load_scenario(path)
        text = "\n".join(caught.value.problems)
        assert "metrics.interval" in text and why in text, text


# --- real runs -------------------------------------------------------------------------------


def state(run: Path) -> tuple[str, float]:
    """The run file's state and when it was set (``("", 0.0)`` before there is one)."""
    try:
        with run_db(run) as conn:
            m = meta(conn)
    except (RunFileError, sqlite3.Error):
        return ("", 0.0)
    return (m.get("state", ""), float(m.get("state_at", 0.0)))


@pytest.mark.slow
def test_a_run_records_metrics_each_interval_and_its_state_from_running_to_finished(
    tmp_path: Path,
) -> None:
    """Two real runs at once: one to its end, one interrupted with SIGINT and then resumed."""
    every_second = '\n[metrics]\ninterval = "1s"\n'
    short = tmp_path / "short.toml"
    short.write_text(
        scenario_toml("short", mode="realtime", speed=2_400, duration="4h", heartbeat="30m",
                      extra=every_second)
    )  # fmt: skip
    long = tmp_path / "long.toml"
    long.write_text(
        scenario_toml("long", mode="realtime", speed=600, duration="24h", heartbeat="30m",
                      count=1, extra=every_second)
    )  # fmt: skip
    began = time.time()
    with running(short, tmp_path / "short") as a, running(long, tmp_path / "long") as b:
        wait_for(lambda: state(b.run_dir)[0] == "running", 60, "the long run to be running")

        def rows(run: Path) -> int:
            with run_db(run) as conn:
                return int(
                    conn.execute("SELECT COUNT(DISTINCT wall_time) FROM metrics").fetchone()[0]
                )

        wait_for(lambda: rows(b.run_dir) >= 2, 30, "two samples of the long run")
        os.kill(b.process.pid, signal.SIGINT)
        assert b.wait(timeout=60) == 0, b.text[-3000:]
        assert a.wait(timeout=90) == 0, a.text[-3000:]
    ended = time.time()

    with run_db(tmp_path / "short") as conn:
        m = meta(conn)
        assert m["state"] == "finished"
        assert began < float(m["state_at"]) <= ended
        series = read_series(conn)
        (last_action,) = conn.execute("SELECT MAX(wall_time) FROM actions").fetchone()
    assert float(m["state_at"]) >= last_action
    processes = {p for p, _ in series}
    assert {"engine", "runner", "broker", "pool-1", ""} <= processes
    samples = sorted({t for s in series.values() for t, _ in s})
    assert len(samples) >= 4, samples  # about six wall seconds, one a second, and a last one
    assert all(began < t < ended for t in samples)
    for process in ("engine", "runner", "broker", "pool-1"):
        rss = [v for _, v in series[(process, "rss_kb")]]
        assert all(5_000 < v < 2_000_000 for v in rss), (process, rss)
        fds = [v for _, v in series[(process, "open_files")]]
        assert all(3 <= v < 500 for v in fds), (process, fds)
        assert all(0 <= v < 250 for _, v in series.get((process, "cpu_percent"), [])), process
        restarts = [v for _, v in series[(process, "restarts")]]
        assert set(restarts) == {0.0} and len(restarts) >= len(rss)  # a pool done at the end
        # has exited before the last sample: then only its restarts are recorded
    sizes = [v for _, v in series[("", "run_file_bytes")]]
    assert sizes[0] > 0 and sizes[-1] >= sizes[0]
    assert max(v for _, v in series[("", "agents_online")]) == 10
    assert sum(v for _, v in series[("", "actions_per_min")]) > 0
    with run_db(tmp_path / "short") as conn:
        sims = [t for (t,) in conn.execute("SELECT sim_time FROM metrics")]
    assert all(START_S <= t <= START_S + 4 * 3600 for t in sims)

    with run_db(tmp_path / "long") as conn:
        m = meta(conn)
        assert m["state"] == "interrupted"
        assert len(read_series(conn)[("engine", "rss_kb")]) >= 2
        (reached,) = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()
    interrupted_at = float(m["state_at"])
    more = f"{reached - START_S + 3_600:.0f}"  # an hour more: six wall seconds at 600x
    with running(long, tmp_path / "long", "--resume", "--duration", more) as resumed:

        def running_again() -> bool:
            now, at = state(resumed.run_dir)
            return now == "running" and at > interrupted_at

        wait_for(running_again, 60, "the resumed run to be running again")
        assert resumed.wait(timeout=60) == 0, resumed.text[-3000:]
    finished, at = state(tmp_path / "long")
    assert finished == "finished" and at > interrupted_at

    out = squash(cli("stats", tmp_path / "short").stdout)
    assert squash("state     finished since") in out
    assert "metrics" in out and squash("  engine      rss") in out
    assert squash("agents online (at most 10)") in out
