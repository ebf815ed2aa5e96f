"""Real parts for the wire tests: run folders, brokers (embedded amqtt and Mosquitto) and engine
processes, plus a bare MQTT client that publishes whatever bytes a test wants.

Nothing here is mocked: the brokers and the engine are separate processes, the run file is a
real SQLite file, and everything a test learns about the forum it reads back from that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiomqtt
import pytest
from pydantic_core import to_json

from moltsim.cli import DEFAULT_START
from moltsim.engine.rules import DAY
from moltsim.engine.service import Engine
from moltsim.identity.credentials import Credentials
from moltsim.runfolder import RunFolder
from moltsim.store.reader import open_readonly
from moltsim.wire.accounts import Accounts
from moltsim.wire.client import PoolClient, RequestTimeout
from moltsim.wire.connection import BrokerAddress, mqtt_client
from moltsim.wire.embedded import EmbeddedBroker, free_port
from moltsim.wire.mosquitto import write_mosquitto_files
from moltsim.wire.topics import Topics
from tests.system_tools import system_program

T = TypeVar("T")

T0 = DEFAULT_START - 2 * DAY
"""Sim time of registration: the agents are two sim days old when an engine starts, so the
stricter limits for new agents do not apply."""
SPEED = 1_000_000.0
"""Sim seconds per wall second of the test engines: rate limit windows pass in milliseconds."""
SUBMOLT = "general"
"""Seeded in every test run."""
BROKERS = ("embedded", "mosquitto")
POOLS: dict[str, list[str]] = {"pool-1": ["alice", "bob"], "pool-2": ["carol"]}
FORUM_TABLES = ("posts", "comments", "votes", "submolts", "memberships", "follows", "dms")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread (safe from sync code,
    including sync code called while another loop is running)."""
    with ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coro).result()


# --- run folders ----------------------------------------------------------------------------


async def make_run(path: Path) -> RunFolder:
    """A run folder with alice and bob in pool-1, carol in pool-2 and a seeded submolt."""
    folder = await RunFolder.create(path)
    for pool, handles in POOLS.items():
        await folder.register([(h, {}) for h in handles], pool, T0)
    engine = await Engine.open(folder.db)
    try:
        await engine.seed_submolt(SUBMOLT, T0)
    finally:
        await engine.close()
    return folder


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    """One run folder per test module (tests compare counts before and after, so they can share
    it); a test that needs a pristine run makes its own with :func:`make_run`."""
    return run_async(make_run(tmp_path_factory.mktemp("run") / "run"))


# --- brokers --------------------------------------------------------------------------------


@dataclass
class Broker:
    kind: str
    host: str
    port: int
    stop: Callable[[], None]
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.host, self.port)


def start_embedded(folder: RunFolder) -> Broker:
    embedded = EmbeddedBroker.start(folder.broker)
    return Broker(
        "embedded", embedded.host, embedded.port, embedded.stop, folder.broker / "broker.log"
    )


def mosquitto_binary() -> str:
    """The ``mosquitto`` executable, installed with apt-get if missing; skips if impossible."""
    return system_program("mosquitto")


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the broker exited ({process.returncode}):\n{log.read_text(errors='replace')}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_mosquitto(accounts: Accounts, workdir: Path) -> Broker:
    """Mosquitto with the generated config, password and ACL files, on a free loopback port."""
    port = free_port()
    config = write_mosquitto_files(accounts, workdir, port)
    log = workdir / "mosquitto.log"
    process = run_mosquitto(config, port, log)
    return Broker("mosquitto", "127.0.0.1", port, lambda: stop_process(process), log)


