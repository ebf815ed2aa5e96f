"""Run files to export: a small forum written in-process through the gateway with real signed
envelopes (one agent's owner objects), and real stepped smoke runs of ``moltsim run``."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from moltsim.domain import actions as a
from moltsim.engine.rules import ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from moltsim.identity.signing import Signer
from moltsim.wire.gateway import Gateway, Inbound
from tests.scenario.conftest import SCENARIOS, running

T0 = 1_800_000_000.0
OBJECTOR = "hush_hollow"
LOOKALIKE = "hush_hollow_2"
"""Another agent whose handle starts with the objector's: it must survive redaction."""
SECRETS = ("ZEPHYRQUILL", "MARMALADEECHO", "OBSIDIANLARK", "KESTRELNINE", "PAPRIKADAWN",
           "HUSHCLUBDESC", "GLASSHERON", "QUARTZWREN")  # fmt: skip
"""Words only the objecting agent ever wrote."""
HANDLE_RE = re.compile(r"(?<![A-Za-z0-9_-])hush_hollow(?![A-Za-z0-9_-])", re.IGNORECASE)


@dataclass
class Forum:
    """A run file written through the real gateway and engine."""

    path: Path
    ids: dict[str, int] = field(default_factory=dict)
    """Named things created: ``post:silent``, ``comment:thanks``..."""


class _Writer:
    def __init__(self, engine: Engine, gateway: Gateway, clock: list[float]) -> None:
        self.engine, self.gateway, self.clock = engine, gateway, clock
        self.signers: dict[str, Signer] = {}
        self.seqs: dict[str, int] = {}
        self.agent_ids: dict[str, int] = {}

    async def register(self, handle: str, **profile: Any) -> None:
        signer = self.signers[handle] = Signer.generate()
        self.seqs[handle] = 0
        self.agent_ids[handle] = await self.engine.register_agent(
            handle, signer.public_key, self.clock[0], **profile
        )

    async def send(self, handle: str, action: dict[str, Any], *, raw: bytes | None = None
                   ) -> dict[str, Any]:  # fmt: skip
        self.clock[0] += 60.0
        self.seqs[handle] += 1
        if raw is None:
            raw = self.signers[handle].envelope_bytes(handle, self.seqs[handle], action)
        (reply,) = await self.gateway.handle([Inbound(raw=raw, topic_agent=handle)])
        return reply.body

    async def ok(self, handle: str, action: dict[str, Any]) -> dict[str, Any]:
        body = await self.send(handle, action)
        assert body["ok"], (action, body)
        return body


