"""Attacks on the wire, against both brokers and a real engine: each is refused, recorded in the
ledger when it reaches the engine, leaves the forum unchanged, and the engine keeps serving.

pool-1 hosts alice and bob, pool-2 hosts carol; ``observer`` may only watch.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from moltsim.domain.envelope import MAX_ENVELOPE_BYTES
from moltsim.identity.credentials import Credentials
from moltsim.identity.signing import Signer
from moltsim.runfolder import RunFolder
from moltsim.wire.gateway import MAX_SEQ_AHEAD, SEQ_WINDOW
from moltsim.wire.topics import Topics

from .conftest import (
    Broker,
    EngineProcess,
    LedgerRow,
    RawClient,
    agent_id,
    encode,
    envelope,
    forum_counts,
    hello_works,
    last_action_id,
    last_seq,
    ledger_since,
    make_run,
    post_action,
    raw_client,
    start_mosquitto,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SILENCE = 1.0
"""How long to wait for something that must not happen (a refused MQTT 3.1.1 publish is
silent)."""


@dataclass
class Pools:
    """Long-lived, well-behaved connections (logging in to the embedded broker costs an Argon2
    hash, ~0.2 s): they never publish where their ACL forbids, so no broker drops them."""

    pool1: RawClient
    """pool-1, subscribed to alice's and bob's replies and its batch replies."""
    pool2: RawClient
    """pool-2, subscribed to carol's replies."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pools(
    run_folder: RunFolder, broker: Broker, engine: EngineProcess
) -> AsyncIterator[Pools]:
    t = run_folder.accounts().topics
    pool1 = raw_client(run_folder, broker, "pool-1", [t.reply("alice"), t.reply("bob"),
                                                       t.reply_batch("pool-1")])  # fmt: skip
    pool2 = raw_client(run_folder, broker, "pool-2", [t.reply("carol")])
    async with pool1, pool2:
        yield Pools(pool1, pool2)


@dataclass
class Scene:
    """The module's run and engine, and what the forum looked like when a test began."""

    folder: RunFolder
    broker: Broker
    engine: EngineProcess
    topics: Topics
    creds: dict[str, Credentials]
    pool1: RawClient
    pool2: RawClient
    counts: dict[str, int]
    mark: int

    def rows(self) -> list[LedgerRow]:
        """Ledger rows written since the test began."""
        return ledger_since(self.folder.db, self.mark)

    def refusals(self, outcome: str) -> list[LedgerRow]:
        return [row for row in self.rows() if row.outcome == outcome]

    def assert_forum_unchanged(self) -> None:
        assert forum_counts(self.folder.db) == self.counts

    def id(self, handle: str) -> int:
        return agent_id(self.folder.db, handle)

    def raw(self, account: str, *subscribe: str) -> RawClient:
        return raw_client(self.folder, self.broker, account, subscribe)


@pytest.fixture
def scene(run_folder: RunFolder, broker: Broker, engine: EngineProcess, pools: Pools) -> Scene:
    creds = {h: run_folder.credentials(h) for h in ("alice", "bob", "carol")}
    pools.pool1.drain()
    pools.pool2.drain()
    return Scene(
        run_folder, broker, engine, run_folder.accounts().topics, creds, pools.pool1,
        pools.pool2, forum_counts(run_folder.db), last_action_id(run_folder.db),
    )  # fmt: skip


async def assert_serving(scene: Scene) -> None:
    """The engine is up and answers a query of each pool."""
    assert scene.engine.running, scene.engine.log()
    t = scene.topics
    for client, handle in ((scene.pool1, "bob"), (scene.pool2, "carol")):
        seq = await last_seq(client, scene.creds[handle], t) + 1
        await client.publish(t.act(handle), encode(envelope(scene.creds[handle], seq, {
            "type": "profile"})))  # fmt: skip
        body = await client.receive(t.reply(handle), where=seq_is(seq))
        assert body["ok"] is True and body["profile"]["agent"]["handle"] == handle, body


async def settle(scene: Scene) -> None:
    """Wait out silence, then make sure the engine has handled everything sent before: a
    hello from another connection is answered only once it got that far."""
    await asyncio.sleep(SILENCE)
    await last_seq(scene.pool2, scene.creds["carol"], scene.topics)


