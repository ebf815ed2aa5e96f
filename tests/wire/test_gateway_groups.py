"""Large groups have their signatures checked ahead, on several threads: the replies and the
ledger must be exactly what checking the same envelopes one at a time gives."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from moltsim.engine.rules import ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from moltsim.identity.signing import Signer
from moltsim.wire import gateway as gateway_module
from moltsim.wire.gateway import VERIFY_AHEAD_MIN, Gateway, Inbound

T0 = 1_800_000_000.0
AGENTS = ("alice", "bob", "carol")


def hostile_group(signers: dict[str, Signer], rng: random.Random) -> list[Inbound]:
    """Good writes and queries mixed with forged, malformed, oversized, unknown-agent, replayed
    and unsignable envelopes, on agent topics and as pool-batch items."""
    seqs = dict.fromkeys(AGENTS, 0)
    stranger = Signer(_key(9))
    group: list[Inbound] = []
    for i in range(6 * VERIFY_AHEAD_MIN):
        handle = rng.choice(AGENTS)
        seqs[handle] += 1
        action: dict[str, Any] = {"type": "post", "submolt": "general", "title": f"post {i}"}
        if i % 5 == 0:
            action = {"type": "feed", "limit": 3}
        kind = rng.choice(["good"] * 6 + ["forged", "garbage", "huge", "unknown", "replay",
                                          "surrogate", "batch", "tampered"])  # fmt: skip
        signer = stranger if kind == "forged" else signers[handle]
        if kind == "surrogate":
            action = {"type": "post", "submolt": "general", "title": "\ud800"}
        if kind == "huge":
            action = {"type": "post", "submolt": "general", "title": "x", "body": "y" * 70_000}
        agent = "nobody" if kind == "unknown" else handle
        seq = 1 if kind == "replay" else seqs[handle]
        fields = {"v": 1, "agent": agent, "seq": seq, "action": action}
        try:
            sig = signer.sign(fields)
        except ValueError:
            sig = base64.b64encode(bytes(64)).decode()
        message = {**fields, "sig": sig}
        if kind == "tampered":
            message["action"] = {**action, "title": "changed"}
        if kind == "garbage":
            group.append(Inbound(raw=b"{not json", topic_agent=handle))
        elif kind == "batch":
            group.append(Inbound(raw=b"", pool="pool-1", parsed=message))
        else:
            raw = json.dumps(message, ensure_ascii=False, allow_nan=True).encode(
                "utf-8", "surrogatepass"
            )
            group.append(Inbound(raw=raw, topic_agent=agent))
    return group


async def replay(path: Path, sizes: int) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Register the agents with fixed keys, send the fixed group in chunks of ``sizes``."""
    rules = Rules(
        rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
    )
    engine = await Engine.open(path, rules)
    rng = random.Random(5)
    signers = {h: Signer(_key(i)) for i, h in enumerate(AGENTS)}
    for handle, signer in signers.items():
        await engine.register_agent(handle, signer.public_key, T0, pool="pool-1")
    await engine.seed_submolt("general", T0)
    gateway = await Gateway.open(engine, lambda: T0 + 86_400)
    bodies: list[dict[str, Any]] = []
    group = hostile_group(signers, rng)
    try:
        for i in range(0, len(group), sizes):
            bodies += [reply.body for reply in await gateway.handle(group[i : i + sizes])]
    finally:
        gateway.close()
        await engine.close()
    with sqlite3.connect(path) as conn:
        ledger = conn.execute(
            "SELECT agent_id, seq, type, outcome, message, sig FROM actions ORDER BY id"
        ).fetchall()
    return bodies, ledger


def _key(i: int) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32)


async def test_signatures_checked_ahead_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 4 * VERIFY_AHEAD_MIN
    ahead = await replay(tmp_path / "ahead.db", size)
    monkeypatch.setattr(gateway_module, "VERIFY_AHEAD_MIN", size + 1)
    in_order = await replay(tmp_path / "in-order.db", size)
    assert ahead == in_order
    outcomes = {row[3] for row in ahead[1]}
    assert {"ok", "bad_signature", "malformed", "too_large", "unknown_agent"} <= outcomes


async def test_a_group_checked_ahead_uses_the_verifier_threads(tmp_path: Path) -> None:
    """Guards the test above: its groups really take the checked-ahead path."""
    calls: list[int] = []
    original = gateway_module._verify_all

    def counting(jobs: list[Any]) -> None:
        calls.append(len(jobs))
        original(jobs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gateway_module, "_verify_all", counting)
        await replay(tmp_path / "run.db", 4 * VERIFY_AHEAD_MIN)
    assert len(calls) >= 2 * (gateway_module.VERIFY_THREADS + 1) - 1 and sum(calls) > 0


async def test_a_group_waiting_for_its_signatures_is_not_overtaken(tmp_path: Path) -> None:
    """A large group checks its signatures on other threads; a small group that arrives while it
    waits must still be checked and applied after it (seqs and the ledger follow arrival)."""
    engine = await Engine.open(tmp_path / "run.db", Rules(rate_limits=RateLimits(enabled=False)))
    signer = Signer(_key(0))
    await engine.register_agent("alice", signer.public_key, T0, pool="pool-1")
    await engine.seed_submolt("general", T0)
    gateway = await Gateway.open(engine, lambda: T0 + 86_400)

    def vote(seq: int) -> Inbound:
        action = {"type": "update_profile", "bio": f"bio {seq}"}
        return Inbound(signer.envelope_bytes("alice", seq, action), topic_agent="alice")

    large = [vote(seq) for seq in range(1, VERIFY_AHEAD_MIN + 1)]
    small = [vote(VERIFY_AHEAD_MIN + 1)]
    try:
        first = asyncio.create_task(gateway.handle(large))
        await asyncio.sleep(0)  # the large group is now waiting for its signatures
        second = asyncio.create_task(gateway.handle(small))
        replies = [*await first, *await second]
    finally:
        gateway.close()
        await engine.close()
    assert [r.body["ok"] for r in replies] == [True] * (VERIFY_AHEAD_MIN + 1)
    with sqlite3.connect(tmp_path / "run.db") as conn:
        seqs = [s for (s,) in conn.execute("SELECT seq FROM actions WHERE seq > 0 ORDER BY id")]
        (bio,) = conn.execute("SELECT bio FROM agents WHERE handle = 'alice'").fetchone()
    assert seqs == list(range(1, VERIFY_AHEAD_MIN + 2))
    assert bio == f"bio {VERIFY_AHEAD_MIN + 1}"
