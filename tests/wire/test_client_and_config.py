"""Broker addresses, the generated Mosquitto files (checked by a real Mosquitto), and the
``register`` command's refusals."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from moltsim.agent.pool import POOL_CONNECT_TIMEOUT_S
from moltsim.cli import main
from moltsim.runfolder import RunFolder
from moltsim.store.reader import open_readonly
from moltsim.wire.accounts import Accounts
from moltsim.wire.client import PoolClient
from moltsim.wire.connection import BrokerAddress, BrokerAddressError
from moltsim.wire.embedded import EmbeddedBroker, free_port

from .conftest import (
    POOLS,
    Broker,
    EngineProcess,
    RawClient,
    make_run,
    raw_client,
    run_mosquitto,
    stop_process,
)

# --- broker addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("mqtt://127.0.0.1:1884", "127.0.0.1", 1884),
        ("mqtt://localhost", "localhost", 1883),
        ("localhost:2000", "localhost", 2000),
        ("broker.example.org", "broker.example.org", 1883),
        ("MQTT://Broker.Example.org:65535", "broker.example.org", 65535),
        ("mqtt://[::1]:1885", "::1", 1885),
    ],
)
def test_good_broker_urls_parse(url: str, host: str, port: int) -> None:
    address = BrokerAddress.parse(url)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://localhost:8883",  # TLS: not supported yet
        "ws://localhost:9001",
        "http://localhost:1883",
        "mqtt://",
        "",
        "mqtt://:1883",
        "mqtt://localhost:port",
        "mqtt://localhost:65536",
        "mqtt://localhost:-1",
    ],
)
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(BrokerAddressError):
        BrokerAddress.parse(url)


def test_an_address_round_trips_through_its_url() -> None:
    for url in ("mqtt://127.0.0.1:1884", "mqtt://broker.example.org:1883"):
        assert BrokerAddress.parse(url).url == url
        assert BrokerAddress.parse(BrokerAddress.parse(url).url) == BrokerAddress.parse(url)


def test_an_ipv6_address_round_trips_through_its_url() -> None:
    address = BrokerAddress.parse("mqtt://[::1]:1885")
    assert BrokerAddress.parse(address.url) == address


def test_port_zero_is_refused() -> None:
    with pytest.raises(BrokerAddressError):
        BrokerAddress.parse("mqtt://localhost:0")


# --- broker-config --------------------------------------------------------------------------


def parse_acl(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """Mosquitto ACL text to user -> (publish topics, subscribe topics)."""
    rules: dict[str, tuple[set[str], set[str]]] = {}
    user = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
            rules[user] = (set(), set())
            continue
        assert words[0] == "topic" and user is not None and len(words) == 3, line
        access, topic = words[1], words[2]
        assert access in ("read", "write", "readwrite"), line
        if access in ("write", "readwrite"):
            rules[user][0].add(topic)
        if access in ("read", "readwrite"):
            rules[user][1].add(topic)
    return rules


def password_matches(line_hash: str, password: str) -> bool:
    _, kind, iterations, salt, digest = line_hash.split("$")
    assert kind == "7"
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(computed, base64.b64decode(digest))


@pytest.fixture
async def config_run(tmp_path: Path) -> Path:
    folder = await make_run(tmp_path / "run")
    return folder.path


async def test_broker_config_writes_files_matching_the_accounts(
    config_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative --out still gives absolute paths in the config
    port = free_port()
    assert main(["broker-config", str(config_run), "--out", "mosq", "--port", str(port)]) == 0
    out = tmp_path / "mosq"
    accounts = Accounts.load(config_run / "broker")

    rules = parse_acl((out / "acl").read_text())
    assert rules == {
        user: (set(r.publish), set(r.subscribe)) for user, r in accounts.rules().items()
    }
    assert set(rules) == {"engine", "observer", *POOLS}

    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert set(hashes) == set(accounts.passwords)
    for user, password in accounts.passwords.items():
        assert password not in (out / "passwd").read_text()
        assert password_matches(hashes[user], password)
        assert not password_matches(hashes[user], password + "x")
    for name in ("passwd", "acl"):
        assert (out / name).stat().st_mode & 0o077 == 0

    config = (out / "mosquitto.conf").read_text().splitlines()
    assert f"listener {port} 127.0.0.1" in config
    assert "allow_anonymous false" in config
    assert f"password_file {out / 'passwd'}" in config
    assert f"acl_file {out / 'acl'}" in config

    # A real Mosquitto accepts the files, every account logs in, a wrong password does not.
    log = out / "mosquitto.log"
    process = await asyncio.to_thread(run_mosquitto, out / "mosquitto.conf", port, log)
    try:
        broker = Broker("mosquitto", "127.0.0.1", port, lambda: None, log)
        folder = RunFolder(config_run)
        for account in accounts.passwords:
            async with raw_client(folder, broker, account, [accounts.topics.tick]) as client:
                assert client.error is None
        with pytest.raises(aiomqtt.MqttError):
            async with asyncio.timeout(10), RawClient(broker.address, "pool-1", "nope"):
                pass
    finally:
        stop_process(process)


def test_broker_config_on_a_missing_run_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker-config", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no run file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- register -------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moltsim.cli", *args], capture_output=True, text=True, timeout=60
    )


def registered(run: Path) -> dict[str, set[str]]:
    """Handles by where they are: key files, the run file, the broker accounts."""
    conn = open_readonly(run / "run.db")
    try:
        in_db = {h for (h,) in conn.execute("SELECT handle FROM agents")}
    finally:
        conn.close()
    pools = json.loads((run / "broker" / "accounts.json").read_text())["pools"]
    return {
        "keys": {p.name.removesuffix(".key.json") for p in (run / "keys").iterdir()},
        "run file": in_db,
        "accounts": {h for handles in pools.values() for h in handles},
    }


def assert_refused_cleanly(result: subprocess.CompletedProcess[str], handle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("moltsim: ") and handle in result.stderr
    assert any(word in result.stderr for word in ("taken", "already", "exists")), result.stderr


async def test_register_refuses_a_handle_taken_in_another_case(config_run: Path) -> None:
    before = registered(config_run)
    result = await asyncio.to_thread(cli, "register", str(config_run), "Alice")
    assert_refused_cleanly(result, "Alice")
    assert registered(config_run) == before  # no orphan Alice.key.json


async def test_register_refuses_a_duplicate_handle_cleanly(config_run: Path) -> None:
    before = registered(config_run)
    key = config_run / "keys" / "alice.key.json"
    key_bytes = key.read_bytes()
    result = await asyncio.to_thread(cli, "register", str(config_run), "alice", "--pool", "pool-2")
    assert key.read_bytes() == key_bytes  # alice's key is never replaced
    assert registered(config_run) == before
    assert_refused_cleanly(result, "alice")


async def test_a_refused_register_leaves_no_half_registered_agent(config_run: Path) -> None:
    result = await asyncio.to_thread(cli, "register", str(config_run), "newbie", "Alice")
    assert_refused_cleanly(result, "Alice")
    where = registered(config_run)
    assert where["keys"] == where["run file"] == where["accounts"], where


async def test_a_pool_started_while_its_broker_is_away_waits_for_it(tmp_path: Path) -> None:
    """A pool that starts during a broker restart connects when the broker is back, even after
    several request timeouts, instead of exiting (its runner would restart it, noisily)."""
    folder = await make_run(tmp_path / "run")
    port = free_port()
    accounts = folder.accounts()
    client = PoolClient(
        BrokerAddress("127.0.0.1", port), "pool-1", accounts.passwords["pool-1"],
        accounts.topics, timeout=1.0, retries=1, connect_timeout=30.0,
    )  # fmt: skip
    for handle in accounts.pools["pool-1"]:
        client.add(folder.credentials(handle))
    entering = asyncio.create_task(client.__aenter__())
    await asyncio.sleep(3.0)  # three request timeouts without a broker
    assert not entering.done()
    embedded = await asyncio.to_thread(EmbeddedBroker.start, folder.broker, port)
    engine = EngineProcess(folder, Broker("embedded", "127.0.0.1", port, embedded.stop, tmp_path))
    try:
        await engine.astart()
        assert await asyncio.wait_for(entering, 30.0) is client
        assert client.connected.is_set()
        await client.close()
    finally:
        engine.stop()
        embedded.stop()


def test_a_pool_waits_longer_for_its_first_connection_than_for_a_reply() -> None:
    request_timeout = inspect.signature(PoolClient).parameters["timeout"].default
    assert 6 * request_timeout <= POOL_CONNECT_TIMEOUT_S
