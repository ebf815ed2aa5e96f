"""Last wills obey the topic rules on both brokers: an account that CONNECTs with a will on a
topic it may not publish, then drops the connection, never gets that will delivered. The
embedded broker refuses such a CONNECT; Mosquitto accepts it and drops the will by its ACL.

The attacker speaks raw MQTT 3.1.1 over a socket, so that it can drop the connection without a
DISCONNECT (which would discard the will), exactly as a crashed or hostile client does.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import pytest

from moltsim.runfolder import RunFolder
from moltsim.wire.topics import Topics
from tests.wire.conftest import Broker, raw_client

WILL = b'{"v": 1, "agent": "alice", "seq": 1, "action": {"type": "post"}, "sig": "x"}'


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_with_will(
    broker: Broker, account: str, password: str, client_id: str, topic: str
) -> int:
    """CONNECT with a QoS 1 will on ``topic``, then drop the socket without DISCONNECT.
    Returns the CONNACK's return code (0: accepted)."""
    flags = 0x80 | 0x40 | 0x08 | 0x04 | 0x02  # username, password, will QoS 1, will, clean
    variable = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30)
    payload = (
        _string(client_id.encode()) + _string(topic.encode()) + _string(WILL)
        + _string(account.encode()) + _string(password.encode())
    )  # fmt: skip
    body = variable + payload
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        try:
            answer = sock.recv(4)
        except (ConnectionResetError, TimeoutError):
            return -1
        code = answer[3] if len(answer) == 4 and answer[0] == 0x20 else -1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return code  # the socket is reset on the way out: an abnormal close


FAMILIES: dict[str, tuple[str, Callable[[Topics], str]]] = {
    "observer-act": ("observer", lambda t: t.act("alice")),
    "pool-act-other-pool": ("pool-2", lambda t: t.act("alice")),
    "pool-batch-other-pool": ("pool-2", lambda t: t.act_batch("pool-1")),
    "pool-step-other-pool": ("pool-2", lambda t: t.step("pool-1")),
    "pool-reply": ("pool-1", lambda t: t.reply("alice")),
    "pool-tick": ("pool-1", lambda t: t.tick),
    "pool-events": ("pool-1", lambda t: t.events),
    "observer-control": ("observer", lambda t: t.control),
    "pool-control-result": ("pool-2", lambda t: t.control_result),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_a_forbidden_will_is_never_delivered(
    run_folder: RunFolder, broker: Broker, family: str
) -> None:
    account, topic_of = FAMILIES[family]
    accounts = run_folder.accounts()
    topic = topic_of(accounts.topics)
    async with raw_client(run_folder, broker, "engine", [accounts.topics.all]) as watcher:
        await asyncio.sleep(0.3)
        code = await asyncio.to_thread(
            connect_with_will, broker, account, accounts.passwords[account], f"will-{family}",
            topic,
        )  # fmt: skip
        if broker.kind == "embedded":
            assert code != 0, "the embedded broker refuses a CONNECT with a forbidden will"
        seen = await watcher.collect(1.5)
    assert not [m for m in seen if m.payload == WILL], f"a will on {topic} was delivered"


async def test_an_allowed_will_still_connects(run_folder: RunFolder, broker: Broker) -> None:
    """Wills are not banned: a pool may leave one on its own agents' topic."""
    accounts = run_folder.accounts()
    code = await asyncio.to_thread(
        connect_with_will, broker, "pool-1", accounts.passwords["pool-1"], "will-allowed",
        accounts.topics.act("alice"),
    )  # fmt: skip
    assert code == 0