def seq_is(seq: int) -> Callable[[Any], bool]:
    return lambda body: isinstance(body, dict) and body.get("seq") == seq


def refused(body: Any) -> bool:
    return isinstance(body, dict) and body.get("ok") is False


# --- (1) forged signatures ------------------------------------------------------------------


async def test_forged_signatures_are_refused_and_consume_no_seq(scene: Scene) -> None:
    t, pool, alice, bob = scene.topics, scene.pool1, scene.creds["alice"], scene.creds["bob"]
    seq = await last_seq(pool, alice, t) + 1
    by_bob = envelope(bob, seq, post_action("signed by bob's key"), agent="alice")
    flipped = envelope(alice, seq, post_action("flipped signature byte"))
    sig = bytearray(base64.b64decode(flipped["sig"]))
    sig[7] ^= 0x01
    flipped["sig"] = base64.b64encode(bytes(sig)).decode()
    altered = envelope(alice, seq, post_action("what alice signed"))
    altered["action"]["title"] = "what the attacker wants"
    garbage = {**envelope(alice, seq, post_action("sig not base64")), "sig": "!!not base64!!"}
    forgeries = (by_bob, flipped, altered, garbage)
    for forged in forgeries:
        await pool.publish(t.act("alice"), encode(forged))
        body = await pool.receive(t.reply("alice"), where=seq_is(seq))
        assert body["ok"] is False and body["code"] == "bad_signature", body

    rows = scene.refusals("bad_signature")
    assert len(rows) == len(forgeries)
    assert {(r.agent_id, r.seq) for r in rows} == {(scene.id("alice"), seq)}
    scene.assert_forum_unchanged()
    await assert_serving(scene)

    # A refused envelope burns no seq: alice's genuine envelope with it is applied.
    await pool.publish(t.act("alice"), encode(envelope(alice, seq, post_action("genuine"))))
    body = await pool.receive(t.reply("alice"), where=seq_is(seq))
    assert body["ok"] is True and "post_id" in body, body
    assert forum_counts(scene.folder.db)["posts"] == scene.counts["posts"] + 1


# --- (2) replays ----------------------------------------------------------------------------


async def test_replayed_bytes_are_applied_once_and_answered_with_the_original(
    scene: Scene,
) -> None:
    t, pool, alice = scene.topics, scene.pool1, scene.creds["alice"]
    seq = await last_seq(pool, alice, t) + 1
    payload = encode(envelope(alice, seq, post_action("said once")))
    await pool.publish(t.act("alice"), payload)
    first = await pool.receive(t.reply("alice"), where=seq_is(seq))
    assert first["ok"] is True, first
    after_first = forum_counts(scene.folder.db)

    await pool.publish(t.act("alice"), payload)
    second = await pool.receive(t.reply("alice"), where=seq_is(seq))
    assert second.pop("duplicate") is True
    assert second == first

    # Still a duplicate after a later action moved the seq on.
    await pool.publish(t.act("alice"), encode(envelope(alice, seq + 1, {"type": "profile"})))
    assert (await pool.receive(t.reply("alice"), where=seq_is(seq + 1)))["ok"] is True
    await pool.publish(t.act("alice"), payload)
    third = await pool.receive(t.reply("alice"), where=seq_is(seq))
    assert third["duplicate"] is True and third["post_id"] == first["post_id"]

    assert forum_counts(scene.folder.db) == after_first
    assert after_first["posts"] == scene.counts["posts"] + 1
    mine = [r for r in scene.rows() if r.seq == seq and r.agent_id == scene.id("alice")]
    assert [r.outcome for r in mine] == ["ok", "replay", "replay"]
    await assert_serving(scene)


