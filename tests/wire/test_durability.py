"""Crashes and restarts with a real engine process: what was acknowledged is on disk, a retry
is applied once, and sequence numbers carry across restarts."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from moltsim.runfolder import RunFolder
from moltsim.store.reader import open_readonly
from moltsim.wire.client import AgentClient, Result

from .conftest import (
    SUBMOLT,
    Broker,
    EngineProcess,
    encode,
    envelope,
    pool_client,
    post_action,
    raw_client,
    scalar,
)

ACKS = 150
"""Acknowledged writes to collect before the engine is killed."""
POOLS = ("pool-1", "pool-2")


def get_broker(request: pytest.FixtureRequest, kind: str) -> Broker:
    found: Broker = request.getfixturevalue(f"{kind}_broker")
    return found


@asynccontextmanager
async def engine_on(folder: RunFolder, broker: Broker) -> AsyncIterator[EngineProcess]:
    """An engine for the test; stopped with SIGTERM (and exit 0) unless the test killed it."""
    engine = await EngineProcess(folder, broker).astart()
    try:
        yield engine
    finally:
        if engine.running:
            engine.stop_cleanly()


def posts_titled(db: Path, title: str) -> int:
    return int(scalar(db, "SELECT COUNT(*) FROM posts WHERE title = ?", title))


# --- (a) acknowledged means on disk ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["embedded", "mosquitto"])
async def test_every_acknowledged_write_survives_sigkill(
    run_folder: RunFolder, request: pytest.FixtureRequest, kind: str
) -> None:
    broker = get_broker(request, kind)
    acked_posts: dict[int, str] = {}
    acked_comments: dict[int, str] = {}
    killed = asyncio.Event()
    counter = itertools.count()

    async with engine_on(run_folder, broker) as engine:

        def acknowledged() -> None:
            if len(acked_posts) + len(acked_comments) >= ACKS and not killed.is_set():
                engine.kill()  # at once, in the same step that received the reply
                killed.set()

        async def work(agent: AgentClient) -> None:
            target: int | None = None
            while not killed.is_set():
                n = next(counter)
                if target is None or n % 2:
                    title = f"durable {kind} {agent.handle} #{n}"
                    result = await agent.post(SUBMOLT, title, "kept after kill -9")
                    if result.ok:
                        acked_posts[result.data["post_id"]] = title
                        target = result.data["post_id"]
                else:
                    text = f"durable comment {kind} #{n}"
                    result = await agent.comment(text, post_id=target)
                    if result.ok:
                        acked_comments[result.data["comment_id"]] = text
                acknowledged()

        pools = [pool_client(run_folder, broker, p, timeout=10, retries=0) for p in POOLS]
        async with pools[0], pools[1]:
            agents = [a for pool in pools for a in pool.agents.values()]
            workers = [asyncio.create_task(work(agent)) for agent in agents]
            try:
                await asyncio.wait_for(killed.wait(), 60)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        assert not engine.running

    assert len(acked_posts) + len(acked_comments) >= ACKS
    conn = open_readonly(run_folder.db)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        posts = dict(conn.execute(_ids_in("SELECT id, title FROM posts", acked_posts)))
        comments = dict(conn.execute(_ids_in("SELECT id, body FROM comments", acked_comments)))
    finally:
        conn.close()
    assert posts == acked_posts
    assert comments == acked_comments


def _ids_in(select: str, ids: dict[int, str]) -> str:
    return f"{select} WHERE id IN ({','.join(str(int(i)) for i in ids) or 'NULL'})"


# --- (b) a retried action is applied once ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before the publish", "while frozen", "right after"])
async def test_an_action_retried_across_an_engine_crash_is_applied_once(
    run_folder: RunFolder, embedded_broker: Broker, when: str
) -> None:
    title = f"exactly once, killed {when}"
    engine = await EngineProcess(run_folder, embedded_broker).astart()
    try:
        client = pool_client(run_folder, embedded_broker, "pool-1", timeout=1.0, retries=30)
        async with client:
            alice = client.agents["alice"]
            if when == "before the publish":
                engine.kill()
                posting = asyncio.create_task(alice.post(SUBMOLT, title))
                await asyncio.sleep(0.3)
            elif when == "while frozen":
                assert engine.process is not None
                os.kill(engine.process.pid, signal.SIGSTOP)
                posting = asyncio.create_task(alice.post(SUBMOLT, title))
                await asyncio.sleep(0.3)
                engine.kill()
            else:
                posting = asyncio.create_task(alice.post(SUBMOLT, title))
                await asyncio.sleep(0.005)
                engine.kill()
            assert not engine.running
            await engine.astart()
            result: Result = await asyncio.wait_for(posting, 40)
            assert result.ok, result
            assert result.seq == alice.seq
            post_id = result.data["post_id"]
            # The same seq once more: the original answer, nothing new.
            again = await asyncio.wait_for(
                client.request("alice", result.seq, encode(
                    envelope(alice.credentials, result.seq, post_action(title))
                )),
                15,
            )  # fmt: skip
            assert again.duplicate and again.data["post_id"] == post_id
    finally:
        if engine.running:
            engine.stop_cleanly()
    assert posts_titled(run_folder.db, title) == 1
    assert scalar(run_folder.db, "SELECT title FROM posts WHERE id = ?", post_id) == title


@pytest.mark.slow
async def test_a_write_committed_but_never_acknowledged_is_not_applied_twice(
    run_folder: RunFolder, embedded_broker: Broker
) -> None:
    """The envelope goes out on a connection that never hears the reply; the engine commits it
    and is killed; after the restart the client's retry (same seq) gets the original result."""
    title = "committed, then the engine died"
    engine = await EngineProcess(run_folder, embedded_broker).astart()
    try:
        client = pool_client(run_folder, embedded_broker, "pool-1", timeout=2.0, retries=5)
        async with client:
            alice = client.agents["alice"]
            seq = alice.seq + 1
            payload = encode(envelope(alice.credentials, seq, post_action(title)))
            async with raw_client(run_folder, embedded_broker, "pool-1") as deaf:
                await deaf.publish(client.topics.act("alice"), payload)
                for _ in range(500):
                    if posts_titled(run_folder.db, title):
                        break
                    await asyncio.sleep(0.01)
                engine.kill()
            assert posts_titled(run_folder.db, title) == 1
            await engine.astart()
            retried = await asyncio.wait_for(client.request("alice", seq, payload), 30)
    finally:
        if engine.running:
            engine.stop_cleanly()
    assert retried.ok and retried.duplicate, retried
    assert retried.data["post_id"] == scalar(
        run_folder.db, "SELECT id FROM posts WHERE title = ?", title
    )
    assert posts_titled(run_folder.db, title) == 1


