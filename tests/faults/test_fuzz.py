"""Property-based fuzzing of every envelope field and every field of every action, through a
real broker to a real engine process.

Each generated envelope must be answered and get exactly one ledger row with a stable outcome
that its recipe allows (``ok`` only where the action models accept it, and applied exactly as
sent); the engine must never die or log a traceback; the run file must pass
``PRAGMA integrity_check`` and the forum invariants.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from moltsim.domain.envelope import MAX_ENVELOPE_BYTES
from moltsim.runfolder import RunFolder
from tests.faults.hostile import (
    ACTION_MODELS,
    RULE_OUTCOMES,
    Attacker,
    Case,
    Seeded,
    attack_clients,
    draw,
    draw_cases,
    hostile_action,
    make_hostile_run,
    run_file_problems,
    sound_action,
    stepped_engine,
)
from tests.scenario.conftest import cli
from tests.wire.conftest import (
    Broker,
    EngineProcess,
    RawClient,
    encode,
    envelope,
    last_action_id,
    ledger_since,
    post_action,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

CI_ENVELOPES = {"mosquitto": 3_000, "embedded": 1_500}
"""Envelopes per broker in the CI form (the embedded broker is the slower of the two)."""
STEPPED_ENVELOPES = 2_000
BATCH = 100
CHECK_EVERY = 1
"""Batches between two checks of the whole run file (integrity and forum invariants)."""


async def campaign(
    attacker: Attacker, items: list[Case], send: Callable[[list[Case]], Any]
) -> None:
    for n, start in enumerate(range(0, len(items), BATCH)):
        await send(items[start : start + BATCH])
        if n % CHECK_EVERY == CHECK_EVERY - 1:
            attacker.assert_healthy()
    attacker.assert_healthy()


async def test_every_action_type_and_field_is_generated(
    hostile_run: tuple[RunFolder, Seeded],
) -> None:
    """The generators reach every action model and every one of its fields."""
    _, seeded = hostile_run
    seen: dict[str, set[str]] = {}
    for action in draw(hostile_action(seeded), 1_500, seed=0):
        key = f"{action.get('type')}/{action.get('op', '')}"
        seen.setdefault(key, set()).update(action)
    for model in ACTION_MODELS:
        fields = model.model_fields
        key = f"{fields['type'].default}/{fields['op'].default if 'op' in fields else ''}"
        assert key in seen, key
        assert set(fields) <= seen[key], (key, set(fields) - seen[key])


async def test_fuzzed_envelopes_on_an_agent_topic(
    attacker: Attacker, hostile_run: tuple[RunFolder, Seeded], hostile_broker: Broker
) -> None:
    _, seeded = hostile_run
    items = draw_cases(seeded, CI_ENVELOPES[hostile_broker.kind] // 2, seed=1)
    await campaign(attacker, items, attacker.send_on_topic)
    assert attacker.tally.outcomes["ok"] > 0.1 * len(items), attacker.tally
    assert attacker.tally.applied_checked > 0


async def test_fuzzed_envelopes_in_pool_batches(
    attacker: Attacker, hostile_run: tuple[RunFolder, Seeded], hostile_broker: Broker
) -> None:
    _, seeded = hostile_run
    items = draw_cases(seeded, CI_ENVELOPES[hostile_broker.kind] // 2 + 1, seed=2)
    before = attacker.tally.sent
    await campaign(attacker, items, attacker.send_batch)
    assert attacker.tally.sent - before == len(items)
    assert {"ok", "invalid", "malformed", "bad_signature", "not_your_agent"} <= set(
        attacker.tally.outcomes
    ), attacker.tally


async def test_raw_garbage_bytes_then_a_sound_post(attacker: Attacker) -> None:
    items = [Case("garbage", raw=raw) for raw in draw(st.binary(max_size=2_048), 300, seed=3)]
    await campaign(attacker, items, attacker.send_on_topic)
    sound = Case("signed", "alice", {"type": "post", "submolt": "general", "title": "still here"},
                 must_apply=True)  # fmt: skip
    (built,) = await attacker.send_on_topic([sound])
    assert built.expect == {"ok"}


@pytest.mark.parametrize("over", [0, 1])
async def test_the_size_limit_holds_inside_a_pool_batch(attacker: Attacker, over: int) -> None:
    """Regression: envelopes taken from a pool batch were never measured, so one of any size
    (up to the 8 MiB batch) was accepted there while the same bytes on an agent topic were
    refused as too large."""
    sized = Case("signed", "alice", {"type": "post", "submolt": "general", "title": "sized"},
                 pad_to=MAX_ENVELOPE_BYTES + over)  # fmt: skip
    for send in (attacker.send_on_topic, attacker.send_batch):
        outcomes = attacker.tally.outcomes.copy()
        (built,) = await send([sized])
        assert built.expect == ({"too_large"} if over else RULE_OUTCOMES)
        assert attacker.tally.outcomes - outcomes == {("too_large" if over else "ok"): 1}


NOT_WRITES = [
    {"v": 1, "agent": ["alice"], "seq": 1, "action": {"type": "post"}, "sig": "AAAA"},
    {"v": 1, "agent": {"a": 1}, "seq": [1], "action": {"type": "vote"}, "sig": "AAAA"},
    {"v": 1, "agent": "alice", "seq": 1.5, "action": {"type": "post"}, "sig": "AAAA"},
    {"v": 1, "agent": "alice", "seq": "1", "action": {"type": "comment"}, "sig": "AAAA"},
]
"""Writes by their type that cannot be writes by their shape (unhashable or mistyped agent and
seq): a stepped engine must refuse them, not hold them."""
BAD_STEP_REPORTS = [b'{"tick": 0, "sent": "many"}', b'{"tick": "x"}', b"[]", b"\xff",
                    b'{"tick": 1, "sent": [1]}', b'{"tick": 1e999}', b"null"]  # fmt: skip


async def test_a_stepped_engine_survives_hostile_writes_and_step_reports(tmp_path: Path) -> None:
    """Regression: in stepped mode one envelope whose agent was a JSON array, or one step report
    whose ``sent`` was not a number, stopped the engine (an exception in its broker reader)."""
    folder, _ = await make_hostile_run(tmp_path / "run")
    async with stepped_engine(folder, tmp_path / "mosq") as engine:
        await _stepped_attack(folder, engine.broker, engine)


async def _stepped_attack(folder: RunFolder, broker: Broker, engine: EngineProcess) -> None:
    t, accounts = folder.accounts().topics, folder.accounts()
    mark = last_action_id(folder.db)
    pool1 = RawClient(broker.address, "pool-1", accounts.passwords["pool-1"],
                      [t.reply("alice"), t.reply_batch("pool-1"), t.tick])  # fmt: skip
    pool2 = RawClient(broker.address, "pool-2", accounts.passwords["pool-2"])
    async with pool1, pool2:
        for message in NOT_WRITES:
            await pool1.publish(t.act("alice"), json.dumps(message).encode())
        await pool1.publish(t.act_batch("pool-1"), json.dumps(NOT_WRITES).encode())
        for report in BAD_STEP_REPORTS:
            await pool1.publish(t.step("pool-1"), report)
            await pool2.publish(t.step("pool-2"), report)
        answers = [await pool1.receive(t.reply("alice")) for _ in NOT_WRITES]
        answers += await pool1.receive(t.reply_batch("pool-1"))
        assert [a["code"] for a in answers] == ["malformed"] * 2 * len(NOT_WRITES)

        # The engine still runs its ticks: a genuine write is applied at the end of one.
        alice = folder.credentials("alice")
        await pool1.publish(t.act("alice"), encode(envelope(alice, 1, post_action("stepped"))))
        tick = (await pool1.receive(t.tick, where=lambda b: "tick" in b, within=10.0))["tick"]
        await pool1.publish(t.step("pool-1"), json.dumps({"tick": tick, "sent": 1}).encode())
        await pool2.publish(t.step("pool-2"), json.dumps({"tick": tick, "sent": 0}).encode())
        reply = await pool1.receive(t.reply("alice"), where=lambda b: b.get("seq") == 1, within=20)
        assert reply["ok"] is True, reply
    assert engine.running, engine.log()
    assert "Traceback" not in engine.log() and " ERROR " not in engine.log(), engine.log()
    outcomes = [row.outcome for row in ledger_since(folder.db, mark) if row.type != "hello"]
    assert sorted(outcomes) == ["malformed"] * 2 * len(NOT_WRITES) + ["ok"]
    assert run_file_problems(folder.db) == []


def _seq_is(seq: int) -> Callable[[Any], bool]:
    return lambda body: isinstance(body, dict) and body.get("seq") == seq


async def test_a_pool_cannot_crowd_out_another_pools_writes_in_stepped_time(
    tmp_path: Path,
) -> None:
    """Regression: a stepped engine took a write as a resend of one already held when agent and
    seq matched, whoever sent it; another pool could guess alice's next seqs and have her real
    writes silently dropped, tick after tick."""
    folder, _ = await make_hostile_run(tmp_path / "run")
    async with stepped_engine(folder, tmp_path / "mosq") as engine:
        t, accounts = folder.accounts().topics, folder.accounts()
        alice = folder.credentials("alice")
        pool1 = RawClient(engine.broker.address, "pool-1", accounts.passwords["pool-1"],
                          [t.reply("alice"), t.tick])  # fmt: skip
        pool2 = RawClient(engine.broker.address, "pool-2", accounts.passwords["pool-2"],
                          [t.reply_batch("pool-2")])  # fmt: skip
        async with pool1, pool2:
            tick = (await pool1.receive(t.tick, where=lambda b: "tick" in b))["tick"]
            squatters = [{"v": 1, "agent": "alice", "seq": seq, "sig": "AAAA",
                          "action": post_action("squat")} for seq in (1, 2, 3)]  # fmt: skip
            await pool2.publish(t.act_batch("pool-2"), json.dumps(squatters).encode())
            for seq in (1, 2, 3):
                genuine = envelope(alice, seq, post_action(f"real {seq}"))
                await pool1.publish(t.act("alice"), encode(genuine))
            await pool2.publish(t.step("pool-2"), json.dumps({"tick": tick, "sent": 3}).encode())
            await pool1.publish(t.step("pool-1"), json.dumps({"tick": tick, "sent": 3}).encode())
            refused = await pool2.receive(t.reply_batch("pool-2"), within=20)
            assert [r["code"] for r in refused] == ["not_your_agent"] * 3
            for seq in (1, 2, 3):
                reply = await pool1.receive(t.reply("alice"), where=_seq_is(seq), within=20)
                assert reply["ok"] is True, reply


async def test_fuzzed_envelopes_against_a_stepped_engine(tmp_path: Path) -> None:
    """The same generated envelopes against the stepped clock, whose server reads each message
    before the gateway does to hold writes until the end of the tick."""
    folder, seeded = await make_hostile_run(tmp_path / "run")
    async with (
        stepped_engine(folder, tmp_path / "mosq") as engine,
        attack_clients(folder, engine.broker, ticks=True) as clients,
    ):
        attacker = Attacker(folder, clients, engine, stepped=True)
        items = draw_cases(seeded, STEPPED_ENVELOPES, seed=4)
        half = len(items) // 2
        await campaign(attacker, items[:half], attacker.send_on_topic)
        await campaign(attacker, items[half:], attacker.send_batch)
        assert attacker.tally.sent + attacker.tally.resent == len(items)
        assert attacker.tally.outcomes["ok"] > 0.1 * len(items), attacker.tally


async def test_a_fuzzed_run_exports_and_verifies(
    attacker: Attacker, hostile_run: tuple[RunFolder, Seeded], tmp_path: Path
) -> None:
    """Hostile text survives export, and ``moltsim verify`` matches every record to the signed
    action that made it. Regression: verify compared records with the raw signed text, but the
    action models trim titles and bodies, so a post signed as " hi " failed as "hi"."""
    folder, seeded = hostile_run
    sound = draw(sound_action(seeded), 200, seed=6)
    padded = [{**a, **{k: f" \t{v}\n " for k, v in a.items() if k in ("title", "body")}}
              for a in sound]  # fmt: skip
    cases = [Case("signed", "bob", action, must_apply=True) for action in padded]
    await attacker.send_batch(cases)
    out = tmp_path / "export"
    exported = await asyncio.to_thread(cli, "export", folder.path, "--out", out)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    verified = await asyncio.to_thread(cli, "verify", out)
    assert verified.returncode == 0, verified.stdout[-3_000:] + verified.stderr
    assert "every signature and record checks out" in verified.stdout