async def test_stale_and_far_future_seqs_are_refused(scene: Scene) -> None:
    t, pool, alice = scene.topics, scene.pool1, scene.creds["alice"]
    last = await last_seq(pool, alice, t)
    # Jump (allowed: within MAX_SEQ_AHEAD) so that last + 1 falls out of the window.
    jump = last + SEQ_WINDOW + 100
    assert jump - last < MAX_SEQ_AHEAD
    await pool.publish(t.act("alice"), encode(envelope(alice, jump, {"type": "profile"})))
    assert (await pool.receive(t.reply("alice"), where=seq_is(jump)))["ok"] is True
    before = forum_counts(scene.folder.db)
    mark = last_action_id(scene.folder.db)

    cases = {
        last + 1: "stale",  # SEQ_WINDOW + 99 behind the last seq
        jump - SEQ_WINDOW: "stale",  # exactly at the edge of the window
        jump + MAX_SEQ_AHEAD + 1: "too far ahead",
        jump + 10 * MAX_SEQ_AHEAD: "too far ahead",
        0: "reserved for hello",  # seq 0 with anything but a hello
    }
    for seq, why in cases.items():
        await pool.publish(t.act("alice"), encode(envelope(alice, seq, post_action(why))))
        body = await pool.receive(t.reply("alice"), where=seq_is(seq))
        assert body["ok"] is False and body["code"] == "replay", body
        assert why in body["message"]
        assert "duplicate" not in body

    rows = ledger_since(scene.folder.db, mark)
    assert sorted(r.seq or 0 for r in rows if r.outcome == "replay") == sorted(cases)
    assert forum_counts(scene.folder.db) == before
    await assert_serving(scene)


# --- (3) acting for another pool's agent ----------------------------------------------------


async def test_the_broker_drops_a_publish_on_another_pools_agent_topic(scene: Scene) -> None:
    t, carol = scene.topics, scene.creds["carol"]
    seq = await last_seq(scene.pool2, carol, t) + 1
    # Correctly signed with carol's key: only the ACL stands between it and the forum.
    genuine = encode(envelope(carol, seq, post_action("pool-1 posting as carol")))
    async with scene.raw("pool-1", t.reply("carol")) as attacker:
        await attacker.publish(t.act("carol"), genuine)
        await settle(scene)
        leaked = attacker.drain()
    assert [m for m in leaked if m.topic == t.reply("carol")] == []
    assert [r for r in scene.rows() if r.agent_id == scene.id("carol") and r.seq == seq] == []
    scene.assert_forum_unchanged()
    await assert_serving(scene)


async def test_a_pool_cannot_pass_another_pools_agent_through_its_own_topics(
    scene: Scene,
) -> None:
    t, pool1, pool2, carol = scene.topics, scene.pool1, scene.pool2, scene.creds["carol"]
    seq = await last_seq(pool2, carol, t) + 1
    genuine = envelope(carol, seq, post_action("smuggled"))
    await pool1.publish(t.act("alice"), encode(genuine))
    body = await pool1.receive(t.reply("alice"), where=refused)
    assert body["code"] == "not_your_agent" and body["agent"] == "carol", body

    await pool1.publish(t.act_batch("pool-1"), encode([genuine]))
    bodies = await pool1.receive(t.reply_batch("pool-1"))
    assert [b["code"] for b in bodies] == ["not_your_agent"]

    rows = scene.refusals("not_your_agent")
    assert [(r.agent_id, r.seq) for r in rows] == [(scene.id("carol"), seq)] * 2
    scene.assert_forum_unchanged()

    # The smuggled envelope burnt none of carol's seqs: her own pool can still use it.
    await pool2.publish(t.act("carol"), encode(genuine))
    final = await pool2.receive(t.reply("carol"), where=seq_is(seq))
    assert final["ok"] is True, (final.get("code"), final.get("message"))
    await assert_serving(scene)


async def test_a_pool_cannot_read_another_pools_replies_or_the_events(scene: Scene) -> None:
    t, pool1, alice = scene.topics, scene.pool1, scene.creds["alice"]
    snoop_topics = (t.reply("alice"), t.reply_batch("pool-1"), f"{t.base}/reply/+", t.events,
                    t.all)  # fmt: skip
    async with scene.raw("pool-2", *snoop_topics) as snoop:
        seq = await last_seq(pool1, alice, t) + 1
        for n, action in enumerate(({"type": "notifications"}, post_action("private reply"))):
            await pool1.publish(t.act("alice"), encode(envelope(alice, seq + n, action)))
            assert (await pool1.receive(t.reply("alice"), where=seq_is(seq + n)))["ok"] is True
        batch = [envelope(scene.creds["bob"], 0, {"type": "hello"})]
        await pool1.publish(t.act_batch("pool-1"), encode(batch))
        assert (await pool1.receive(t.reply_batch("pool-1")))[0]["ok"] is True
        seen = await snoop.collect(0.3)
    assert {m.topic for m in seen} <= {t.tick}, [m.topic for m in seen]