def run_mosquitto(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mosquitto -c config``, once it accepts connections on ``port``."""
    binary = mosquitto_binary()
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=out, stderr=out)
    try:
        wait_for_port("127.0.0.1", port, process, log)
    except BaseException:
        stop_process(process)
        raise
    return process


def start_broker(kind: str, folder: RunFolder, workdir: Path) -> Broker:
    """The broker named ``kind`` (one of :data:`BROKERS`) serving ``folder``; Mosquitto keeps
    its files in ``workdir``."""
    if kind == "embedded":
        return start_embedded(folder)
    if kind == "mosquitto":
        return start_mosquitto(folder.accounts(), workdir)
    raise ValueError(f"unknown broker {kind!r}; expected one of {BROKERS}")


@pytest.fixture(scope="module")
def embedded_broker(run_folder: RunFolder) -> Iterator[Broker]:
    broker = start_embedded(run_folder)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mosquitto_broker(
    run_folder: RunFolder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    broker = start_mosquitto(run_folder.accounts(), tmp_path_factory.mktemp("mosq"))
    yield broker
    broker.stop()


@pytest.fixture(scope="module", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Broker:
    """Both brokers, one after the other, serving the module's run folder."""
    found: Broker = request.getfixturevalue(f"{request.param}_broker")
    return found


# --- engines --------------------------------------------------------------------------------


class EngineProcess:
    """``python -m moltsim.cli engine`` on a run folder and a broker, as a real process."""

    def __init__(self, folder: RunFolder, broker: Broker, *, speed: float = SPEED) -> None:
        self.folder = folder
        self.broker = broker
        self.speed = speed
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = folder.logs / "engine.log"

    def start(self, timeout: float = 30.0) -> EngineProcess:
        """Start the engine and return once a pool's hello is answered."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.folder.logs / f"engine-{self.log_label}-{self.starts}.log"
        command = [sys.executable, "-m", "moltsim.cli", "engine", "--db", str(self.folder.path),
                   "--broker", self.broker.url, *self.clock_options()]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def log_label(self) -> str:
        """What tells this engine's log files apart from other engines' in the run folder."""
        return self.broker.kind

    def clock_options(self) -> list[str]:
        """The ``moltsim engine`` options that choose its clock: real time at ``speed``."""
        return ["--speed", str(self.speed)]

    async def astart(self) -> EngineProcess:
        """:meth:`start` without blocking the running event loop."""
        return await asyncio.to_thread(self.start)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the engine exited ({self.process.returncode}) while starting:\n{self.log()}"
                )
            if run_async(hello_works(self.folder, self.broker.address, 1.0)):
                return
        raise TimeoutError(f"the engine did not answer a hello in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM: the engine finishes what it took, flushes and exits; returns its status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"the engine ignored SIGTERM for {timeout} s:\n{self.log()}")
        return self.process.returncode

    def stop_cleanly(self) -> None:
        code = self.stop()
        if code != 0:
            print(self.log())
            pytest.fail(f"the engine exited with {code} after SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def hello_works(folder: RunFolder, address: BrokerAddress, within: float) -> bool:
    """Whether a pool-1 client connects and gets its hello answered ``within`` seconds."""
    accounts = folder.accounts()
    pool = PoolClient(
        address, "pool-1", accounts.passwords["pool-1"], accounts.topics,
        timeout=within, retries=0,
    )  # fmt: skip
    pool.add(folder.credentials("alice"))
    try:
        async with pool:
            return True
    except (RequestTimeout, RuntimeError, aiomqtt.MqttError):
        return False
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def engine(run_folder: RunFolder, broker: Broker) -> Iterator[EngineProcess]:
    """An engine serving the module's run folder on ``broker``; must exit 0 on SIGTERM."""
    process = EngineProcess(run_folder, broker).start()
    yield process
    process.stop_cleanly()


# --- clients --------------------------------------------------------------------------------


def pool_client(
    folder: RunFolder, broker: Broker, pool: str, *, timeout: float = 5.0, retries: int = 2
) -> PoolClient:
    """A PoolClient for ``pool`` hosting all of its agents (use ``async with``)."""
    accounts = folder.accounts()
    client = PoolClient(
        broker.address, pool, accounts.passwords[pool], accounts.topics,
        timeout=timeout, retries=retries,
    )  # fmt: skip
    for handle in accounts.pools[pool]:
        client.add(folder.credentials(handle))
    return client


@dataclass
class Received:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class RawClient:
    """A bare MQTT 3.1.1 client: logs in as any account, publishes any bytes on any topic and
    keeps everything it receives."""

    address: BrokerAddress
    username: str
    password: str
    subscribe: Sequence[str] = ()
    granted: dict[str, int] = field(default_factory=dict)
    error: aiomqtt.MqttError | None = None

    def __post_init__(self) -> None:
        self.client = mqtt_client(self.address, self.username, self.password, timeout=5.0)
        self.inbox: asyncio.Queue[Received] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawClient:
        await asyncio.wait_for(self.client.__aenter__(), 10.0)
        for topic in self.subscribe:
            codes = await asyncio.wait_for(self.client.subscribe(topic, qos=1), 5.0)
            code = codes[0]
            self.granted[topic] = code if isinstance(code, int) else int(code.value)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(self.client.__aexit__(None, None, None), 5.0)

    async def _read(self) -> None:
        try:
            async for message in self.client.messages:
                payload = message.payload
                raw = payload if isinstance(payload, bytes) else str(payload).encode()
                self.inbox.put_nowait(Received(message.topic.value, raw))
        except aiomqtt.MqttError as exc:
            self.error = exc

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish; a broker that drops the connection over it is not an error here, whether
        the client notices the drop (``MqttError``) or only waits in vain for the PUBACK
        (Mosquitto disconnects a 3.1.1 client after a publish its ACL refuses)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(self.client.publish(topic, payload, qos=qos), 5.0)

    async def receive(
        self,
        topic: str | None = None,
        where: Callable[[Any], bool] | None = None,
        within: float = 5.0,
    ) -> Any:
        """The next JSON message (on ``topic``, matching ``where``) to arrive ``within``
        seconds; others are dropped."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"{self.username}: no matching message on {topic} in {within}s")
            try:
                item = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                continue
            if topic is not None and item.topic != topic:
                continue
            body = item.json()
            if where is None or where(body):
                return body

    def drain(self) -> list[Received]:
        """Everything received and not yet taken."""
        out: list[Received] = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out

    async def collect(self, seconds: float) -> list[Received]:
        """Everything received during the next ``seconds``."""
        await asyncio.sleep(seconds)
        return self.drain()


def raw_client(
    folder: RunFolder, broker: Broker, account: str, subscribe: Sequence[str] = ()
) -> RawClient:
    return RawClient(broker.address, account, folder.accounts().passwords[account], subscribe)


# --- envelopes ------------------------------------------------------------------------------


def envelope(
    creds: Credentials, seq: int, action: dict[str, Any], agent: str | None = None
) -> dict[str, Any]:
    """An envelope signed with ``creds``' key (for ``agent``, by default its own handle)."""
    return creds.signer.envelope(agent or creds.handle, seq, action)


def encode(message: Any) -> bytes:
    """An envelope (or a batch of them) as compact JSON bytes."""
    return to_json(message)


def post_action(title: str, body: str = "") -> dict[str, Any]:
    return {"type": "post", "submolt": SUBMOLT, "title": title, "body": body}


async def last_seq(client: RawClient, creds: Credentials, topics: Topics) -> int:
    """Ask the engine (hello, seq 0) for the last seq of ``creds``' agent, through ``client``
    (which must be subscribed to the agent's reply topic)."""
    await client.publish(topics.act(creds.handle), encode(envelope(creds, 0, {"type": "hello"})))
    body = await client.receive(
        topics.reply(creds.handle),
        where=lambda b: b.get("seq") == 0 and b.get("agent") == creds.handle,
    )
    assert body["ok"], body
    return int(body["last_seq"])


# --- reading the run file -------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRow:
    id: int
    agent_id: int | None
    seq: int | None
    type: str
    outcome: str
    message: str
    payload: str
    result: str | None
    """The JSON result of an accepted write (its new ids), else None."""


def last_action_id(db: Path) -> int:
    conn = open_readonly(db)
    try:
        (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()
    finally:
        conn.close()
    return int(last)


def ledger_since(db: Path, after: int) -> list[LedgerRow]:
    conn = open_readonly(db)
    try:
        rows = conn.execute(
            "SELECT id, agent_id, seq, type, outcome, message, payload, result FROM actions"
            " WHERE id > ? ORDER BY id",
            (after,),
        ).fetchall()
    finally:
        conn.close()
    return [LedgerRow(*row) for row in rows]


def forum_counts(db: Path) -> dict[str, int]:
    conn = open_readonly(db)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in FORUM_TABLES}
    finally:
        conn.close()


def agent_id(db: Path, handle: str) -> int:
    conn = open_readonly(db)
    try:
        (found,) = conn.execute("SELECT id FROM agents WHERE handle = ?", (handle,)).fetchone()
    finally:
        conn.close()
    return int(found)


def scalar(db: Path, sql: str, *params: Any) -> Any:
    conn = open_readonly(db)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()
