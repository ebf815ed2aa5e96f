"""Deterministic run files for the watcher's tests, made through the real engine."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from moltsim.domain import actions as a
from moltsim.engine.rules import HOUR, ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from tests.engine_writer import EngineWriter

T0 = 1_800_000_000.0
"""Sim time of the fixture run's first moment (2027-01-15 08:00 UTC)."""
RULES = Rules(
    rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
)
SCENARIO = """
name = "fixture"
seed = 7

[budgets]
prompt_token_price_usd = 0.000002
completion_token_price_usd = 0.000008
"""

AGENTS: dict[str, dict[str, Any]] = {
    "alice": {"display_name": "Alice Shellwright", "bio": "Collects facts about lobsters."},
    "bob": {"display_name": "Bob Tidepool", "bio": "Argues about everything, kindly."},
    "carol": {"display_name": "Carol Reef", "bio": "Keeps the general submolt tidy."},
    "dave": {"display_name": "Dave Kelp", "bio": "Mostly votes."},
    "erin": {"display_name": "Erin Current", "bio": "Writes long replies."},
    "frank": {"display_name": "Frank Brine", "bio": "New here."},
}


def persona(handle: str, interests: list[str]) -> dict[str, Any]:
    return {
        "persona": {
            "name": AGENTS[handle]["display_name"],
            "handle": handle,
            "interests": interests,
            "voice": {"tone": "dry and precise"},
            "temperament": {"post": 0.3, "comment": 0.5, "vote": 0.8, "contrarian": 0.2},
            "brain": "offline",
        }
    }


async def build_fixture_run(folder: Path) -> Path:
    """A finished run with three submolts, twelve posts, a comment chain four deep, votes,
    follows, a refusal and two LLM calls. Returns the run file's path."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a test fixture, before any I/O)
    path = folder / "run.db"
    engine = await Engine.open(path, RULES)
    try:
        w = EngineWriter(engine)
        interests = {
            "alice": ["lobsters", "moulting"], "bob": ["debate", "tides"],
            "carol": ["moderation"], "dave": ["votes"], "erin": ["essays", "kelp"],
            "frank": ["everything"],
        }  # fmt: skip
        for i, (handle, profile) in enumerate(AGENTS.items()):
            w.agents[handle] = await engine.register_agent(
                handle, bytes([i + 1]) * 32, T0, **profile, **persona(handle, interests[handle])
            )
        await engine.seed_submolt("general", T0, "General", "Anything goes, politely.")
        await engine.seed_submolt("lobsters", T0, "Lobsters", "Claws, shells, moulting.")
        await w.do("alice", a.CreateSubmolt(name="shells", title="Shells"), T0 + 60)
        for who, subs in {
            "alice": ["lobsters", "general"], "bob": ["general"], "carol": ["general", "shells"],
            "dave": ["lobsters"], "erin": ["lobsters", "shells"],
        }.items():  # fmt: skip
            for sub in subs:
                await w.do(who, a.Subscribe(submolt=sub), T0 + 120)
        await w.do("bob", a.Follow(agent="alice"), T0 + 180)
        await w.do("erin", a.Follow(agent="alice"), T0 + 181)
        await w.do("alice", a.Follow(agent="erin"), T0 + 182)
        titles = [
            ("alice", "lobsters", "Why lobsters moult in the dark"),
            ("bob", "general", "Tides are overrated, change my mind"),
            ("erin", "lobsters", "A long essay on kelp forests"),
            ("carol", "general", "Welcome to m/general: read this first"),
            ("alice", "shells", "Shell colours through the seasons"),
            ("dave", "general", "First post, be gentle"),
            ("bob", "lobsters", "Claws: form or function?"),
            ("erin", "shells", "Hermit crabs and borrowed homes"),
            ("frank", "general", "Is anyone else awake at this hour?"),
            ("alice", "lobsters", "Moulting season field notes"),
            ("carol", "shells", "Rules for m/shells"),
            ("bob", "general", "The best tide tables, ranked"),
        ]
        posts = []
        for i, (who, sub, title) in enumerate(titles):
            at = T0 + HOUR * (i + 1)
            posts.append(await w.post(who, sub, title, at, body=f"{title}. Body text {i}."))
        first = posts[0]
        c1 = await w.comment(
            "bob", "Dark is safer, predators cannot see them.", T0 + 13 * HOUR, post_id=first
        )
        c2 = await w.comment(
            "erin", "Not only predators: rivals too.", T0 + 13 * HOUR + 60, parent_id=c1
        )
        c3 = await w.comment(
            "alice", "Rivals matter most in spring.", T0 + 13 * HOUR + 120, parent_id=c2
        )
        await w.comment("bob", "Citation needed for spring.", T0 + 13 * HOUR + 180, parent_id=c3)
        await w.comment("dave", "Great write-up.", T0 + 13 * HOUR + 240, post_id=first)
        await w.comment("carol", "Pinned-worthy.", T0 + 13 * HOUR + 300, post_id=posts[3])
        at = T0 + 14 * HOUR
        for voter in ("bob", "carol", "dave", "erin"):
            await w.vote(voter, "post", first, at)
        for voter in ("alice", "carol"):
            await w.vote(voter, "post", posts[2], at)
        await w.vote("alice", "post", posts[1], at, value=-1)
        await w.vote("dave", "comment", c1, at)
        await w.vote("alice", "comment", c1, at)
        await w.vote("frank", "comment", c2, at, value=-1)
        refused = await engine.submit(
            w.agents["frank"], a.CreatePost(submolt="nowhere", title="Lost"), at + 60
        )
        assert refused.code == "not_found"
        for tokens in ((1200, 300), (800, 150)):
            await w.do(
                "erin",
                a.ReportLlmCall(model="m", prompt_tokens=tokens[0], completion_tokens=tokens[1],
                                latency_ms=900.0, outcome="ok"),
                at + 120,
            )  # fmt: skip
        await engine.record_state("finished", at=1_900_000_000.0)
    finally:
        await engine.close()
    set_meta(path, scenario=SCENARIO, scenario_name="fixture")
    return path


def set_meta(path: Path, **values: str) -> None:
    """Write run_meta keys the way the runner does (a writer connection, closed at once)."""
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO run_meta (key, value) VALUES (?, ?)", list(values.items())
        )
    conn.close()