# --- (4) unregistered agents ----------------------------------------------------------------


async def test_an_unregistered_agent_is_refused(scene: Scene) -> None:
    t, pool1 = scene.topics, scene.pool1
    mallory = Credentials("mallory", Signer.generate(), scene.folder.accounts().sim)
    forged = encode(envelope(mallory, 1, post_action("who am I")))
    await pool1.publish(t.act("alice"), forged)
    body = await pool1.receive(t.reply("alice"), where=refused)
    assert body["code"] == "unknown_agent" and body["agent"] == "mallory", body

    await pool1.publish(t.act_batch("pool-1"), b"[" + forged + b"]")
    bodies = await pool1.receive(t.reply_batch("pool-1"))
    assert [b["code"] for b in bodies] == ["unknown_agent"]

    # mallory's own topic is not in pool-1's ACL: dropped by the broker, never recorded.
    async with scene.raw("pool-1") as attacker:
        await attacker.publish(t.act("mallory"), forged)
        await settle(scene)
    rows = scene.refusals("unknown_agent")
    assert [(r.agent_id, r.seq) for r in rows] == [(None, 1)] * 2
    assert all("mallory" in r.message for r in rows)
    scene.assert_forum_unchanged()
    await assert_serving(scene)


# --- (5) the observer -----------------------------------------------------------------------


async def test_the_observer_watches_but_cannot_act_or_pry(scene: Scene) -> None:
    t, pool1, alice = scene.topics, scene.pool1, scene.creds["alice"]
    fake_event = json.dumps([{"type": "post", "agent": "alice", "post_id": 999999}]).encode()
    fake_tick = b'{"sim_time": 0, "state": "stopping"}'
    async with scene.raw("observer", t.events, t.tick, t.reply("alice")) as observer:
        assert observer.granted[t.events] in (0, 1)
        seq = await last_seq(pool1, alice, t) + 1
        # A second observer connection tries to act and to fake events and ticks, and so
        # does a pool (Mosquitto may disconnect them for that).
        async with scene.raw("observer") as intruder, scene.raw("pool-1") as pool_intruder:
            await intruder.publish(t.act("alice"), encode(envelope(alice, seq, post_action("x"))))
            for fake in (intruder, pool_intruder):
                await fake.publish(t.events, fake_event)
                await fake.publish(t.tick, fake_tick)
            await settle(scene)
        assert [r for r in scene.rows() if r.type != "hello"] == []
        scene.assert_forum_unchanged()
        fakes = [m for m in observer.drain() if m.payload in (fake_event, fake_tick)]
        assert fakes == []

        # An accepted write reaches the observer as an event; alice's reply does not.
        await pool1.publish(t.act("alice"), encode(envelope(alice, seq, post_action("watched"))))
        reply = await pool1.receive(t.reply("alice"), where=seq_is(seq))
        assert reply["ok"] is True, reply
        event = await observer.receive(
            t.events, where=lambda batch: any(e.get("post_id") == reply["post_id"] for e in batch)
        )
        assert any(e["type"] == "post" and e["agent"] == "alice" for e in event)
        tick = await observer.receive(t.tick)
        assert tick["state"] == "running"
        assert [m for m in await observer.collect(0.2) if m.topic == t.reply("alice")] == []
    await assert_serving(scene)


# --- (6) oversized and malformed envelopes --------------------------------------------------


def _signed(action: dict[str, Any]) -> Callable[[Credentials, int], bytes]:
    return lambda creds, seq: encode(envelope(creds, seq, action))


