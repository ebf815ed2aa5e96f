"""Read queries against a real run file: data is made through the Engine, read back through
``open_readonly`` and :mod:`moltsim.store.queries` (and through the engine's query actions)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from moltsim.domain import actions as a
from moltsim.domain.actions import CommentSort, FeedSort
from moltsim.domain.entities import CommentView, NotificationKind, PostView, Status
from moltsim.domain.errors import ErrorCode
from moltsim.engine import ranking
from moltsim.engine.rules import DAY, HOUR, ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from moltsim.store import queries
from moltsim.store.reader import open_readonly
from tests.engine_writer import EngineWriter

T0 = 1_800_000_000.0
T = T0 + 10 * DAY
"""'Now' for most tests; posts are made before it."""
RULES = Rules(
    rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
)
HANDLES = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    eng = await Engine.open(tmp_path / "run.db", RULES)
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
async def world(engine: Engine) -> World:
    w = World(engine)
    for i, handle in enumerate(HANDLES):
        w.agents[handle] = await engine.register_agent(handle, bytes([i + 1]) * 32, T0)
    await engine.seed_submolt("general", T0, "General")
    await engine.seed_submolt("lobsters", T0 + 1, "Lobsters")
    await w.do("alice", a.CreateSubmolt(name="shells", title="Shells"), T0 + 2)
    return w


class World(EngineWriter):
    """Makes data through the engine, by handle, and reads it back."""

    async def votes(
        self, target: Literal["post", "comment"], target_id: int, ups: int, downs: int, at: float
    ) -> None:
        """``ups`` up-votes then ``downs`` down-votes, from agents other than the author."""
        st = self.engine.forum.state
        author = (st.posts if target == "post" else st.comments)[target_id].author_id
        order = ("carol", "dave", "erin", "frank", "gina", "hank", "alice", "bob")
        voters = [h for h in order if self.agents[h] != author]
        assert ups + downs <= len(voters)
        for i, voter in enumerate(voters[: ups + downs]):
            value: Literal[1, -1] = 1 if i < ups else -1
            await self.do(voter, a.Vote(target=target, id=target_id, value=value), at)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with closing(open_readonly(self.engine.runfile.path)) as conn:
            yield conn


def ids(rows: list[PostView] | list[CommentView]) -> list[int]:
    return [row.id for row in rows]


def tree(comments: list[CommentView]) -> list[tuple[int, Any]]:
    """A comment tree as nested ``(id, [children])`` tuples."""
    return [(c.id, tree(c.replies)) for c in comments]


# --- feeds ----------------------------------------------------------------------------------------


async def make_feed_world(w: World) -> dict[str, int]:
    """Six visible posts with distinct scores and ages, plus a deleted and a removed one."""
    p: dict[str, int] = {}  # made in time order: the engine's clock never runs backwards
    p["ancient"] = await w.post("alice", "lobsters", "Ten days old", T - 10 * DAY + 10)
    p["old"] = await w.post("alice", "general", "Three days old", T - 3 * DAY)
    p["three_h"] = await w.post("bob", "general", "Three hours old", T - 3 * HOUR)
    p["two_h"] = await w.post("bob", "general", "Two hours old", T - 2 * HOUR)
    p["one_h"] = await w.post("bob", "lobsters", "One hour old", T - HOUR)
    p["half_h"] = await w.post("bob", "lobsters", "Half an hour old", T - HOUR / 2)
    p["deleted"] = await w.post("bob", "general", "Deleted later", T - 600, body="secret")
    p["removed"] = await w.post("bob", "shells", "Removed later", T - 300, body="spam")
    at = T - 60
    await w.votes("post", p["old"], 3, 0, at)
    await w.votes("post", p["ancient"], 2, 0, at)
    await w.votes("post", p["two_h"], 1, 0, at)
    await w.votes("post", p["one_h"], 0, 1, at)
    await w.votes("post", p["three_h"], 4, 0, at)
    await w.votes("post", p["deleted"], 5, 0, at)
    await w.votes("post", p["removed"], 5, 0, at)
    await w.do("bob", a.DeletePost(post_id=p["deleted"]), at + 1)
    await w.do("alice", a.RemovePost(submolt="shells", post_id=p["removed"]), at + 2)
    return p


async def test_hot_feed_follows_the_stored_hot_score(world: World) -> None:
    p = await make_feed_world(world)
    with world.read() as conn:
        posts = queries.feed(conn, sort="hot", now=T)
        stored = conn.execute("SELECT id FROM posts WHERE status = 0 ORDER BY hot DESC").fetchall()
    assert ids(posts) == [r[0] for r in stored]
    for post in posts:
        assert post.hot == ranking.hot(post.score, post.created_at)
    assert ids(posts) == [p["three_h"], p["half_h"], p["one_h"], p["two_h"], p["old"], p["ancient"]]


async def test_new_feed_is_newest_id_first(world: World) -> None:
    p = await make_feed_world(world)
    with world.read() as conn:
        posts = queries.feed(conn, sort="new", now=T)
        page = queries.feed(conn, sort="new", limit=2, offset=1, now=T)
    visible = [v for k, v in p.items() if k not in ("deleted", "removed")]
    assert ids(posts) == sorted(visible, reverse=True)
    assert ids(page) == ids(posts)[1:3]


async def test_top_feed_all_time_and_in_a_window(world: World) -> None:
    p = await make_feed_world(world)
    with world.read() as conn:
        all_time = queries.feed(conn, sort="top", now=T)
        day = queries.feed(conn, sort="top", window="day", now=T)
        week = queries.feed(conn, sort="top", window="week", now=T)
        hour = queries.feed(conn, sort="top", window="hour", now=T)
        later = queries.feed(conn, sort="top", window="day", now=T + DAY)
    assert [x.score for x in all_time] == [4, 3, 2, 1, 0, -1]
    assert ids(all_time) == [
        p["three_h"],
        p["old"],
        p["ancient"],
        p["two_h"],
        p["half_h"],
        p["one_h"],
    ]
    assert ids(day) == [p["three_h"], p["two_h"], p["half_h"], p["one_h"]]
    assert ids(week) == [p["three_h"], p["old"], p["two_h"], p["half_h"], p["one_h"]]
    assert ids(hour) == [p["half_h"], p["one_h"]]
    assert ids(later) == []  # the window is measured back from ``now``


async def test_rising_feed_ranks_young_posts_by_momentum(world: World) -> None:
    p = await make_feed_world(world)
    await world.comment("alice", "so", T - 30, post_id=p["one_h"])
    await world.comment("alice", "many", T - 20, post_id=p["one_h"])
    with world.read() as conn:
        posts = queries.feed(conn, sort="rising", now=T)
        narrow = queries.feed(conn, sort="rising", now=T, rising_window_s=HOUR)
        lobsters = queries.feed(conn, sort="rising", submolt="lobsters", now=T)
    # one_h: (-1 + 2*2) / 3**1.5 = 0.577 > three_h: 4 / 5**1.5 = 0.358 > two_h > half_h (0)
    assert ids(posts) == [p["one_h"], p["three_h"], p["two_h"], p["half_h"]]
    keys = [ranking.rising(x.score, x.comment_count, x.created_at, T) for x in posts]
    assert keys == sorted(keys, reverse=True)
    assert ids(narrow) == [p["one_h"], p["half_h"]]
    assert ids(lobsters) == [p["one_h"], p["half_h"]]


async def test_submolt_feed_puts_pinned_posts_first(world: World) -> None:
    s1 = await world.post("bob", "shells", "Rules (old, pinned)", T - 5 * DAY)
    s2 = await world.post("bob", "shells", "Pinned too", T - 4 * DAY)
    s3 = await world.post("carol", "shells", "Popular", T - 2 * HOUR)
    s4 = await world.post("carol", "shells", "Fresh", T - HOUR)
    other = await world.post("carol", "general", "Elsewhere", T - HOUR)
    await world.votes("post", s3, 3, 0, T)
    await world.do("alice", a.PinPost(submolt="shells", post_id=s2), T)
    await world.do("alice", a.PinPost(submolt="shells", post_id=s1), T)
    with world.read() as conn:
        hot = queries.feed(conn, sort="hot", submolt="shells", now=T)
        new = queries.feed(conn, sort="new", submolt="shells", now=T)
        top = queries.feed(conn, sort="top", submolt="shells", now=T)
        glob = queries.feed(conn, sort="new", now=T)
        unknown = queries.feed(conn, submolt="nowhere", now=T)
        view = queries.submolt(conn, "shells")
    assert ids(hot) == [s1, s2, s3, s4]
    assert ids(new) == [s1, s2, s4, s3]
    assert [x.pinned for x in new] == [True, True, False, False]
    assert ids(top) == [s3, s4, s2, s1]  # top ignores pins
    assert ids(glob) == [other, s4, s3, s2, s1]  # the global feed does not lead with pins
    assert unknown == []
    assert view is not None and view.pinned == [s1, s2]


async def test_submolt_feed_pages_cover_every_post_once(world: World) -> None:
    posts = [await world.post("bob", "shells", f"post {i}", T - DAY + i * HOUR) for i in range(8)]
    await world.do("alice", a.PinPost(submolt="shells", post_id=posts[0]), T)
    await world.do("alice", a.PinPost(submolt="shells", post_id=posts[1]), T)
    with world.read() as conn:
        pages = [
            queries.feed(conn, sort="new", submolt="shells", limit=4, offset=o, now=T)
            for o in (0, 4)
        ]
    seen = [post_id for page in pages for post_id in ids(page)]
    assert sorted(seen) == sorted(posts)


async def test_submolt_feed_never_exceeds_limit(world: World) -> None:
    posts = [await world.post("bob", "shells", f"post {i}", T - DAY + i * HOUR) for i in range(4)]
    for post_id in posts[:3]:
        await world.do("alice", a.PinPost(submolt="shells", post_id=post_id), T)
    with world.read() as conn:
        page = queries.feed(conn, sort="hot", submolt="shells", limit=1, now=T)
    assert len(page) == 1


async def test_deleted_and_removed_posts_leave_feeds_but_keep_their_threads(world: World) -> None:
    p = await make_feed_world(world)
    hidden = {p["deleted"], p["removed"]}
    with world.read() as conn:
        sorts: tuple[FeedSort, ...] = ("hot", "new", "top", "rising")
        feeds = [queries.feed(conn, sort=sort, now=T + 2) for sort in sorts]
        feeds.append(queries.feed(conn, sort="new", submolt="shells", now=T + 2))
        feeds.append(queries.feed(conn, sort="new", submolt="general", now=T + 2))
        deleted = queries.thread(conn, p["deleted"])
        removed = queries.thread(conn, p["removed"])
        bob = queries.profile(conn, "bob")
    for feed in feeds:
        assert not hidden & set(ids(feed))
    assert bob is not None and not hidden & set(ids(bob.recent_posts))
    assert deleted is not None and removed is not None
    assert (deleted.post.body, deleted.post.author, deleted.post.status) == (
        "[deleted]", None, Status.DELETED,
    )  # fmt: skip
    assert (removed.post.body, removed.post.author, removed.post.status) == (
        "[removed]", None, Status.REMOVED,
    )  # fmt: skip
    assert "secret" not in deleted.model_dump_json()
    assert "spam" not in removed.model_dump_json()
    assert deleted.post.score == 5


async def test_threads_of_deleted_posts_keep_their_comments(world: World) -> None:
    post_id = await world.post("bob", "shells", "Going away", T - HOUR, body="body")
    c1 = await world.comment("carol", "first", T - 50, post_id=post_id)
    c2 = await world.comment("dave", "second", T - 40, parent_id=c1)
    c3 = await world.comment("erin", "third", T - 30, post_id=post_id)
    await world.do("dave", a.DeleteComment(comment_id=c2), T - 20)
    await world.do("alice", a.RemoveComment(submolt="shells", comment_id=c3), T - 15)
    await world.do("bob", a.DeletePost(post_id=post_id), T - 10)
    with world.read() as conn:
        view = queries.thread(conn, post_id, sort="old")
    assert view is not None
    assert view.post.body == "[deleted]" and view.post.author is None
    assert tree(view.comments) == [(c1, [(c2, [])]), (c3, [])]
    assert view.total_comments == view.shown_comments == 3
    first, third = view.comments
    assert (first.author, first.body) == ("carol", "first")
    assert (first.replies[0].author, first.replies[0].body) == (None, "[deleted]")
    assert (third.author, third.body, third.status) == (None, "[removed]", Status.REMOVED)


# --- personal feed --------------------------------------------------------------------------------


async def test_personal_feed_is_subscriptions_and_follows_only(world: World) -> None:
    w = world
    await w.do("hank", a.Subscribe(submolt="lobsters"), T0 + 10)
    await w.do("hank", a.Follow(agent="bob"), T0 + 11)
    mine = {
        await w.post("bob", "general", "bob in general", T - 5 * HOUR),  # followed author
        await w.post("bob", "lobsters", "bob in lobsters", T - 4 * HOUR),  # both sources
        await w.post("carol", "lobsters", "carol in lobsters", T - 3 * HOUR),  # subscribed
        await w.post("dave", "lobsters", "dave in lobsters", T - 2 * HOUR),
    }
    not_mine = {
        await w.post("erin", "general", "erin in general", T - HOUR),
        await w.post("dave", "shells", "dave in shells", T - HOUR / 2),
    }
    gone = await w.post("bob", "shells", "bob deleted", T - 60)
    await w.do("bob", a.DeletePost(post_id=gone), T - 50)
    a_id, b_id, c_id, d_id = sorted(mine)
    await w.votes("post", c_id, 3, 0, T - 10)
    await w.votes("post", a_id, 0, 2, T - 10)
    await w.votes("post", d_id, 1, 0, T - 10)
    hank = w.agents["hank"]
    with w.read() as conn:
        new = queries.personal_feed(conn, hank, sort="new", now=T)
        hot = queries.personal_feed(conn, hank, sort="hot", now=T)
        top = queries.personal_feed(conn, hank, sort="top", now=T)
        rising = queries.personal_feed(conn, hank, sort="rising", now=T)
        page = queries.personal_feed(conn, hank, sort="new", limit=2, offset=1, now=T)
        top_hour = queries.personal_feed(conn, hank, sort="top", window="hour", now=T)
        nobody = queries.personal_feed(conn, w.agents["frank"], now=T)
    assert set(ids(new)) == mine
    assert not set(ids(new)) & (not_mine | {gone})
    assert ids(new) == sorted(mine, reverse=True)
    assert ids(hot) == [x.id for x in sorted(new, key=lambda x: (x.hot, x.id), reverse=True)]
    assert ids(top) == [c_id, d_id, b_id, a_id]
    assert set(ids(rising)) == mine
    assert ids(page) == ids(new)[1:3]
    assert top_hour == []
    assert nobody == []


# --- threads --------------------------------------------------------------------------------------


async def make_thread(w: World) -> tuple[int, dict[str, int]]:
    post_id = await w.post("alice", "general", "Discuss", T - DAY)
    c: dict[str, int] = {}
    at = T - DAY + 60
    c["a"] = await w.comment("bob", "a", at, post_id=post_id)
    c["b"] = await w.comment("alice", "b", at + 1, post_id=post_id)
    c["c"] = await w.comment("bob", "c", at + 2, post_id=post_id)
    c["d"] = await w.comment("alice", "d", at + 3, post_id=post_id)
    c["e"] = await w.comment("bob", "e", at + 4, post_id=post_id)
    c["a1"] = await w.comment("alice", "a1", at + 5, parent_id=c["a"])
    c["a2"] = await w.comment("bob", "a2", at + 6, parent_id=c["a"])
    c["a1x"] = await w.comment("bob", "a1x", at + 7, post_id=post_id, parent_id=c["a1"])
    c["c1"] = await w.comment("alice", "c1", at + 8, parent_id=c["c"])
    at += 100
    await w.votes("comment", c["a"], 2, 1, at)  # score 1, best .321, controversy 1.73
    await w.votes("comment", c["b"], 1, 0, at)  # score 1, best .378
    await w.votes("comment", c["c"], 4, 2, at)  # score 2, best .409, controversy 2.45
    await w.votes("comment", c["d"], 0, 1, at)  # score -1, best 0
    await w.votes("comment", c["e"], 2, 2, at)  # score 0, best .230, controversy 4.0
    await w.votes("comment", c["a2"], 1, 0, at)
    return post_id, c


async def test_thread_nests_comments(world: World) -> None:
    post_id, c = await make_thread(world)
    with world.read() as conn:
        view = queries.thread(conn, post_id, sort="old")
        missing = queries.thread(conn, 999)
    assert missing is None
    assert view is not None
    assert view.post.id == post_id and view.post.comment_count == 9
    assert tree(view.comments) == [
        (c["a"], [(c["a1"], [(c["a1x"], [])]), (c["a2"], [])]),
        (c["b"], []),
        (c["c"], [(c["c1"], [])]),
        (c["d"], []),
        (c["e"], []),
    ]
    a1x = view.comments[0].replies[0].replies[0]
    assert (a1x.depth, a1x.parent_id, a1x.author, a1x.body) == (2, c["a1"], "bob", "a1x")
    assert view.total_comments == view.shown_comments == 9


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("old", "abcde"),
        ("new", "edcba"),
        ("top", "cabed"),
        ("best", "cbaed"),
        ("controversial", "ecabd"),
    ],
)
async def test_thread_sorts_siblings(world: World, sort: CommentSort, order: str) -> None:
    post_id, c = await make_thread(world)
    with world.read() as conn:
        view = queries.thread(conn, post_id, sort=sort)
    assert view is not None
    assert ids(view.comments) == [c[k] for k in order]
    by_id = {x.id: x for x in view.comments}
    replies_of_a = ids(by_id[c["a"]].replies)
    if sort in ("top", "best"):
        assert replies_of_a == [c["a2"], c["a1"]]  # a2 has a vote, a1 none
    elif sort == "new":
        assert replies_of_a == [c["a2"], c["a1"]]
    else:
        assert replies_of_a == [c["a1"], c["a2"]]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (1, "a"),
        (2, "a(a1)"),
        (3, "a(a1(a1x))"),
        (4, "a(a1(a1x) a2)"),
        (5, "a(a1(a1x) a2) b"),
        (7, "a(a1(a1x) a2) b c(c1)"),
        (500, "a(a1(a1x) a2) b c(c1) d e"),
    ],
)
async def test_thread_limit_is_depth_first_and_keeps_ancestors(
    world: World, limit: int, expected: str
) -> None:
    post_id, c = await make_thread(world)
    names = {v: k for k, v in c.items()}

    def render(comments: list[CommentView]) -> str:
        return " ".join(
            names[x.id] + (f"({render(x.replies)})" if x.replies else "") for x in comments
        )

    with world.read() as conn:
        view = queries.thread(conn, post_id, sort="old", limit=limit)
    assert view is not None
    assert render(view.comments) == expected
    assert view.shown_comments == min(limit, 9)
    assert view.total_comments == 9


# --- profiles, notifications ----------------------------------------------------------------------


async def test_profile(world: World) -> None:
    w = world
    await w.do("bob", a.Subscribe(submolt="general"), T0 + 10)
    await w.do("bob", a.Subscribe(submolt="shells"), T0 + 11)
    await w.do("alice", a.AddModerator(submolt="shells", agent="bob"), T0 + 12)
    await w.do("bob", a.CreateSubmolt(name="bobs-place"), T0 + 13)
    p1 = await w.post("bob", "general", "first", T - 3 * HOUR)
    p2 = await w.post("bob", "general", "second", T - 2 * HOUR)
    p3 = await w.post("bob", "general", "third, deleted", T - HOUR)
    other = await w.post("alice", "general", "alice's", T - HOUR)
    c1 = await w.comment("bob", "c1", T - 50, post_id=other)
    c2 = await w.comment("bob", "c2", T - 40, post_id=other)
    c3 = await w.comment("bob", "c3, deleted", T - 30, post_id=other)
    await w.votes("post", p1, 3, 0, T - 20)
    await w.votes("post", p3, 0, 1, T - 20)
    await w.votes("comment", c1, 0, 2, T - 20)
    await w.do("bob", a.DeletePost(post_id=p3), T - 10)
    await w.do("bob", a.DeleteComment(comment_id=c3), T - 10)
    await w.do("bob", a.UpdateProfile(display_name="Bob", bio="claws out"), T - 5)
    await w.do("carol", a.Follow(agent="bob"), T - 5)
    await w.do("bob", a.Follow(agent="alice"), T - 5)
    with w.read() as conn:
        prof = queries.profile(conn, "bob")
        few = queries.profile(conn, "bob", recent=1)
        nobody = queries.profile(conn, "nobody")
        by_case = queries.profile(conn, "BOB")
    assert nobody is None
    assert prof is not None and few is not None
    assert by_case is not None and by_case.agent.id == prof.agent.id
    who = prof.agent
    assert (who.handle, who.display_name, who.bio) == ("bob", "Bob", "claws out")
    assert who.karma == 3 - 1 - 2  # votes on deleted content still count
    assert (who.post_count, who.comment_count) == (3, 3)
    assert (who.follower_count, who.following_count) == (1, 1)
    assert ids(prof.recent_posts) == [p2, p1]
    assert ids(prof.recent_comments) == [c2, c1]
    assert ids(few.recent_posts) == [p2] and ids(few.recent_comments) == [c2]
    assert prof.moderates == ["bobs-place", "shells"]
    assert prof.subscriptions == ["bobs-place", "general", "shells"]


async def make_notifications(w: World) -> dict[str, int]:
    post_id = await w.post("alice", "general", "Alice's post", T - HOUR)
    n: dict[str, int] = {"post": post_id}
    await w.do("bob", a.Follow(agent="alice"), T - 50)
    n["reply"] = await w.comment("bob", "nice post alice", T - 40, post_id=post_id)
    n["mention_post"] = await w.post("carol", "general", "Hey @alice, look", T - 30)
    n["dm"] = int((await w.do("bob", a.SendDm(to="alice", body="psst"), T - 20))["dm_id"])
    await w.comment("alice", "self reply", T - 10, post_id=post_id)  # no notification
    await w.do("dave", a.Follow(agent="bob"), T - 5)  # someone else's
    return n


async def test_notifications(world: World) -> None:
    n = await make_notifications(world)
    alice = world.agents["alice"]
    with world.read() as conn:
        every = queries.notifications(conn, alice)
        later = queries.notifications(conn, alice, since_id=every[1].id)
        first = queries.notifications(conn, alice, limit=1)
        none = queries.notifications(conn, alice, since_id=every[-1].id)
    assert [x.kind for x in every] == [
        NotificationKind.FOLLOW,
        NotificationKind.REPLY,
        NotificationKind.MENTION,
        NotificationKind.DM,
    ]
    assert [x.actor for x in every] == ["bob", "bob", "carol", "bob"]
    assert [x.created_at for x in every] == [T - 50, T - 40, T - 30, T - 20]
    ids_ = [x.id for x in every]
    assert ids_ == sorted(ids_)
    follow, reply, mention, dm = every
    assert (reply.post_id, reply.comment_id, reply.excerpt) == (
        n["post"], n["reply"], "nice post alice",
    )  # fmt: skip
    assert (mention.post_id, mention.comment_id) == (n["mention_post"], None)
    assert mention.excerpt == "Hey @alice, look"
    assert dm.dm is not None
    assert (dm.dm.id, dm.dm.sender, dm.dm.recipient, dm.dm.body) == (
        n["dm"],
        "bob",
        "alice",
        "psst",
    )
    assert follow.excerpt == "" and follow.dm is None
    assert later == every[2:]
    assert first == every[:1]
    assert none == []


async def test_notifications_do_not_reveal_deleted_replies(world: World) -> None:
    n = await make_notifications(world)
    await world.do("bob", a.DeleteComment(comment_id=n["reply"]), T)
    with world.read() as conn:
        every = queries.notifications(conn, world.agents["alice"])
    assert all("nice post alice" not in x.excerpt for x in every)


# --- search ---------------------------------------------------------------------------------------


async def make_search_world(w: World) -> dict[str, int]:
    s: dict[str, int] = {}
    s["title"] = await w.post(
        "alice", "general", "Lobster migration", T - 5 * HOUR, body="Notes on crustacean travel."
    )
    s["body"] = await w.post(
        "bob", "general", "Travel notes", T - 4 * HOUR, body="A lobster walked along the shore."
    )
    s["other"] = await w.post("carol", "lobsters", "Unrelated", T - 3 * HOUR, body="Kelp forests.")
    s["comment"] = await w.comment(
        "dave", "I love lobster bisque", T - 2 * HOUR, post_id=s["other"]
    )
    s["deleted"] = await w.post("erin", "general", "Lobster secrets", T - HOUR, body="lobster")
    s["on_deleted"] = await w.comment("frank", "lobster lobster", T - 50, post_id=s["deleted"])
    s["removed_c"] = await w.comment("gina", "lobster spam", T - 40, post_id=s["title"])
    await w.do("erin", a.DeletePost(post_id=s["deleted"]), T - 30)
    await w.do("hank", a.Subscribe(submolt="general"), T - 25)
    await w.do("gina", a.DeleteComment(comment_id=s["removed_c"]), T - 20)
    return s


async def test_search_ranks_a_title_match_first_and_finds_comments(world: World) -> None:
    s = await make_search_world(world)
    with world.read() as conn:
        posts = queries.search(conn, "lobster", kind="posts")
        comments = queries.search(conn, "lobster", kind="comments")
        both = queries.search(conn, "lobsters")  # stemmed
        phrase = queries.search(conn, "crustacean travel")
        limited = queries.search(conn, "lobster", limit=1)
    assert [(h.kind, h.id) for h in posts] == [("post", s["title"]), ("post", s["body"])]
    assert posts[0].rank < posts[1].rank  # BM25: lower is better
    assert posts[0].title == "Lobster migration" and posts[0].author == "alice"
    assert "[" in posts[0].snippet and "]" in posts[0].snippet
    assert [(h.kind, h.id, h.post_id) for h in comments] == [("comment", s["comment"], s["other"])]
    assert comments[0].title == "Unrelated" and comments[0].submolt == "lobsters"
    assert {(h.kind, h.id) for h in both} == {
        ("post", s["title"]), ("post", s["body"]), ("comment", s["comment"]),
    }  # fmt: skip
    assert [h.id for h in phrase] == [s["title"]]
    assert len(limited) == 1


async def test_search_excludes_deleted_content(world: World) -> None:
    s = await make_search_world(world)
    with world.read() as conn:
        hits = queries.search(conn, "lobster", limit=50)
        secrets = queries.search(conn, "secrets")
        spam = queries.search(conn, "spam")
    found = {(h.kind, h.id) for h in hits}
    assert ("post", s["deleted"]) not in found
    assert ("comment", s["on_deleted"]) not in found  # on a deleted post
    assert ("comment", s["removed_c"]) not in found
    assert secrets == [] and spam == []


@pytest.mark.parametrize(
    "q",
    [
        'lobster" OR bar',
        "NEAR(",
        "NEAR(lobster travel, 2)",
        "title:lobster",
        "lobster*",
        "-lobster",
        "^lobster",
        "lobster AND",
        "OR",
        '"',
        "*",
        "()",
        "{title body}: lobster",
        "lob\u00adster \u00e9t\u00e9 \u6f22\u5b57",
        "a_b c-d",
    ],
)
async def test_search_ignores_query_syntax(world: World, q: str) -> None:
    s = await make_search_world(world)
    with world.read() as conn:
        hits = queries.search(conn, q)  # must not raise
    assert all(h.id != s["deleted"] for h in hits)


async def test_search_treats_operator_words_as_words(world: World) -> None:
    s = await make_search_world(world)
    with world.read() as conn:
        assert queries.search(conn, "lobster OR kelp") == []  # every word is required
        assert [h.id for h in queries.search(conn, "kelp forests")] == [s["other"]]
        assert [h.id for h in queries.search(conn, 'lobster" walked')] == [s["body"]]
        assert queries.search(conn, "   ") == []


# --- submolts -------------------------------------------------------------------------------------


async def test_list_submolts(world: World) -> None:
    w = world  # general (seeded), lobsters (seeded), shells (alice's, 1 subscriber)
    for who in ("bob", "carol"):
        await w.do(who, a.Subscribe(submolt="lobsters"), T0 + 10)
    await w.do("dave", a.Subscribe(submolt="general"), T0 + 10)
    await w.do("erin", a.CreateSubmolt(name="abyss", title="The Abyss"), T0 + 20)
    await w.do("erin", a.Unsubscribe(submolt="abyss"), T0 + 21)
    await w.do("alice", a.AddModerator(submolt="shells", agent="carol"), T0 + 22)
    await w.post("dave", "general", "one", T - HOUR)
    with w.read() as conn:
        popular = queries.submolts(conn, sort="popular")
        new = queries.submolts(conn, sort="new")
        by_name = queries.submolts(conn, sort="name")
        two = queries.submolts(conn, limit=2)
        shells = queries.submolt(conn, "shells")
        missing = queries.submolt(conn, "nowhere")
    # lobsters 2 subscribers; general and shells 1 each, general has a post; abyss none.
    assert [x.name for x in popular] == ["lobsters", "general", "shells", "abyss"]
    assert [x.name for x in new] == ["abyss", "shells", "lobsters", "general"]
    assert [x.name for x in by_name] == ["abyss", "general", "lobsters", "shells"]
    assert [x.name for x in two] == ["lobsters", "general"]
    assert missing is None
    assert shells is not None
    assert (shells.owner, shells.title, shells.moderators) == ("alice", "Shells", ["carol"])
    general = next(x for x in popular if x.name == "general")
    assert (general.owner, general.subscriber_count, general.post_count) == (None, 1, 1)


# --- through the engine ---------------------------------------------------------------------------


async def test_queries_through_the_engine(world: World) -> None:
    w = world
    engine = w.engine
    post_id = await w.post("alice", "general", "Lobster talk", T - HOUR, body="about lobster")
    await w.comment("bob", "hi @alice", T - 50, post_id=post_id)
    await w.do("bob", a.Subscribe(submolt="general"), T - 40)
    bob, alice = w.agents["bob"], w.agents["alice"]
    cases: list[tuple[int, a.Action, str]] = [
        (bob, a.Feed(), "posts"),
        (bob, a.Feed(sort="new", submolt="general"), "posts"),
        (bob, a.Feed(scope="personal", sort="top"), "posts"),
        (bob, a.Thread(post_id=post_id, sort="new"), "thread"),
        (bob, a.Search(q="lobster"), "hits"),
        (bob, a.Profile(), "profile"),
        (bob, a.Profile(agent="alice"), "profile"),
        (alice, a.Notifications(since_id=0), "notifications"),
        (bob, a.ListSubmolts(sort="name"), "submolts"),
    ]
    for agent_id, action, data_key in cases:
        outcome = await engine.submit(agent_id, action, T)
        assert outcome.ok, (action, outcome.code, outcome.message)
        assert list(outcome.data) == [data_key], action
    feed = (await engine.submit(bob, a.Feed(), T)).data["posts"]
    assert [x["id"] for x in feed] == [post_id]
    thread = (await engine.submit(bob, a.Thread(post_id=post_id), T)).data["thread"]
    assert thread["post"]["title"] == "Lobster talk" and len(thread["comments"]) == 1
    hits = (await engine.submit(bob, a.Search(q="lobster"), T)).data["hits"]
    assert [(h["kind"], h["id"]) for h in hits] == [("post", post_id)]
    me = (await engine.submit(bob, a.Profile(), T)).data["profile"]
    assert me["agent"]["handle"] == "bob" and me["subscriptions"] == ["general"]
    inbox = (await engine.submit(alice, a.Notifications(), T)).data["notifications"]
    assert [x["kind"] for x in inbox] == ["reply"]  # a reply that @mentions its target is one
    subs = (await engine.submit(bob, a.ListSubmolts(sort="name"), T)).data["submolts"]
    assert [x["name"] for x in subs] == ["general", "lobsters", "shells"]


@pytest.mark.parametrize(
    "action",
    [
        a.Thread(post_id=999),
        a.Feed(submolt="nowhere"),
        a.Profile(agent="nobody"),
    ],
    ids=["post", "submolt", "agent"],
)
async def test_engine_queries_for_missing_things_are_not_found(
    world: World, action: a.Action
) -> None:
    outcome = await world.engine.submit(world.agents["bob"], action, T)
    assert not outcome.ok
    assert outcome.code is ErrorCode.NOT_FOUND
    assert outcome.data == {}


async def test_ledger_records_not_found_for_missing_query_targets(world: World) -> None:
    outcome = await world.engine.submit(world.agents["bob"], a.Thread(post_id=999), T)
    assert outcome.code is ErrorCode.NOT_FOUND
    with world.read() as conn:
        row = conn.execute("SELECT type, outcome FROM actions ORDER BY id DESC LIMIT 1").fetchone()
    assert row == ("thread", "not_found")