# --- (c) seqs carry across restarts ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_fresh_client_continues_the_seq_after_an_engine_restart(
    run_folder: RunFolder, embedded_broker: Broker, stop: str
) -> None:
    title = f"before a {stop} restart"
    engine = await EngineProcess(run_folder, embedded_broker).astart()
    try:
        async with pool_client(run_folder, embedded_broker, "pool-1") as client:
            alice, bob = client.agents["alice"], client.agents["bob"]
            assert (await asyncio.wait_for(alice.feed(limit=3), 15)).ok
            posted = await asyncio.wait_for(alice.post(SUBMOLT, title), 15)
            assert posted.ok, posted
            assert (await asyncio.wait_for(bob.vote("post", posted.data["post_id"], 1), 15)).ok
            assert (await asyncio.wait_for(alice.notifications(), 15)).ok
            seqs = {"alice": alice.seq, "bob": bob.seq}
        if stop == "sigterm":
            engine.stop_cleanly()
        else:
            engine.kill()
        await engine.astart()

        fresh = pool_client(run_folder, embedded_broker, "pool-1")
        async with fresh:
            assert {h: a.seq for h, a in fresh.agents.items()} == seqs  # from the hellos
            alice = fresh.agents["alice"]
            after = await asyncio.wait_for(alice.post(SUBMOLT, f"after a {stop} restart"), 15)
            assert after.ok and not after.duplicate, after
            assert after.seq == seqs["alice"] + 1
            # The post from before the restart is still known as a duplicate.
            posted_seq = posted.seq
            replayed = await asyncio.wait_for(
                fresh.request("alice", posted_seq, encode(
                    envelope(alice.credentials, posted_seq, post_action(title))
                )),
                15,
            )  # fmt: skip
            assert replayed.duplicate and replayed.data == posted.data
    finally:
        if engine.running:
            engine.stop_cleanly()
    assert posts_titled(run_folder.db, title) == 1
    conn = open_readonly(run_folder.db)
    try:
        stale = conn.execute(
            "SELECT COUNT(*) FROM actions WHERE outcome = 'replay' AND payload LIKE ?",
            (f"%after a {stop} restart%",),
        ).fetchone()
    finally:
        conn.close()
    assert stale == (0,)
