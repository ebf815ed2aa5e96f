"""One agent's life: wake on a heartbeat, read, decide, act, remember.

The observation has a fixed budget (a few notifications, ten feed items, a bounded summary of
the agent's own history), so what a brain is given does not grow over a long run.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moltsim.agent.brains.base import Brain, Decision
from moltsim.agent.brains.offline import OfflineBrain
from moltsim.agent.memory import Memory
from moltsim.agent.observation import FEED_ITEMS, NOTIFICATIONS, FeedItem, NoteItem, Observation
from moltsim.agent.persona import Persona
from moltsim.wire.client import AgentClient, Result

log = logging.getLogger("moltsim.agent")

HEARTBEAT_S = 4 * 3_600.0
SUBMOLT_REFRESH = 6
"""Re-read the list of submolts every this many heartbeats."""


@dataclass
class Wake:
    """When an agent next wakes, shaped by the hour-of-day activity of its persona."""

    persona: Persona
    interval_s: float = HEARTBEAT_S

    def next_after(self, now: float, rng: random.Random) -> float:
        """The next wake. Steps of 0.5-1.5 times the interval (shortened by how peaked the
        profile is) are taken from ``now`` until one lands on an hour that accepts it, with
        probability activity / peak: a flat profile wakes every interval with jitter, a
        peaked one wakes in its busy hours, and both average one wake per interval a day."""
        profile = self.persona.activity
        peak = max(profile)
        step = self.interval_s * (sum(profile) / len(profile)) / peak
        t = now
        for _ in range(100_000):
            t += step * rng.uniform(0.5, 1.5)
            if rng.random() * peak < profile[datetime.fromtimestamp(t, UTC).hour]:
                return t
        return t


class AgentRuntime:
    def __init__(
        self,
        client: AgentClient,
        persona: Persona,
        brain: Brain,
        *,
        seed: int,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.client = client
        self.handle = client.handle
        self.persona = persona
        self.brain = brain
        self.memory = Memory()
        self.wake = Wake(persona, heartbeat_s)
        self.rng = random.Random(f"{seed}:{self.handle}:wake")
        self.submolts: list[str] = []
        self.usage: list[dict[str, Any]] = []
        self.pending: list[asyncio.Task[Result]] = []
        """Writes sent in stepped time whose results have not come back yet."""

    def first_wake(self, now: float) -> float:
        """Spread first heartbeats over one interval so agents do not all wake at once."""
        return now + self.rng.uniform(0, self.wake.interval_s)

    def next_wake(self, now: float) -> float:
        return self.wake.next_after(now, self.rng)

    async def heartbeat(self, now: float, *, hold_writes: bool = False) -> Decision:
        """Notifications, then feed, then a decision, then its actions; remember all of it.

        With ``hold_writes`` (stepped time) the writes are sent without waiting for their
        results, which come after the tick ends; they are left in :attr:`pending`."""
        memory = self.memory
        memory.heartbeats += 1
        if memory.heartbeats == 1 or memory.heartbeats % SUBMOLT_REFRESH == 0:
            await self._refresh_submolts()
        joins: list[dict[str, Any]] = []
        if memory.heartbeats == 1:
            joins = [
                {"type": "subscribe", "submolt": name}
                for name in self.persona.submolts
                if name in self.submolts and name not in memory.subscribed
            ]
        notes = await self.client.notifications(memory.last_notification_id, NOTIFICATIONS)
        notifications = [NoteItem.from_view(n) for n in notes.data.get("notifications", [])]
        if notifications:
            memory.last_notification_id = notifications[-1].id
        feed = await self._feed()
        observation = Observation(
            me=self.handle,
            now=now,
            feed=feed,
            notifications=notifications,
            submolts=self.submolts,
            memory=memory.summary(),
            extra={"following": sorted(memory.following), "subscribed": sorted(memory.subscribed)},
        )
        if isinstance(self.brain, OfflineBrain):
            decision = self.brain.decide_now(observation, dict(memory.agreement))
        else:
            decision = await self.brain.decide(observation)
        authors = {item.post_id: item.author for item in feed}
        writes = [*joins, *decision.actions]
        if decision.usage:
            # The decision's record goes into the run file like any action, right before the
            # actions it chose: the ledger then tells which writes the model made.
            self.usage.append(decision.usage)
            writes.insert(len(joins), decision.usage)
        if hold_writes:
            for action in writes:
                task = asyncio.create_task(self.client.act(action))
                task.add_done_callback(self._remembering(action, authors))
                self.pending.append(task)
        else:
            for action in writes:
                result = await self.client.act(action)
                self._remember(action, result, authors)
        for item in feed:
            memory.saw(item.post_id)
        return decision

    def _remembering(
        self, action: dict[str, Any], authors: dict[int, str]
    ) -> Callable[[asyncio.Task[Result]], None]:
        def done(task: asyncio.Task[Result]) -> None:
            if not task.cancelled() and task.exception() is None:
                self._remember(action, task.result(), authors)

        return done

    async def _feed(self) -> list[FeedItem]:
        # Ask for more than fit, so that posts already read give way to unseen ones.
        result = await self.client.feed(scope="personal", sort="hot", limit=3 * FEED_ITEMS)
        posts = result.data.get("posts", []) if result.ok else []
        if len(posts) < FEED_ITEMS // 2:
            extra = await self.client.feed(sort="new", limit=3 * FEED_ITEMS)
            seen = {p["id"] for p in posts}
            posts += [p for p in extra.data.get("posts", []) if p["id"] not in seen]
        fresh = [p for p in posts if p["id"] not in self.memory.seen]
        return [FeedItem.from_view(p) for p in (fresh or posts)[:FEED_ITEMS]]

    async def _refresh_submolts(self) -> None:
        result = await self.client.act({"type": "submolts", "sort": "popular", "limit": 30})
        if result.ok:
            self.submolts = sorted(s["name"] for s in result.data.get("submolts", []))

    def _remember(self, action: dict[str, Any], result: Result, authors: dict[int, str]) -> None:
        memory = self.memory
        kind = action.get("type")
        note = f"{kind}: ok" if result.ok else str(kind)
        if kind == "vote":
            author = authors.get(int(action.get("id", 0)))
            if result.ok and author:
                memory.agree(author, int(action["value"]))
                memory.saw(int(action["id"]), int(action["value"]))
            note = f"voted {action.get('value'):+d} on {action.get('target')} #{action.get('id')}"
        elif kind == "post":
            # Ids, never the title: an LLM reads its memory outside the untrusted-content fence,
            # and a title may repeat what other agents wrote (an injection, laundered).
            note = f"posted in m/{action.get('submolt')}"
            if result.ok:
                memory.my_posts.append(int(result.data["post_id"]))
                note = f"posted post #{result.data['post_id']} in m/{action.get('submolt')}"
        elif kind == "comment":
            post = result.data.get("post_id", action.get("post_id"))
            parent = action.get("parent_id")
            note = f"commented on post #{post}" if post else f"replied to comment #{parent}"
        elif kind == "subscribe" and (result.ok or result.code == "duplicate"):
            memory.subscribed.add(str(action["submolt"]))
        elif kind == "follow" and result.ok:
            memory.following.add(str(action["agent"]))
        elif kind == "create_submolt" and result.ok:
            self.submolts = sorted({*self.submolts, str(action["name"])})
        if not result.ok:
            note += f" (refused: {result.code})"
        memory.record(action, result.ok, note)
