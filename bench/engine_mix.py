"""In-process engine throughput on a realistic mix, as the run file grows past 1M rows.

The mix (60 % votes, 25 % comments, 10 % posts, 5 % subscriptions, follows and profile
updates) comes from 1,000 agents as JSON, so each action is parsed and validated, checked by
the rules, written to the ledger and committed in a group transaction, like an envelope that
has already passed its signature check. No broker is involved.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from moltsim.domain.actions import ACTION_ADAPTER
from moltsim.engine.rules import RateLimits, Rules
from moltsim.engine.service import Engine, Submission
from moltsim.engine.state import ForumState

AGENTS = 1_000
SUBMOLTS = 20
CHUNK = 2_000
SLICE = 10_000
"""Actions generated ahead of each timed stretch (generation is not timed)."""
SIM_STEP_S = 0.05
"""Sim seconds between two actions: 20 actions per sim-second, 1M actions in ~14 sim-hours."""
T0 = 1_800_000_000.0

# Limits loose enough for 1,000 agents acting 20 times a sim-second, still checked on every action.
BENCH_RULES = Rules(
    rate_limits=RateLimits(
        post_interval_s=60,
        comment_interval_s=2,
        comments_per_day=100_000,
        writes_per_minute=1_000,
        new_agent_age_s=0,
    )
)

WORDS = [
    "agents",
    "memory",
    "context",
    "tokens",
    "submolt",
    "karma",
    "reasoning",
    "tools",
    "latency",
    "planning",
    "alignment",
    "consensus",
    "humans",
    "emergent",
    "protocol",
    "skill",
    "persona",
    "heartbeat",
    "ledger",
    "inference",
    "gradient",
    "lobster",
    "molt",
    "shell",
    "claw",
    "reef",
    "tide",
    "current",
    "signal",
    "noise",
    "pattern",
    "dream",
]


def row_count(st: ForumState) -> int:
    """Rows in the run file, all tables together, as the engine's counters know them."""
    return (
        st.next_post_id
        + st.next_comment_id
        + st.next_action_id
        + st.next_notification_id
        + st.next_dm_id
        - 5
        + len(st.post_votes)
        + len(st.comment_votes)
        + len(st.follows)
        + sum(len(s.subscribers) for s in st.submolts.values())
    )


class Mix:
    """Generates the action mix as JSON, aimed at recent content like real agents would."""

    def __init__(self, engine: Engine, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.st = engine.forum.state
        self.handles = [a.handle for a in self.st.agents.values()]
        self.subs = list(self.st.submolts)
        self.next_post_id = self.st.next_post_id
        self.next_comment_id = self.st.next_comment_id

    def _text(self, words: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=words))

    def _recent(self, next_id: int, span: int = 2_000) -> int:
        return self.rng.randint(max(1, next_id - span), next_id - 1)

    def actions(self, count: int) -> Iterator[tuple[int, bytes]]:
        rng = self.rng
        # Targets are drawn from ids that exist when the slice is generated; new posts and
        # comments of the slice widen the range as if accepted (most are).
        self.next_post_id = self.st.next_post_id
        self.next_comment_id = self.st.next_comment_id
        body: dict[str, object]
        for _ in range(count):
            agent = rng.randint(1, AGENTS)
            roll = rng.random()
            has_posts = self.next_post_id > 1
            if roll < 0.10 or not has_posts:
                self.next_post_id += 1
                body = {
                    "type": "post",
                    "submolt": rng.choice(self.subs),
                    "title": self._text(8),
                    "body": self._text(60),
                }
            elif roll < 0.35:
                if self.next_comment_id > 1 and rng.random() < 0.3:
                    body = {"type": "comment", "parent_id": self._recent(self.next_comment_id),
                            "body": self._text(30)}  # fmt: skip
                else:
                    body = {"type": "comment", "post_id": self._recent(self.next_post_id),
                            "body": self._text(30)}  # fmt: skip
                self.next_comment_id += 1
            elif roll < 0.95:
                if self.next_comment_id > 1 and rng.random() < 0.5:
                    target, next_id = "comment", self.next_comment_id
                else:
                    target, next_id = "post", self.next_post_id
                body = {"type": "vote", "target": target, "id": self._recent(next_id),
                        "value": rng.choice((1, 1, 1, -1))}  # fmt: skip
            else:
                kind = rng.randrange(5)
                if kind == 0:
                    body = {"type": "subscribe", "submolt": rng.choice(self.subs)}
                elif kind == 1:
                    body = {"type": "unsubscribe", "submolt": rng.choice(self.subs)}
                elif kind == 2:
                    body = {"type": "follow", "agent": rng.choice(self.handles)}
                elif kind == 3:
                    body = {"type": "unfollow", "agent": rng.choice(self.handles)}
                else:
                    body = {"type": "update_profile", "bio": self._text(12)}
            yield agent, json.dumps(body).encode()


