"""The engine as a service, on a real run file: ledger, commit-before-answer, restart, failures."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from moltsim.domain import actions as a
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome
from moltsim.engine.rules import DAY, RateLimits, Rules
from moltsim.engine.service import Engine, EngineFailed, Submission
from moltsim.engine.state import ForumState
from moltsim.store.batch import Statement
from moltsim.store.reader import open_readonly

T0 = 1_800_000_000.0
T = T0 + 3 * DAY
"""A time when the agents registered at ``T0`` are no longer new."""
NO_LIMITS = Rules(rate_limits=RateLimits(enabled=False))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run.db"


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[Engine]:
    """An engine with the default rules (rate limits on)."""
    eng = await Engine.open(db_path)
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
async def free_engine(db_path: Path) -> AsyncIterator[Engine]:
    """An engine without rate limits."""
    eng = await Engine.open(db_path, NO_LIMITS)
    try:
        yield eng
    finally:
        await eng.close()


def key(i: int) -> bytes:
    return bytes([i]) * 32


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_readonly(path)) as conn:
        yield conn


def ledger(path: Path) -> list[tuple[Any, ...]]:
    with reading(path) as conn:
        return conn.execute(
            "SELECT id, sim_time, agent_id, seq, type, payload, sig, outcome, message, result"
            " FROM actions ORDER BY id"
        ).fetchall()


async def ok(engine: Engine, agent_id: int, action: a.Action, now: float) -> dict[str, Any]:
    outcome = await engine.submit(agent_id, action, now)
    assert outcome.ok, (action, outcome.code, outcome.message)
    return outcome.data


async def refused(engine: Engine, agent_id: int, action: a.Action, now: float) -> Outcome:
    outcome = await engine.submit(agent_id, action, now)
    assert not outcome.ok, (action, outcome.data)
    return outcome


async def register(engine: Engine, *handles: str) -> list[int]:
    return [await engine.register_agent(h, key(i + 1), T0) for i, h in enumerate(handles)]


# --- the ledger ---------------------------------------------------------------------------------


async def test_every_envelope_lands_in_the_ledger_in_order(engine: Engine, db_path: Path) -> None:
    alice, bob = await register(engine, "alice", "bob")
    await engine.seed_submolt("general", T0)
    post = a.CreatePost(submolt="general", title="Hello", body="first post")
    outcomes = await engine.submit_many(
        [
            Submission(alice, post, T, seq=1, sig="sig-1"),
            Submission(bob, a.CreatePost(submolt="nowhere", title="Lost"), T + 1, seq=7),
            Submission(
                agent_id=None,
                action=None,
                now=T + 2,
                refusal=Refusal(ErrorCode.MALFORMED, "not JSON"),
                payload="garbage",
            ),
            Submission(
                bob,
                None,
                T + 3,
                seq=8,
                sig="sig-x",
                payload='{"type": "post"}',
                refusal=Refusal(ErrorCode.BAD_SIGNATURE, "signature does not verify"),
                kind="bad_envelope",
            ),
            Submission(bob, a.Vote(target="post", id=1, value=1), T + 4, payload='{"raw":1}'),
        ]
    )
    assert [o.label for o in outcomes] == ["ok", "not_found", "malformed", "bad_signature", "ok"]
    outcome = await engine.submit(alice, a.Vote(target="post", id=1, value=1), T + 5, seq=2)
    assert outcome.code is ErrorCode.FORBIDDEN

    rows = ledger(db_path)
    assert [r[4] for r in rows] == [
        "register", "register", "seed_submolt",
        "post", "post", "malformed", "bad_envelope", "vote", "vote",
    ]  # fmt: skip
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert [r[7] for r in rows] == [
        "ok", "ok", "ok", "ok", "not_found", "malformed", "bad_signature", "ok", "forbidden",
    ]  # fmt: skip
    accepted, lost, garbage, bad_sig, vote, own_vote = rows[3:]
    assert accepted[1:4] == (T, alice, 1)
    assert accepted[5] == post.model_dump_json(exclude_defaults=True)
    assert accepted[6] == "sig-1"
    assert accepted[9] == '{"post_id":1}'
    assert lost[2:4] == (bob, 7)
    assert "nowhere" in lost[8]
    assert lost[9] is None
    assert garbage[1:4] == (T + 2, None, None)
    assert garbage[5] == "garbage"
    assert garbage[6] is None
    assert garbage[8] == "not JSON"
    assert bad_sig[2:4] == (bob, 8)
    assert bad_sig[5:7] == ('{"type": "post"}', "sig-x")
    assert bad_sig[8] == "signature does not verify"
    assert vote[5] == '{"raw":1}'
    assert vote[9] == '{"score":1}'
    assert own_vote[3] == 2
    assert own_vote[7] == "forbidden"
    # A refused action changed nothing but the ledger.
    with reading(db_path) as conn:
        assert conn.execute("SELECT id, title FROM posts").fetchall() == [(1, "Hello")]


async def test_queries_are_recorded_in_the_ledger(free_engine: Engine, db_path: Path) -> None:
    (alice,) = await register(free_engine, "alice")
    outcome = await free_engine.submit(alice, a.ListSubmolts(sort="name"), T, seq=3)
    assert outcome.ok
    assert ledger(db_path)[-1][2:8] == (alice, 3, "submolts", '{"sort":"name"}', None, "ok")


async def test_outcome_is_returned_only_after_commit(engine: Engine, db_path: Path) -> None:
    (alice,) = await register(engine, "alice")
    await engine.seed_submolt("general", T0)
    before = engine.commits

    post = a.CreatePost(submolt="general", title="Committed?")
    outcome = await engine.submit(alice, post, T)
    assert outcome.ok
    assert engine.commits > before
    with reading(db_path) as conn:  # a fresh connection, opened after the reply
        assert conn.execute("SELECT title FROM posts WHERE id = ?", (1,)).fetchone() == (
            "Committed?",
        )
        assert conn.execute("SELECT type, outcome FROM actions ORDER BY id DESC").fetchone() == (
            "post",
            "ok",
        )


async def test_submit_waits_for_a_slow_commit(
    engine: Engine, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (alice,) = await register(engine, "alice")
    await engine.seed_submolt("general", T0)
    gate = asyncio.Event()
    real_write = engine.runfile.write

    async def slow_write(statements: list[Statement]) -> None:
        await gate.wait()
        await real_write(statements)

    monkeypatch.setattr(engine.runfile, "write", slow_write)
    task = asyncio.create_task(engine.submit(alice, a.CreatePost(submolt="general", title="x"), T))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), "the reply came before the commit"
    with reading(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM posts").fetchone() == (0,)
    gate.set()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.ok
    with reading(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM posts").fetchone() == (1,)


# --- restart ------------------------------------------------------------------------------------


def snapshot(st: ForumState) -> dict[str, Any]:
    """Everything the rules decide from, except rate-limit windows (compared by behaviour)."""
    return {
        "posts": copy.deepcopy(st.posts),
        "comments": copy.deepcopy(st.comments),
        "post_votes": dict(st.post_votes),
        "comment_votes": dict(st.comment_votes),
        "follows": dict(st.follows),
        "last_dm_sender": dict(st.last_dm_sender),
        "contacts": {k: list(v) for k, v in st.contacts.items()},
        "handles": dict(st.handles),
        "agents": {
            ag.id: (
                ag.handle,
                ag.display_name,
                ag.bio,
                ag.created_at,
                ag.karma,
                ag.post_count,
                ag.comment_count,
                ag.follower_count,
                ag.following_count,
                ag.objects_to_training,
            )
            for ag in st.agents.values()
        },
        "submolts": {
            name: (
                s.id,
                s.owner_id,
                s.created_at,
                s.subscriber_count,
                s.post_count,
                sorted(s.moderators),
                sorted(s.subscribers),
                # Pin order in memory is pin order; on reload it is id order. Nothing reads
                # the order (the cap uses its length, queries sort by id), so compare as a set.
                sorted(s.pinned),
            )
            for name, s in st.submolts.items()
        },
        "submolts_by_id": {i: s.name for i, s in st.submolts_by_id.items()},
        "next": (
            st.next_agent_id,
            st.next_submolt_id,
            st.next_post_id,
            st.next_comment_id,
            st.next_dm_id,
            st.next_notification_id,
            st.next_action_id,
        ),
    }


async def build_forum(engine: Engine) -> dict[str, int]:
    """A small forum using every kind of write; returns the ids it made."""
    alice, bob, carol, dave = await register(engine, "alice", "bob", "carol", "dave")
    await engine.seed_submolt("general", T0, "General", "Anything goes")
    t = T
    ids: dict[str, int] = {}

    async def do(agent_id: int, action: a.Action) -> dict[str, Any]:
        nonlocal t
        t += 1_900  # past every rate-limit interval (the longest is 30 min between posts)
        return await ok(engine, agent_id, action, t)

    await do(alice, a.CreateSubmolt(name="lobsters", title="Lobsters", description="claws"))
    await do(bob, a.Subscribe(submolt="lobsters"))
    await do(carol, a.Subscribe(submolt="general"))
    await do(dave, a.Subscribe(submolt="general"))
    await do(dave, a.Unsubscribe(submolt="general"))
    await do(alice, a.AddModerator(submolt="lobsters", agent="bob"))
    await do(alice, a.AddModerator(submolt="lobsters", agent="carol"))
    await do(alice, a.RemoveModerator(submolt="lobsters", agent="carol"))

    async def post(agent_id: int, sub: str, title: str, **kw: Any) -> int:
        data = await do(agent_id, a.CreatePost(submolt=sub, title=title, **kw))
        return int(data["post_id"])

    ids["p1"] = await post(alice, "general", "Hello general", body="hi @bob")
    ids["p2"] = await post(bob, "lobsters", "Claws", url="https://example.com/claws")
    ids["p3"] = await post(carol, "lobsters", "Shells")
    ids["p4"] = await post(alice, "lobsters", "Delete me")
    ids["p5"] = await post(dave, "lobsters", "Spam")
    ids["p6"] = await post(bob, "lobsters", "Rules of m/lobsters")
    ids["p7"] = await post(alice, "lobsters", "Briefly pinned")

    async def comment(agent_id: int, body: str, **kw: Any) -> int:
        data = await do(agent_id, a.CreateComment(body=body, **kw))
        return int(data["comment_id"])

    ids["c1"] = await comment(bob, "nice one", post_id=ids["p1"])
    ids["c2"] = await comment(carol, "agreed", parent_id=ids["c1"])
    ids["c3"] = await comment(alice, "thanks @bob and @carol", parent_id=ids["c2"])
    ids["c4"] = await comment(dave, "oops", post_id=ids["p1"])
    ids["c5"] = await comment(dave, "rude", post_id=ids["p3"])
    ids["c6"] = await comment(bob, "on a post that will go", post_id=ids["p4"])
    for n in range(3):  # bob reaches out to alice enough for her to write first
        await comment(bob, f"@alice look {n}", post_id=ids["p2"])

    p1, c1, c2 = ids["p1"], ids["c1"], ids["c2"]
    await do(bob, a.Vote(target="post", id=p1, value=1))
    await do(carol, a.Vote(target="post", id=p1, value=1))
    await do(dave, a.Vote(target="post", id=p1, value=-1))
    await do(carol, a.Vote(target="post", id=p1, value=-1))  # changed
    await do(dave, a.Vote(target="post", id=p1, value=0))  # cleared
    await do(alice, a.Vote(target="post", id=ids["p2"], value=1))
    await do(alice, a.Vote(target="comment", id=c1, value=1))
    await do(carol, a.Vote(target="comment", id=c1, value=-1))
    await do(carol, a.Vote(target="comment", id=c1, value=1))  # changed
    await do(dave, a.Vote(target="comment", id=c1, value=-1))
    await do(dave, a.Vote(target="comment", id=c1, value=0))  # cleared
    await do(alice, a.Vote(target="comment", id=c2, value=-1))
    await do(bob, a.Vote(target="post", id=ids["p4"], value=1))  # karma stays after the delete

    await do(bob, a.Follow(agent="alice"))
    await do(carol, a.Follow(agent="alice"))
    await do(dave, a.Follow(agent="bob"))
    await do(dave, a.Unfollow(agent="bob"))
    await do(dave, a.Follow(agent="alice"))

    await do(bob, a.PinPost(submolt="lobsters", post_id=ids["p6"]))
    await do(alice, a.PinPost(submolt="lobsters", post_id=ids["p3"]))
    await do(alice, a.PinPost(submolt="lobsters", post_id=ids["p7"]))
    await do(alice, a.UnpinPost(submolt="lobsters", post_id=ids["p7"]))
    await do(alice, a.PinPost(submolt="lobsters", post_id=ids["p4"]))
    await do(alice, a.DeletePost(post_id=ids["p4"]))  # also unpins it
    await do(bob, a.RemovePost(submolt="lobsters", post_id=ids["p5"]))
    await do(dave, a.DeleteComment(comment_id=ids["c4"]))
    await do(alice, a.RemoveComment(submolt="lobsters", comment_id=ids["c5"]))

    await do(bob, a.UpdateProfile(display_name="Bob the Lobster", bio="pinch"))
    dm1 = await do(alice, a.SendDm(to="bob", body="hi bob"))
    assert dm1["proactive"] is True
    dm2 = await do(bob, a.SendDm(to="alice", body="hi alice"))
    assert dm2["proactive"] is False
    await do(alice, a.SendDm(to="bob", body="how are you"))
    await do(carol, a.Follow(agent="bob"))
    no_dm = await refused(engine, carol, a.SendDm(to="dave", body="hey"), t + 1)
    assert no_dm.code is ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED
    await engine.record_objection(dave, t + 2)
    return ids


async def test_state_survives_close_and_reopen_exactly(db_path: Path) -> None:
    engine = await Engine.open(db_path)
    try:
        ids = await build_forum(engine)
        before = snapshot(engine.forum.state)
        last = engine.last_sim_time
    finally:
        await engine.close()

    # Sanity: the forum really has what the comparison is about.
    sub = before["submolts"]["lobsters"]
    assert sub[5] == [2] and sub[7] == sorted([ids["p6"], ids["p3"]])
    assert len(before["post_votes"]) == 4 and len(before["comment_votes"]) == 3
    assert len(before["follows"]) == 4 and before["last_dm_sender"] == {(1, 2): 1}
    assert before["contacts"]

    engine = await Engine.open(db_path)
    try:
        assert snapshot(engine.forum.state) == before
        assert engine.last_sim_time == last
    finally:
        await engine.close()
    engine = await Engine.open(db_path)  # a second reopen changes nothing either
    try:
        assert snapshot(engine.forum.state) == before
        # New ids continue where the old run stopped.
        data = await ok(engine, 1, a.CreatePost(submolt="general", title="after"), last + DAY)
        assert data["post_id"] == before["next"][2]
        assert ledger(db_path)[-1][0] == before["next"][6]
    finally:
        await engine.close()


async def test_rate_limit_windows_survive_a_reopen(db_path: Path) -> None:
    engine = await Engine.open(db_path)
    try:
        alice, bob = await register(engine, "alice", "bob")
        await engine.seed_submolt("general", T0)
        post_id = (await ok(engine, alice, a.CreatePost(submolt="general", title="p"), T))[
            "post_id"
        ]
        await ok(engine, bob, a.CreateComment(post_id=post_id, body="first"), T + 10)
    finally:
        await engine.close()

    engine = await Engine.open(db_path)
    try:
        too_soon = await refused(engine, bob, a.CreateComment(post_id=post_id, body="2nd"), T + 15)
        assert too_soon.code is ErrorCode.RATE_LIMITED
        assert too_soon.retry_after == pytest.approx(15.0)
        again = await refused(engine, alice, a.CreatePost(submolt="general", title="q"), T + 60)
        assert again.code is ErrorCode.RATE_LIMITED
        assert again.retry_after == pytest.approx(30 * 60 - 60)
        # The refused attempt did not count; after the interval bob may comment again.
        await ok(engine, bob, a.CreateComment(post_id=post_id, body="2nd"), T + 31)
    finally:
        await engine.close()


async def test_daily_comment_limit_survives_a_reopen(db_path: Path) -> None:
    rules = Rules(rate_limits=RateLimits(comments_per_day=3, comment_interval_s=0))
    engine = await Engine.open(db_path, rules)
    try:
        alice, bob = await register(engine, "alice", "bob")
        await engine.seed_submolt("general", T0)
        post_id = (await ok(engine, alice, a.CreatePost(submolt="general", title="p"), T))[
            "post_id"
        ]
        for n in range(3):
            await ok(engine, bob, a.CreateComment(post_id=post_id, body=f"c{n}"), T + n)
    finally:
        await engine.close()

    engine = await Engine.open(db_path, rules)
    try:
        out = await refused(engine, bob, a.CreateComment(post_id=post_id, body="c3"), T + 100)
        assert out.code is ErrorCode.RATE_LIMITED
        await ok(engine, bob, a.CreateComment(post_id=post_id, body="c3"), T + DAY + 1)
    finally:
        await engine.close()


async def test_proactive_contacts_survive_a_reopen(db_path: Path) -> None:
    engine = await Engine.open(db_path, NO_LIMITS)
    try:
        alice, bob, carol = await register(engine, "alice", "bob", "carol")
        await engine.seed_submolt("general", T0)
        post_id = (await ok(engine, alice, a.CreatePost(submolt="general", title="p"), T))[
            "post_id"
        ]
        # Bob contacts alice five times: replies to her post and @mentions of her.
        for n in range(3):
            await ok(engine, bob, a.CreateComment(post_id=post_id, body=f"reply {n}"), T + n + 1)
        await ok(engine, bob, a.CreatePost(submolt="general", title="hey @alice"), T + 10)
        await ok(engine, carol, a.CreateComment(post_id=post_id, body="hi"), T + 11)
        await ok(
            engine, bob, a.CreateComment(post_id=post_id, body="@alice once more"), T + 12
        )  # a reply *and* a mention: two contacts
        contacts = {k: list(v) for k, v in engine.forum.state.contacts.items()}
    finally:
        await engine.close()

    engine = await Engine.open(db_path, NO_LIMITS)
    try:
        assert {k: list(v) for k, v in engine.forum.state.contacts.items()} == contacts
        out = await ok(engine, alice, a.SendDm(to="bob", body="hello bob"), T + 20)
        assert out["proactive"] is True
        out2 = await refused(engine, alice, a.SendDm(to="carol", body="hello carol"), T + 21)
        assert out2.code is ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED
    finally:
        await engine.close()
    engine = await Engine.open(db_path, NO_LIMITS)
    try:
        # The conversation survives too: alice may not write twice in a row.
        out3 = await refused(engine, alice, a.SendDm(to="bob", body="again"), T + 30)
        assert out3.code is ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED
        assert "unanswered" in out3.message
        reply = await ok(engine, bob, a.SendDm(to="alice", body="hi"), T + 31)
        assert reply["proactive"] is False
    finally:
        await engine.close()


# --- keys ---------------------------------------------------------------------------------------


async def test_run_file_stores_only_the_public_key(free_engine: Engine, db_path: Path) -> None:
    public = bytes(range(32))
    alice = await free_engine.register_agent("alice", public, T0, persona={"tone": "dry"})
    with pytest.raises(Refusal) as info:
        await free_engine.register_agent("bob", bytes(range(64)), T0)  # secret + public
    assert info.value.code is ErrorCode.INVALID
    with reading(db_path) as conn:
        rows = conn.execute("SELECT id, handle, public_key, persona FROM agents").fetchall()
    assert rows == [(alice, "alice", public, '{"tone": "dry"}')]
    assert len(rows[0][2]) == 32


# --- failures -----------------------------------------------------------------------------------


async def test_a_rule_bug_is_refused_as_internal_and_the_engine_goes_on(
    free_engine: Engine, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = free_engine
    alice, bob = await register(engine, "alice", "bob")
    await engine.seed_submolt("general", T0)
    first = await ok(engine, alice, a.CreatePost(submolt="general", title="before"), T)

    def broken(*args: Any) -> Outcome:
        raise ZeroDivisionError("a rule divided by zero")

    monkeypatch.setitem(engine.forum._writes, "comment", broken)
    outcome = await engine.submit(bob, a.CreateComment(post_id=first["post_id"], body="x"), T + 1)
    assert outcome.code is ErrorCode.INTERNAL
    assert "ZeroDivisionError" in outcome.message

    # The engine keeps serving.
    after = await ok(engine, bob, a.Vote(target="post", id=first["post_id"], value=1), T + 2)
    assert after == {"score": 1}
    second = await ok(engine, bob, a.CreatePost(submolt="general", title="after"), T + 3)
    assert second["post_id"] == first["post_id"] + 1

    rows = ledger(db_path)
    assert [(r[4], r[7]) for r in rows[-4:]] == [
        ("post", "ok"),
        ("comment", "internal"),
        ("vote", "ok"),
        ("post", "ok"),
    ]
    assert "a rule divided by zero" in rows[-3][8]
    with reading(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM comments").fetchone() == (0,)


async def test_a_failed_commit_stops_the_engine(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await Engine.open(db_path, NO_LIMITS)
    try:
        (alice,) = await register(engine, "alice")
        await engine.seed_submolt("general", T0)
        await ok(engine, alice, a.CreatePost(submolt="general", title="saved"), T)

        async def failing_write(statements: list[Statement]) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(engine.runfile, "write", failing_write)
        with pytest.raises(EngineFailed, match="disk I/O error"):
            await engine.submit(alice, a.CreatePost(submolt="general", title="lost"), T + 1)
        with pytest.raises(EngineFailed):
            await engine.submit(alice, a.CreatePost(submolt="general", title="later"), T + 2)
        with pytest.raises(EngineFailed):
            await engine.submit_many([Submission(alice, a.ListSubmolts(), T + 3)])
        with pytest.raises(EngineFailed):
            await engine.register_agent("bob", key(9), T + 4)
        with pytest.raises(EngineFailed):
            await engine.flush()
    finally:
        await engine.close()
    await engine.close()  # closing twice is harmless

    # The run file holds what was committed before the failure, and nothing after it.
    with reading(db_path) as conn:
        assert conn.execute("SELECT title FROM posts").fetchall() == [("saved",)]
    engine = await Engine.open(db_path, NO_LIMITS)
    try:
        assert sorted(engine.forum.state.posts) == [1]
        assert [ag.handle for ag in engine.forum.state.agents.values()] == ["alice"]
        data = await ok(engine, alice, a.CreatePost(submolt="general", title="resumed"), T + 5)
        assert data["post_id"] == 2
    finally:
        await engine.close()


async def test_a_closed_engine_refuses_work(db_path: Path) -> None:
    engine = await Engine.open(db_path)
    await engine.close()
    with pytest.raises(EngineFailed, match="closed"):
        await engine.submit(1, a.ListSubmolts(), T)


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrent_submits_get_ids_in_submission_order(
    free_engine: Engine, db_path: Path
) -> None:
    engine = free_engine
    agents = await register(engine, "a1", "a2", "a3", "a4", "a5")
    await engine.seed_submolt("general", T0)
    commits = engine.commits
    n = 50
    outcomes = await asyncio.gather(
        *(
            engine.submit(
                agents[i % len(agents)], a.CreatePost(submolt="general", title=f"post {i}"), T + i
            )
            for i in range(n)
        )
    )
    assert all(o.ok for o in outcomes)
    assert [o.data["post_id"] for o in outcomes] == list(range(1, n + 1))
    assert engine.commits - commits < n  # grouped, not one commit per action
    with reading(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM actions WHERE type = 'post'").fetchone() == (n,)
        titles = conn.execute("SELECT id, title FROM posts ORDER BY id").fetchall()
        payloads = [
            r[0]
            for r in conn.execute("SELECT payload FROM actions WHERE type = 'post' ORDER BY id")
        ]
    assert titles == [(i + 1, f"post {i}") for i in range(n)]
    assert [f'"post {i}"' in p for i, p in enumerate(payloads)] == [True] * n


async def test_concurrent_reads_and_writes_see_earlier_writes(free_engine: Engine) -> None:
    engine = free_engine
    (alice,) = await register(engine, "alice")
    await engine.seed_submolt("general", T0)
    jobs = []
    for i in range(10):
        jobs.append(engine.submit(alice, a.CreatePost(submolt="general", title=f"p{i}"), T + i))
        jobs.append(engine.submit(alice, a.Feed(sort="new", limit=50), T + i))
    outcomes = await asyncio.gather(*jobs)
    for i in range(10):
        feed = outcomes[2 * i + 1]
        assert feed.ok
        ids = [p["id"] for p in feed.data["posts"]]
        assert set(range(1, i + 2)) <= set(ids)  # every write submitted before it
        assert ids == sorted(ids, reverse=True)
