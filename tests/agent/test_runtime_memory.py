"""The heartbeat runtime and memory: what a brain is shown stays bounded over a long run,
memory stays small, and wake times follow the persona's hours."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from moltsim.agent.brains.base import Decision
from moltsim.agent.brains.offline import OfflineBrain
from moltsim.agent.memory import KNOWN_AGENTS, RECENT_ACTIONS, SEEN_POSTS, Memory
from moltsim.agent.observation import EXCERPT, FEED_ITEMS, NOTIFICATIONS, Observation
from moltsim.agent.persona import Persona
from moltsim.agent.runtime import HEARTBEAT_S, AgentRuntime, Wake
from moltsim.wire.client import Result
from tests.agent.conftest import T0, ScriptedClient, note_view, persona, post_view

LONG = "word " * 2_000


class RecordingBrain(OfflineBrain):
    """The offline brain, keeping every observation it was given."""

    def __init__(self, who: Persona, seed: int, handle: str) -> None:
        super().__init__(who, seed, handle)
        self.seen: list[Observation] = []

    def decide_now(self, observation: Observation, agreement: dict[str, int]) -> Decision:
        self.seen.append(observation)
        return super().decide_now(observation, agreement)


def busy_client(handle: str, posts: int = 60, notes: int = 400) -> ScriptedClient:
    feed = [
        post_view(i, f"agent_{i % 37}", "T" * 300, LONG, score=i, comments=i) for i in range(posts)
    ]
    kinds = ["reply", "mention", "follow", "dm"]
    notifications = [
        note_view(i, kinds[i % 4], f"agent_{i % 37}", LONG[:280], post_id=1, comment_id=i)
        for i in range(1, notes + 1)
    ]
    return ScriptedClient(handle, feed=feed, notes=notifications, submolts=["general", "help"])


async def test_observation_and_memory_stay_bounded_over_a_long_run() -> None:
    who = persona("clawsome_memes")
    client = busy_client(who.handle)
    brain = RecordingBrain(who, 1, who.handle)
    runtime = AgentRuntime(client, who, brain, seed=1)
    for beat in range(120):
        await runtime.heartbeat(T0 + beat * HEARTBEAT_S)
    sizes = []
    for obs in brain.seen:
        assert len(obs.feed) <= FEED_ITEMS
        assert len(obs.notifications) <= NOTIFICATIONS
        assert all(len(item.excerpt) <= EXCERPT and len(item.title) <= 120 for item in obs.feed)
        assert all(len(note.excerpt) <= EXCERPT for note in obs.notifications)
        assert len(obs.memory) <= 2_000
        sizes.append(len(obs.memory))
    assert len(brain.seen[0].feed) == FEED_ITEMS
    assert len(brain.seen[0].notifications) == NOTIFICATIONS
    # Notifications are read in order, each once, until there are none left.
    ids = [n.id for obs in brain.seen for n in obs.notifications]
    assert ids == list(range(1, 401))
    assert runtime.memory.last_notification_id == 400
    memory = runtime.memory
    assert len(memory.seen) <= SEEN_POSTS and len(memory.recent) <= RECENT_ACTIONS
    assert memory.posts_written + memory.comments_written + memory.votes_cast > 100


async def test_a_thin_personal_feed_is_topped_up_from_new() -> None:
    who = persona("ten_x_tess")
    personal = [post_view(i, "apogee_ada", f"Personal {i}", "") for i in range(1, 4)]
    new = [post_view(i, "fresh_wick", f"New {i}", "") for i in range(2, 30)]
    client = ScriptedClient(who.handle, feed=personal, new=new)
    brain = RecordingBrain(who, 1, who.handle)
    await AgentRuntime(client, who, brain, seed=1).heartbeat(T0)
    (obs,) = brain.seen
    assert [i.post_id for i in obs.feed] == list(range(1, 11))
    assert [i.title for i in obs.feed[:3]] == ["Personal 1", "Personal 2", "Personal 3"]


async def test_posts_already_seen_give_way_to_unseen_ones() -> None:
    who = persona("quiet_quokka")
    client = ScriptedClient(who.handle, feed=[post_view(i, "a_b", f"P{i}") for i in range(30)])
    brain = RecordingBrain(who, 1, who.handle)
    runtime = AgentRuntime(client, who, brain, seed=1)
    await runtime.heartbeat(T0)
    await runtime.heartbeat(T0 + HEARTBEAT_S)
    first, second = ({i.post_id for i in obs.feed} for obs in brain.seen)
    assert len(first) == len(second) == FEED_ITEMS
    assert not first & second


async def test_a_feed_of_seen_posts_is_still_shown() -> None:
    who = persona("quiet_quokka")
    client = ScriptedClient(who.handle, feed=[post_view(i, "a_b", f"P{i}") for i in range(8)])
    brain = RecordingBrain(who, 1, who.handle)
    runtime = AgentRuntime(client, who, brain, seed=1)
    await runtime.heartbeat(T0)
    await runtime.heartbeat(T0 + HEARTBEAT_S)
    first, second = ([i.post_id for i in obs.feed] for obs in brain.seen)
    assert first == second == list(range(8))


def test_memory_summary_stays_short_after_1000_actions() -> None:
    who = persona("ten_x_tess")
    client = ScriptedClient(who.handle)
    runtime = AgentRuntime(client, who, OfflineBrain(who, 1), seed=1)
    rng = random.Random(4)
    authors = {i: f"agent_{i}" for i in range(1, 1_001)}
    codes = ["rate_limited", "not_found", "duplicate", "gone", "proactive_contact_not_allowed"]
    for i in range(1, 1_001):
        kind = rng.choice(["post", "comment", "vote", "vote", "follow", "create_submolt"])
        action: dict[str, Any] = {"type": kind}
        if kind == "post":
            action |= {"submolt": "a" * 30, "title": "T" * 300, "body": LONG}
        elif kind == "comment":
            action |= {"post_id": i, "body": LONG}
        elif kind == "vote":
            action |= {"target": "post", "id": i, "value": rng.choice([1, 1, -1])}
        elif kind == "follow":
            action |= {"agent": authors[i]}
        else:
            action |= {"name": f"sub-{i}", "title": "x"}
        ok = rng.random() < 0.7
        data = {"post_id": i, "comment_id": i} if ok else {}
        result = Result(ok, i, data, code=None if ok else rng.choice(codes))
        runtime._remember(action, result, authors)
        runtime.memory.agree(f"friend_{i % 300}", 1)
        runtime.memory.heartbeats += 1
    memory = runtime.memory
    summary = memory.summary()
    assert len(summary) <= 2_000, len(summary)
    assert summary.count("\n- ") == RECENT_ACTIONS
    assert len(memory.seen) <= SEEN_POSTS
    assert len(memory.agreement) <= KNOWN_AGENTS
    assert len(memory.my_posts) <= 20
    assert "Heartbeats so far: 1000" in summary


def test_memory_counts_only_accepted_actions() -> None:
    memory = Memory()
    memory.record({"type": "post"}, True, "posted")
    memory.record({"type": "post"}, False, "refused")
    memory.record({"type": "comment"}, True, "commented")
    memory.record({"type": "vote"}, True, "voted")
    memory.record({"type": "vote"}, False, "refused")
    assert (memory.posts_written, memory.comments_written, memory.votes_cast) == (1, 1, 1)
    assert memory.refusals == 2


# --- waking -----------------------------------------------------------------------------------


def only_at(*hours: int) -> Persona:
    activity = [1.0 if h in hours else 0.0 for h in range(24)]
    return persona("ten_x_tess").model_copy(update={"activity": activity})


def wake_hours(who: Persona, seed: int, n: int = 300) -> list[int]:
    wake, rng, now, hours = Wake(who), random.Random(seed), T0, []
    for _ in range(n):
        now = wake.next_after(now, rng)
        hours.append(datetime.fromtimestamp(now, UTC).hour)
    return hours


def test_wake_times_are_deterministic_for_a_seeded_rng() -> None:
    who = persona("bare_minimum")
    assert wake_hours(who, 5) == wake_hours(who, 5)
    assert wake_hours(who, 5) != wake_hours(who, 6)
    one = AgentRuntime(ScriptedClient("bare_minimum"), who, OfflineBrain(who, 1), seed=3)
    two = AgentRuntime(ScriptedClient("bare_minimum"), who, OfflineBrain(who, 1), seed=3)
    assert [one.first_wake(T0), one.next_wake(T0)] == [two.first_wake(T0), two.next_wake(T0)]


def test_an_always_active_persona_wakes_once_per_interval_with_jitter() -> None:
    who = persona("apogee_ada").model_copy(update={"activity": [1.0] * 24})
    wake, rng = Wake(who, 3_600.0), random.Random(1)
    gaps = []
    now = T0
    for _ in range(500):
        after = wake.next_after(now, rng)
        gaps.append(after - now)
        now = after
    assert all(1_800.0 <= g <= 5_400.0 for g in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(3_600.0, rel=0.05)


def test_busy_hours_get_more_wakes_than_quiet_ones() -> None:
    who = persona("ten_x_tess").model_copy(update={"activity": [1.0] * 12 + [0.2] * 12})
    hours = wake_hours(who, 2, 600)
    busy = sum(h < 12 for h in hours)
    assert busy > 1.15 * (len(hours) - busy)


@pytest.mark.parametrize(
    ("who", "hours"),
    [(only_at(3), {3}), (persona("bare_minimum"), {7, 21})],
    ids=["only-hour-3", "bare_minimum"],
)
def test_wakes_only_in_active_hours(who: Persona, hours: set[int]) -> None:
    seen = Counter(wake_hours(who, 1, 200))
    assert set(seen) <= hours, seen


def test_wake_rate_follows_the_profile() -> None:
    # Hours 0-11 are five times as active as hours 12-23: about five times as many wakes.
    who = persona("ten_x_tess").model_copy(update={"activity": [1.0] * 12 + [0.2] * 12})
    hours = wake_hours(who, 2, 2_000)
    busy = sum(h < 12 for h in hours)
    assert busy > 3 * (len(hours) - busy)
