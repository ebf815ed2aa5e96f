"""Structured-output negotiation, the comment target, failure kinds, several endpoints and
backing off, recorded decisions and their replay: the LLM brain through the real openai client
against scripted servers on loopback (the scripted server injects the faults; the real model is
tested in tests/llm)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from moltsim.agent.brains.llm import LlmBrain, Shown
from moltsim.agent.skill import Skill
from moltsim.domain.actions import ACTION_ADAPTER, ReportLlmCall
from moltsim.llm import endpoints as endpoints_module
from moltsim.llm.answers import answer_schema
from moltsim.llm.config import LlmConfig
from moltsim.llm.endpoints import Endpoints
from moltsim.llm.replay import Recordings
from tests.agent.conftest import (
    KEY_ENV,
    MODEL,
    BrainMaker,
    FakeLlmServer,
    Reply,
    answer,
    closed_port,
    note_view,
    observation,
    persona,
    post_view,
)

FEED = [
    post_view(12, "apogee_ada", "Launch windows explained", "Orbits are about timing."),
    post_view(13, "fresh_wick", "Day one here", "Hello everyone, what should I read first?"),
]
NOTES = [note_view(5, "reply", "apogee_ada", post_id=12, comment_id=31, excerpt="Try it.")]
COMMENT = {"type": "comment", "post_id": 12, "body": "Timing is everything."}
POST_ACTION = {"type": "post", "submolt": "general", "title": "Hi", "body": "Hello."}
VOTE = {"type": "vote", "target": "post", "id": 13, "value": 1}


def record(decision: Any) -> ReportLlmCall:
    report = ACTION_ADAPTER.validate_python(decision.usage)
    assert isinstance(report, ReportLlmCall)
    return report


def formats(server: FakeLlmServer) -> list[str]:
    return [(r.json().get("response_format") or {}).get("type", "text") for r in server.requests]


# --- structured output: negotiated once per endpoint --------------------------------------------


async def test_an_endpoint_without_json_schema_falls_back_to_json_object_and_keeps_it(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    llm_server.refuse_formats = {"json_schema"}
    llm_server.default = Reply(answer([COMMENT]))
    brain = make_llm_brain()
    first = await brain.decide(observation(FEED))
    second = await brain.decide(observation(FEED))
    assert formats(llm_server) == ["json_schema", "json_object", "json_object"]
    assert record(first).mode == record(second).mode == "json_object"
    assert record(first).outcome == "ok" and first.actions == [COMMENT]


async def test_an_endpoint_without_any_json_mode_gets_plain_text_and_a_repair_pass(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    llm_server.refuse_formats = {"json_schema", "json_object"}
    fenced = "Here you go:\n```json\n" + answer([COMMENT]) + "\n```"
    refused = [Reply("refused by format"), Reply("refused by format")]  # each 400 takes one
    llm_server.queue(*refused, Reply(fenced), Reply("I would comment."), Reply(answer([COMMENT])))
    brain = make_llm_brain()
    first = await brain.decide(observation(FEED))
    assert formats(llm_server) == ["json_schema", "json_object", "text"]
    assert record(first).mode == "text"
    assert first.actions == [COMMENT], "a JSON object in a code fence is taken"
    second = await brain.decide(observation(FEED))
    assert record(second).outcome == "repaired" and second.actions == [COMMENT]


async def test_a_fixed_mode_is_used_as_is(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    llm_server.default = Reply(answer([COMMENT]))
    await make_llm_brain(structured_output="json_object").decide(observation(FEED))
    assert formats(llm_server) == ["json_object"]


async def test_a_bad_key_is_not_taken_for_a_missing_mode(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    llm_server.queue(Reply(status=401))
    decision = await make_llm_brain(max_retries=0).decide(observation(FEED))
    assert formats(llm_server) == ["json_schema"], "a 401 is not about the format"
    assert (record(decision).outcome, record(decision).error) == ("error", "http_4xx")


def test_the_schema_names_only_what_was_shown() -> None:
    shown = Shown(observation(FEED, NOTES))
    assert (shown.posts, shown.comments) == ([12, 13], [31])
    mention = note_view(6, "mention", "fresh_wick", post_id=40)
    assert Shown(observation(FEED, [mention])).posts == [12, 13, 40], "a post one was told of"
    schema = answer_schema(shown.posts, shown.comments, shown.submolts, shown.agents)
    actions = schema["properties"]["actions"]
    first = [s["properties"] for s in actions["prefixItems"][0]["anyOf"]]
    comments = [s for s in first if s["type"] == {"const": "comment"}]
    assert {"post_id": {"enum": [12, 13]}}.items() <= comments[0].items()
    assert {"parent_id": {"enum": [31]}}.items() <= comments[1].items()
    assert all(not ({"post_id", "parent_id"} <= c.keys()) for c in comments), "one target each"
    later = {s["properties"]["type"]["const"] for s in actions["items"]["anyOf"]}
    assert later == {"vote", "subscribe", "follow"}, "one piece of writing per answer, first"
    no_notes = answer_schema([12], [], ["general"], [])
    kinds = [s["properties"] for s in no_notes["properties"]["actions"]["prefixItems"][0]["anyOf"]]
    assert not any("parent_id" in k for k in kinds), "no comment shown: no reply shape"


# --- the comment's target ---------------------------------------------------------------------


async def test_a_post_id_in_parent_id_is_sent_back_for_repair(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    """The failure seen with a real model: a post's id as the parent comment's id. It would
    be refused, or worse, land under an unrelated comment that has that id."""
    wrong = {"type": "comment", "parent_id": 12, "body": "Three to one."}
    llm_server.queue(Reply(answer([wrong])), Reply(answer([COMMENT])))
    decision = await make_llm_brain().decide(observation(FEED, NOTES))
    assert decision.actions == [COMMENT]
    assert record(decision).outcome == "repaired"
    repair = llm_server.requests[1].messages[-1]["content"]
    assert "parent_id 12 is not a comment" in repair and "use post_id" in repair


@pytest.mark.parametrize(
    "wrong",
    [{"type": "comment", "post_id": 412, "body": "Hm."},
     {"type": "vote", "target": "post", "id": 99, "value": 1},
     {"type": "vote", "target": "comment", "id": 12, "value": -1}],
    ids=["comment-unseen-post", "vote-unseen-post", "vote-post-as-comment"],
)  # fmt: skip
async def test_ids_never_shown_are_refused_before_the_engine_sees_them(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer, wrong: dict[str, Any]
) -> None:
    llm_server.default = Reply(answer([wrong]))
    decision = await make_llm_brain().decide(observation(FEED, NOTES))
    assert decision.actions == []
    assert (record(decision).outcome, record(decision).error) == ("invalid", "unparsable")
    assert len(record(decision).answers) == 2, "both raw answers are kept, to tell why"


@pytest.mark.parametrize(
    ("many", "why"),
    [([POST_ACTION, POST_ACTION], "one post per answer"),
     ([COMMENT, {**COMMENT, "body": "And again."}], "one comment per answer"),
     ([VOTE, {**VOTE, "value": -1}], "vote once")],
    ids=["posts", "comments", "votes"],
)  # fmt: skip
async def test_what_the_rate_limits_would_refuse_is_sent_back_for_repair(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer, many: list[dict[str, Any]], why: str
) -> None:
    llm_server.queue(Reply(answer(many)), Reply(answer(many[:1])))
    decision = await make_llm_brain().decide(observation(FEED, NOTES))
    assert decision.actions == many[:1]
    assert why in llm_server.requests[1].messages[-1]["content"]


async def test_the_observation_says_which_id_is_which(make_llm_brain: BrainMaker) -> None:
    brain = make_llm_brain()
    text = brain.user_prompt(observation(FEED, NOTES))
    assert "reply from @apogee_ada: their comment 31 on post 12" in text
    assert "- post 12 in m/" in text


def test_the_skill_teaches_both_comment_targets(skill: Skill) -> None:
    assert '"post_id": 128' in skill.text and '"parent_id": 977' in skill.text
    assert '"parent_id": 412' not in skill.text, "the example models once copied word for word"


# --- failures by kind, and backing off --------------------------------------------------------


async def test_failures_are_recorded_by_kind(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer
) -> None:
    llm_server.queue(Reply(status=503), Reply(answer([]), delay=2.0))
    brain = make_llm_brain(max_retries=0, timeout_s=0.3)
    assert record(await brain.decide(observation(FEED))).error == "http_5xx"
    assert record(await brain.decide(observation(FEED))).error == "timeout"
    dead = make_llm_brain(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    report = record(await dead.decide(observation(FEED)))
    assert (report.outcome, report.error, report.answers) == ("error", "connection", [])


async def test_an_endpoint_that_keeps_failing_is_rested_and_said_so(
    make_llm_brain: BrainMaker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(endpoints_module, "FIRST_REST_S", 0.4)
    dead = make_llm_brain(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    assert dead.endpoints is not None
    for _ in range(3):
        await dead.decide(observation(FEED))
    assert "backing off" in caplog.text
    started = time.monotonic()
    await dead.decide(observation(FEED))
    assert time.monotonic() - started >= 0.3, "the next call waited for the rest to end"
    assert dead.endpoints.endpoints[0].rest_s == 1.6, "each rest is twice the last"


async def test_several_endpoints_share_the_load_and_one_dead_does_not_stop_the_others(
    llm_server: FakeLlmServer, api_key: str, skill: Skill
) -> None:
    second = FakeLlmServer()
    try:
        dead = f"http://127.0.0.1:{closed_port()}/v1"
        config = LlmConfig(
            base_urls=[llm_server.base_url, second.base_url, dead],
            model=MODEL, api_key_env=KEY_ENV, max_retries=0, concurrency=4,
        )  # fmt: skip
        for server in (llm_server, second):
            server.default = Reply(answer([COMMENT]), delay=0.2)
        endpoints = Endpoints(config)
        brains = [LlmBrain(persona(), skill, config, endpoints, f"tess_{i}") for i in range(12)]
        decisions = await asyncio.gather(*(b.decide(observation(FEED)) for b in brains))
        ok = [d for d in decisions if record(d).outcome == "ok"]
        assert len(ok) >= 9, "the dead endpoint costs at most its first failures"
        assert abs(len(llm_server.requests) - len(second.requests)) <= 2, "least loaded first"
        await endpoints.aclose()
    finally:
        second.close()


# --- record and replay ------------------------------------------------------------------------


async def test_a_replayed_decision_is_the_recorded_one(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer, skill: Skill
) -> None:
    wrong = {"type": "comment", "parent_id": 12, "body": "Three to one."}
    llm_server.queue(Reply(answer([wrong])), Reply(answer([COMMENT])))
    original = make_llm_brain(handle="ten_x_tess")
    recorded = await original.decide(observation(FEED, NOTES))
    requests = len(llm_server.requests)

    replay = Recordings({"ten_x_tess": [recorded.usage]})
    config = original.config
    twin = LlmBrain(persona(), skill, config, None, "ten_x_tess", recordings=replay)
    again = await twin.decide(observation(FEED, NOTES))
    assert len(llm_server.requests) == requests, "no model was called"
    assert again.actions == recorded.actions == [COMMENT]
    assert again.usage == recorded.usage, "the record is signed again as it was"
    assert replay.drifted == 0

    assert (await twin.decide(observation(FEED, NOTES))).actions == []
    assert replay.missing == 1


async def test_a_replay_that_drifts_is_noticed(
    make_llm_brain: BrainMaker, llm_server: FakeLlmServer, skill: Skill
) -> None:
    llm_server.default = Reply(answer([COMMENT]))
    recorded = await make_llm_brain(handle="ten_x_tess").decide(observation(FEED))
    replay = Recordings({"ten_x_tess": [recorded.usage]})
    twin = LlmBrain(
        persona(), skill, LlmConfig(base_url="http://127.0.0.1:9/v1"), None, "ten_x_tess",
        recordings=replay,
    )  # fmt: skip
    decision = await twin.decide(observation(FEED[:1]))
    assert replay.drifted == 1
    assert decision.actions == [COMMENT]


def test_a_record_fits_an_envelope(make_llm_brain: BrainMaker) -> None:
    big = {"thoughts": "x" * 50_000, "actions": []}
    report = ReportLlmCall(
        model="m", prompt_tokens=1, completion_tokens=1, latency_ms=1, outcome="invalid",
        request=json.dumps([{"role": "user", "content": "y" * 30_000}]),
        answers=[json.dumps(big)[:8_000]] * 2,
    )  # fmt: skip
    assert len(report.model_dump_json()) < 64 * 1024