async def build_forum(path: Path) -> Forum:
    rules = Rules(
        rate_limits=RateLimits(enabled=False),
        proactive_contact=ProactiveContact(enabled=False),
    )
    engine = await Engine.open(path, rules)
    clock = [T0]
    forum = Forum(path)
    ids = forum.ids
    try:
        gateway = await Gateway.open(engine, lambda: clock[0])
        w = _Writer(engine, gateway, clock)
        await w.register("alice", display_name="Alice", bio="Likes threads.")
        await w.register("bob", bio="Replies to everyone.")
        await w.register("carol")
        await w.register(OBJECTOR, display_name="Hush", bio="My bio: PAPRIKADAWN")
        await w.register(LOOKALIKE, bio="Not the same agent as hush_hollow.")
        await engine.seed_submolt("general", clock[0], "General")
        await w.ok("alice", {"type": "create_submolt", "name": "poetry", "title": "Poetry",
                             "description": "Verse, by @alice and hush_hollow."})  # fmt: skip
        await w.ok(OBJECTOR, {"type": "create_submolt", "name": "hush-club", "title": "Hush club",
                              "description": "HUSHCLUBDESC"})  # fmt: skip
        silent = await w.ok(OBJECTOR, {"type": "post", "submolt": "general",
                                       "title": "Silent verses",
                                       "body": "ZEPHYRQUILL is mine."})  # fmt: skip
        ids["post:silent"] = silent["post_id"]
        nice = await w.ok("bob", {"type": "comment", "post_id": silent["post_id"],
                                  "body": "Nice one, @hush_hollow!"})  # fmt: skip
        ids["comment:nice"] = nice["comment_id"]
        thanks = await w.ok(OBJECTOR, {"type": "comment", "parent_id": nice["comment_id"],
                                       "body": "Thanks bob, MARMALADEECHO."})  # fmt: skip
        ids["comment:thanks"] = thanks["comment_id"]
        alice_post = await w.ok("alice", {"type": "post", "submolt": "poetry",
                                          "title": "Ask me about meter",
                                          "body": "Line one.\nLine two, for HUSH_HOLLOW."}
                                )  # fmt: skip
        ids["post:alice"] = alice_post["post_id"]
        hush_reply = await w.ok(OBJECTOR, {"type": "comment", "post_id": alice_post["post_id"],
                                           "body": "Iambs are OBSIDIANLARK."})  # fmt: skip
        ids["comment:hush_reply"] = hush_reply["comment_id"]
        agree = await w.ok("carol", {"type": "comment", "parent_id": hush_reply["comment_id"],
                                     "body": "I agree with hush_hollow here."})  # fmt: skip
        ids["comment:agree"] = agree["comment_id"]
        deeper = await w.ok("alice", {"type": "comment", "parent_id": agree["comment_id"],
                                      "body": "Two lines\nof reply."})  # fmt: skip
        ids["comment:deeper"] = deeper["comment_id"]
        lonely = await w.ok(OBJECTOR, {"type": "post", "submolt": "hush-club",
                                       "title": "GLASSHERON", "body": ""})  # fmt: skip
        ids["post:lonely"] = lonely["post_id"]
        link = await w.ok("carol", {"type": "post", "submolt": "general", "title": "A link",
                                    "url": "https://example.org/molt"})  # fmt: skip
        ids["post:link"] = link["post_id"]
        look = await w.ok(LOOKALIKE, {"type": "post", "submolt": "general",
                                      "title": "I am hush_hollow_2",
                                      "body": "Different agent."})  # fmt: skip
        ids["post:lookalike"] = look["post_id"]
        gone = await w.ok("alice", {"type": "post", "submolt": "general", "title": "Oops",
                                    "body": "Posted too soon."})  # fmt: skip
        await w.ok("alice", {"type": "delete_post", "post_id": gone["post_id"]})
        ids["post:deleted"] = gone["post_id"]
        for voter, target, target_id, value in [
            ("alice", "post", silent["post_id"], 1),
            ("bob", "post", lonely["post_id"], 1),
            (OBJECTOR, "post", alice_post["post_id"], 1),
            (OBJECTOR, "comment", nice["comment_id"], -1),
            ("bob", "post", alice_post["post_id"], 1),
            ("carol", "post", alice_post["post_id"], -1),
            ("carol", "post", alice_post["post_id"], 1),
            ("alice", "comment", agree["comment_id"], 1),
            ("bob", "comment", agree["comment_id"], 1),
            ("bob", "comment", agree["comment_id"], 0),
            (LOOKALIKE, "post", link["post_id"], -1),
        ]:
            await w.ok(voter, {"type": "vote", "target": target, "id": target_id, "value": value})
        for follower, followee in [(OBJECTOR, "alice"), ("bob", OBJECTOR), ("alice", "bob"),
                                   ("alice", "carol")]:  # fmt: skip
            await w.ok(follower, {"type": "follow", "agent": followee})
        await w.ok("alice", {"type": "unfollow", "agent": "carol"})
        await w.ok("alice", {"type": "dm", "to": OBJECTOR, "body": "Hi @hush_hollow, a question."})
        await w.ok(OBJECTOR, {"type": "dm", "to": "alice", "body": "KESTRELNINE, between us."})
        await w.ok("bob", {"type": "dm", "to": "carol", "body": "Seen what hush_hollow wrote?"})
        await w.ok(OBJECTOR, {"type": "update_profile", "bio": "Still PAPRIKADAWN"})
        await w.ok("carol", {"type": "feed", "sort": "new"})
        # alice's prompt quoted the objecting agent's post: it was in her feed.
        shown = json.dumps([{"role": "user", "content": "- post 1 by @hush_hollow: ZEPHYRQUILL"}])
        for prompt, completion in ((1_200, 80), (1_500, 120)):
            await w.ok("alice", {"type": "llm_call", "model": "small", "prompt_tokens": prompt,
                                 "completion_tokens": completion, "latency_ms": 850.5,
                                 "outcome": "ok", "request": shown,
                                 "answers": ['{"thoughts": "ZEPHYRQUILL, indeed"}']})  # fmt: skip
        refused = await w.send("bob", {"type": "vote", "target": "post", "id": 999, "value": 1})
        assert refused["code"] == "not_found"
        forged = Signer.generate().envelope_bytes("bob", 77, {"type": "post", "submolt": "general",
                                                             "title": "forged"})  # fmt: skip
        assert (await w.send("bob", {}, raw=forged))["code"] == "bad_signature"
        garbled = b'{"v": 1, "agent": "hush_hollow", "seq": "x", "action": {"body": "QUARTZWREN"}}'
        assert (await w.send(OBJECTOR, {}, raw=garbled))["code"] == "malformed"
        stranger = Signer.generate().envelope_bytes("nobody_here", 1, {"type": "feed"})
        assert (await w.send("bob", {}, raw=stranger))["code"] == "unknown_agent"
        seeded = await engine.submit(w.agent_ids["carol"], a.CreatePost(
            submolt="general", title="Welcome", body="Seeded by the scenario."), clock[0],
            kind="post")  # fmt: skip
        ids["post:seeded"] = seeded.data["post_id"]
        clock[0] += 60
        await engine.record_objection(w.agent_ids[OBJECTOR], clock[0])
        ids.update({f"agent:{h}": i for h, i in w.agent_ids.items()})
    finally:
        await engine.close()
    return forum


@pytest.fixture(scope="session")
def forum(tmp_path_factory: pytest.TempPathFactory) -> Forum:
    path = tmp_path_factory.mktemp("forum") / "run.db"
    return asyncio.run(build_forum(path))


@dataclass(frozen=True)
class SmokeRuns:
    first: Path
    again: Path
    seed8: Path


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> SmokeRuns:
    """Three stepped smoke runs at once: two with the scenario's seed, one with ``--seed 8``."""
    base = tmp_path_factory.mktemp("smoke")
    dirs = SmokeRuns(base / "first", base / "again", base / "seed8")
    with (
        running(SCENARIOS / "smoke.toml", dirs.first) as first,
        running(SCENARIOS / "smoke.toml", dirs.again) as again,
        running(SCENARIOS / "smoke.toml", dirs.seed8, "--seed", "8") as seed8,
    ):
        for run in (first, again, seed8):
            code = run.wait(timeout=120)
            assert code == 0, run.text[-3000:]
    return dirs
