"""A pool end to end, every part a real process: agents registered with ``moltsim register``,
the embedded broker, ``moltsim engine`` at 36,000x and ``moltsim pool`` for a few seconds;
then everything is checked in the run file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from moltsim.agent.pool import PoolManifest
from moltsim.engine.service import Engine
from moltsim.runfolder import RunFolder
from moltsim.store.reader import open_readonly
from moltsim.wire.client import PoolClient, RequestTimeout
from moltsim.wire.connection import BrokerAddress
from tests.agent.conftest import PERSONA_DIR, ROOT
from tests.wire.conftest import T0, Broker, EngineProcess, run_async, start_embedded

pytestmark = pytest.mark.slow

PERSONAS = ("clawsome_memes", "moonboi_max", "fresh_wick")
SUBMOLTS = ("general", "memes", "ai-agents", "crypto", "help")
SPEED = 36_000.0
POOL_SECONDS = 6.0
# Refusals the network produces by design: limits, races on content, and the proactive-contact
# policy turning down an agent that writes first too soon.
ALLOWED_REFUSALS = {
    "rate_limited",
    "not_found",
    "duplicate",
    "gone",
    "proactive_contact_not_allowed",
}
WRITES = ("post", "comment", "vote", "create_submolt", "subscribe", "follow")


def moltsim(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "moltsim.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, f"moltsim {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done


async def hello_as(folder: RunFolder, address: BrokerAddress, handle: str, within: float) -> bool:
    accounts = folder.accounts()
    pool = PoolClient(
        address, "pool-1", accounts.passwords["pool-1"], accounts.topics,
        timeout=within, retries=0, identifier="moltsim-test-probe",
    )  # fmt: skip
    pool.add(folder.credentials(handle))
    try:
        async with pool:
            return True
    except (RequestTimeout, RuntimeError, aiomqtt.MqttError):
        return False
    finally:
        await pool.close()


class Engine36k(EngineProcess):
    """The wire tests' engine process, ready once one of our agents gets a hello answered."""

    handle = "clawsome_memes"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the engine exited while starting:\n{self.log()}")
            if run_async(hello_as(self.folder, self.broker.address, self.handle, 1.0)):
                return
        raise TimeoutError(f"the engine did not answer a hello in {timeout} s:\n{self.log()}")


async def seed_submolts(folder: RunFolder) -> None:
    engine = await Engine.open(folder.db)
    try:
        for name in SUBMOLTS:
            await engine.seed_submolt(name, T0)
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunFolder, str]]:
    """A run after ``moltsim pool`` hosted six agents for a few seconds; and the pool's log."""
    path = tmp_path_factory.mktemp("pool-e2e") / "run"
    moltsim("init", str(path))
    folder = RunFolder.locate(path)
    run_async(seed_submolts(folder))
    personas = [
        arg for name in PERSONAS for arg in ("--persona", str(PERSONA_DIR / f"{name}.toml"))
    ]
    moltsim("register", str(path), *personas, "--count", "2", "--pool", "pool-1",
            "--at", str(T0), "--seed", "7")  # fmt: skip
    broker: Broker = start_embedded(folder)
    engine = Engine36k(folder, broker, speed=SPEED)
    pool_log = folder.logs / "pool-1.log"
    try:
        engine.start()
        with open(pool_log, "wb") as log:
            pool = subprocess.Popen(
                [sys.executable, "-m", "moltsim.cli", "-v", "pool", "--db", str(path),
                 "--pool", "pool-1", "--broker", broker.url],
                stdout=log, stderr=log, cwd=ROOT,
            )  # fmt: skip
        try:
            time.sleep(POOL_SECONDS)
            assert pool.poll() is None, f"the pool exited early:\n{pool_log.read_text()}"
            pool.send_signal(signal.SIGTERM)
            code = pool.wait(15)
        finally:
            if pool.poll() is None:
                pool.kill()
                pool.wait()
        assert code == 0, f"the pool exited with {code} on SIGTERM:\n{pool_log.read_text()}"
        engine.stop_cleanly()
    finally:
        engine.kill()
        broker.stop()
    yield folder, pool_log.read_text(errors="replace")


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = open_readonly(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_pool_stopped_cleanly_and_logged_no_failures(ran: tuple[RunFolder, str]) -> None:
    _, log = ran
    assert "Traceback" not in log
    assert "failed a heartbeat" not in log
    assert "6 agents online" in log


def test_the_forum_filled_up(ran: tuple[RunFolder, str]) -> None:
    folder, _ = ran
    for table in ("posts", "comments", "votes"):
        ((count,),) = query(folder.db, f"SELECT COUNT(*) FROM {table}")
        assert isinstance(count, int) and count > 0, f"no {table}"


def test_every_agent_acted(ran: tuple[RunFolder, str]) -> None:
    folder, _ = ran
    hosted = {spec.handle for spec in PoolManifest.load(folder, "pool-1").agents}
    assert hosted == {*PERSONAS, *(f"{p}_2" for p in PERSONAS)}
    types = ", ".join(f"'{t}'" for t in WRITES)
    rows = query(
        folder.db,
        "SELECT a.handle, COUNT(*) FROM actions x JOIN agents a ON a.id = x.agent_id"
        f" WHERE x.outcome = 'ok' AND x.type IN ({types}) GROUP BY a.handle",
    )
    acted = {str(handle): count for handle, count in rows}
    assert set(acted) == hosted, f"silent: {hosted - set(acted)}"


def test_scores_equal_the_votes(ran: tuple[RunFolder, str]) -> None:
    folder, _ = ran
    for kind, table in (("post", "posts"), ("comment", "comments")):
        rows = query(
            folder.db,
            f"SELECT t.id, t.score, t.ups, t.downs, COALESCE(SUM(v.value), 0),"
            f" COUNT(CASE WHEN v.value = 1 THEN 1 END), COUNT(CASE WHEN v.value = -1 THEN 1 END)"
            f" FROM {table} t LEFT JOIN votes v ON v.target_kind = '{kind}' AND v.target_id = t.id"
            f" GROUP BY t.id",
        )
        assert rows
        for item, score, ups, downs, total, up_votes, down_votes in rows:
            assert (score, ups, downs) == (total, up_votes, down_votes), f"{kind} {item}"


def test_no_unexpected_refusals(ran: tuple[RunFolder, str]) -> None:
    folder, _ = ran
    rows = query(
        folder.db,
        "SELECT outcome, type, message FROM actions WHERE outcome != 'ok' LIMIT 1000",
    )
    unexpected = [row for row in rows if row[0] not in ALLOWED_REFUSALS]
    assert not unexpected
    ((voted_own,),) = query(
        folder.db,
        "SELECT COUNT(*) FROM votes v JOIN posts p ON v.target_kind = 'post'"
        " AND p.id = v.target_id WHERE v.agent_id = p.author_id",
    )
    assert voted_own == 0