def _shaped(change: Callable[[dict[str, Any]], Any]) -> Callable[[Credentials, int], bytes]:
    def build(creds: Credentials, seq: int) -> bytes:
        env = envelope(creds, seq, post_action("shape"))
        return json.dumps(change(env)).encode()

    return build


def _oversized(creds: Credentials, seq: int) -> bytes:
    payload = encode(envelope(creds, seq, post_action("big", "x" * (MAX_ENVELOPE_BYTES + 10))))
    assert len(payload) > MAX_ENVELOPE_BYTES
    return payload


BAD_ENVELOPES: dict[str, tuple[Callable[[Credentials, int], bytes], str]] = {
    "oversized": (_oversized, "too_large"),
    "not json": (lambda c, s: b'{"v": 1, "agent": "alice", ', "malformed"),
    "not utf-8": (lambda c, s: b"\xff\xfe\x00\x80", "malformed"),
    "empty": (lambda c, s: b"", "malformed"),
    "a json array": (lambda c, s: b"[1, 2]", "malformed"),
    "no sig": (_shaped(lambda e: {k: v for k, v in e.items() if k != "sig"}), "malformed"),
    "extra field": (_shaped(lambda e: {**e, "admin": True}), "malformed"),
    "version 2": (_shaped(lambda e: {**e, "v": 2}), "malformed"),
    "negative seq": (_shaped(lambda e: {**e, "seq": -1}), "malformed"),
    "seq as string": (_shaped(lambda e: {**e, "seq": str(e["seq"])}), "malformed"),
    "action not an object": (_shaped(lambda e: {**e, "action": "post"}), "malformed"),
    "bad handle": (_shaped(lambda e: {**e, "agent": "alice; DROP TABLE"}), "malformed"),
    "nested 5000 deep": (lambda c, s: b"[" * 5_000 + b"]" * 5_000, "malformed"),
    "action nested 5000 deep": (
        lambda c, s: (
            b'{"v":1,"agent":"alice","seq":%d,"sig":"AAAA","action":{"x":%s}}'
            % (s, b"[" * 5_000 + b"]" * 5_000)
        ),
        "malformed",
    ),
    "unknown action": (_signed({"type": "become_admin"}), "invalid"),
    "no title": (_signed({"type": "post", "submolt": "general"}), "invalid"),
    "bad vote value": (_signed({"type": "vote", "target": "post", "id": 1, "value": 5}), "invalid"),
    "unknown action field": (_signed({**post_action("x"), "pinned": True}), "invalid"),
}


@pytest.mark.parametrize("case", list(BAD_ENVELOPES))
async def test_a_bad_envelope_is_refused_and_recorded(scene: Scene, case: str) -> None:
    t, pool, alice = scene.topics, scene.pool1, scene.creds["alice"]
    build, code = BAD_ENVELOPES[case]
    seq = await last_seq(pool, alice, t) + 1
    await pool.publish(t.act("alice"), build(alice, seq))
    body = await pool.receive(t.reply("alice"), where=refused)
    assert body["code"] == code, body
    (row,) = [r for r in scene.rows() if r.type != "hello"]
    assert row.outcome == code
    assert len(row.payload) < 5_000  # an oversized envelope is not stored whole
    scene.assert_forum_unchanged()
    await assert_serving(scene)


async def test_a_malformed_batch_is_refused_and_recorded(scene: Scene) -> None:
    t, pool = scene.topics, scene.pool1
    for payload in (b"not json at all", b'{"an": "object"}', b"[1, []]"):
        await pool.publish(t.act_batch("pool-1"), payload)
        bodies = await pool.receive(t.reply_batch("pool-1"))
        assert {b["code"] for b in bodies} == {"malformed"}, bodies
    assert [r.outcome for r in scene.rows()] == ["malformed"] * 4
    scene.assert_forum_unchanged()
    await assert_serving(scene)


# --- logging in -----------------------------------------------------------------------------