async def _setup(path: Path) -> Engine:
    engine = await Engine.open(path, BENCH_RULES)
    for i in range(SUBMOLTS):
        await engine.seed_submolt(f"sub-{i}", T0, f"Submolt {i}")
    for i in range(AGENTS):
        await engine.register_agent(f"agent_{i}", i.to_bytes(32, "big"), T0)
    return engine


class Driver:
    """Feeds the engine chunk after chunk, keeping two chunks in flight (pipelining)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.mix = Mix(engine)
        self.now = T0 + 60
        self.accepted = 0
        self.refused = 0

    def prepare(self, count: int) -> list[list[tuple[int, bytes]]]:
        """The next ``count`` actions as JSON, in chunks, generated before any timing starts."""
        chunks = []
        while count > 0:
            n = min(CHUNK, count)
            chunks.append(list(self.mix.actions(n)))
            count -= n
        return chunks

    async def run(self, chunks: list[list[tuple[int, bytes]]]) -> None:
        in_flight: list[asyncio.Task[None]] = []
        for chunk in chunks:
            in_flight.append(asyncio.create_task(self._submit(chunk)))
            await asyncio.sleep(0)  # the chunk is applied now; its commit overlaps the next
            if len(in_flight) >= 2:
                await in_flight.pop(0)
        for task in in_flight:
            await task

    async def _submit(self, raw: list[tuple[int, bytes]]) -> None:
        items = []
        validate = ACTION_ADAPTER.validate_json
        for agent, payload in raw:
            self.now += SIM_STEP_S
            items.append(Submission(agent, validate(payload), self.now, payload=payload.decode()))
        for outcome in await self.engine.submit_many(items):
            if outcome.ok:
                self.accepted += 1
            else:
                self.refused += 1


async def run(rows_target: int = 1_000_000, steady_actions: int = 200_000) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="moltsim-bench-") as tmp:
        engine = await _setup(Path(tmp) / "run.db")
        driver = Driver(engine)
        step = rows_target // 10
        print(f"engine mix: growing the run file to {rows_target:,} rows")
        mark = 0
        while row_count(engine.forum.state) < rows_target:
            start_rows = row_count(engine.forum.state)
            elapsed = 0.0
            before = driver.accepted + driver.refused
            while row_count(engine.forum.state) < start_rows + step:
                chunks = driver.prepare(SLICE)
                t0 = time.perf_counter()
                await driver.run(chunks)
                elapsed += time.perf_counter() - t0
            rate = (driver.accepted + driver.refused - before) / elapsed
            figures[f"engine_actions_per_s_from_{mark // 1000}k_rows"] = rate
            print(f"  rows {start_rows:>9,} -> {row_count(engine.forum.state):>9,}: {rate:,.0f}/s")
            mark += step
        rows = row_count(engine.forum.state)
        print(f"engine mix: steady state at {rows:,} rows, {steady_actions:,} actions")
        before_ok, before_refused = driver.accepted, driver.refused
        elapsed = cpu = 0.0
        for _ in range(0, steady_actions, SLICE):
            chunks = driver.prepare(SLICE)
            cpu0, t0 = time.process_time(), time.perf_counter()
            await driver.run(chunks)
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - cpu0
        total = driver.accepted + driver.refused - before_ok - before_refused
        figures["engine_inprocess_actions_per_s"] = total / elapsed
        figures["engine_inprocess_cpu_us_per_action"] = cpu / total * 1e6
        figures["engine_inprocess_cores_used"] = cpu / elapsed
        figures["engine_inprocess_refused_fraction"] = (driver.refused - before_refused) / total
        figures["engine_inprocess_rows_at_start"] = rows
        await engine.close()
        figures["engine_run_file_mib"] = (Path(tmp) / "run.db").stat().st_size / 2**20
    return figures


if __name__ == "__main__":
    print(asyncio.run(run()))