async def _connect(broker: Broker, username: str | None, password: str | None) -> None:
    client = aiomqtt.Client(
        broker.host, broker.port, username=username, password=password,
        protocol=aiomqtt.ProtocolVersion.V311, timeout=3.0,
    )  # fmt: skip
    async with client:
        await client.subscribe("#")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("pool-1", "wrong"),
        ("engine", "wrong"),
        ("observer", ""),
        ("pool-1", None),
        ("pool-1", "<pool-2>"),  # another account's (real) password
        ("mallory", "<pool-1>"),
        ("", "<pool-1>"),
        (None, None),  # anonymous
    ],
)
async def test_bad_logins_are_refused(
    run_folder: RunFolder, broker: Broker, username: str | None, password: str | None
) -> None:
    if password is not None and password.startswith("<"):
        password = run_folder.accounts().passwords[password.strip("<>")]
    with pytest.raises(aiomqtt.MqttError):
        await asyncio.wait_for(_connect(broker, username, password), 10)


async def test_every_account_logs_in_with_its_own_password(
    run_folder: RunFolder, broker: Broker
) -> None:
    for account in run_folder.accounts().passwords:
        async with raw_client(run_folder, broker, account) as client:
            assert client.error is None


# --- hostile nesting ------------------------------------------------------------------------
# Each of these gets an engine of its own (on a fresh run and Mosquitto): a failure here may
# take the engine down.


@pytest_asyncio.fixture
async def lone_engine(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[RunFolder, Broker, EngineProcess]]:
    folder = await make_run(tmp_path_factory.mktemp("lone") / "run")
    broker = await asyncio.to_thread(start_mosquitto, folder.accounts(), folder.path / "mosq")
    try:
        engine = await EngineProcess(folder, broker).astart()
        try:
            yield folder, broker, engine
        finally:
            engine.kill()
    finally:
        broker.stop()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.slow
async def test_a_deeply_nested_batch_does_not_stop_the_engine(
    lone_engine: tuple[RunFolder, Broker, EngineProcess],
) -> None:
    folder, broker, engine = lone_engine
    t = folder.accounts().topics
    mark = last_action_id(folder.db)
    async with raw_client(folder, broker, "pool-1", [t.reply_batch("pool-1")]) as pool:
        await pool.publish(t.act_batch("pool-1"), nested(5_000))
        bodies = await pool.receive(t.reply_batch("pool-1"), within=2.0)
    assert [b["code"] for b in bodies] == ["malformed"]
    assert [r.outcome for r in ledger_since(folder.db, mark)] == ["malformed"]
    assert engine.running, engine.log()
    assert await hello_works(folder, broker.address, 5.0)


@pytest.mark.slow
async def test_a_deeply_nested_batch_item_is_refused_alone(
    lone_engine: tuple[RunFolder, Broker, EngineProcess],
) -> None:
    folder, broker, engine = lone_engine
    t, bob = folder.accounts().topics, folder.credentials("bob")
    deep = b'{"v":1,"agent":"alice","seq":1,"sig":"AAAA","action":{"type":"post","x":'
    deep += nested(900) + b"}}"
    async with raw_client(folder, broker, "pool-1", [t.reply_batch("pool-1")]) as pool:
        good = encode(envelope(bob, 0, {"type": "hello"}))
        await pool.publish(t.act_batch("pool-1"), b"[" + good + b"," + deep + b"]")
        bodies = await pool.receive(t.reply_batch("pool-1"), within=2.0)
    assert bodies[0]["ok"] is True, bodies[0]
    assert bodies[1]["ok"] is False, bodies[1]
    assert engine.running, engine.log()


@pytest.mark.parametrize(
    "payload", [b"\xff\xfe not json", b"", b"[1, 2]", b'{"kind": 7}', nested(5_000)],
    ids=["binary", "empty", "array", "bad-kind", "nested"],
)  # fmt: skip
async def test_a_hostile_control_payload_is_answered_and_the_engine_goes_on(
    lone_engine: tuple[RunFolder, Broker, EngineProcess], payload: bytes
) -> None:
    folder, broker, engine = lone_engine
    t = folder.accounts().topics
    async with raw_client(folder, broker, "engine", [t.control_result]) as runner:
        await runner.publish(t.control, payload)
        answers = await runner.receive(t.control_result, within=5.0)
    assert answers["ok"] is False and answers["id"] is None, answers
    assert engine.running, engine.log()
    assert await hello_works(folder, broker.address, 5.0)
