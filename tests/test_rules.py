"""The forum's rules, one test per rule and per refusal path of :class:`Forum` (no disk, no broker).

Every refusal is checked for its code and for leaving no trace: the working state and the
pending :class:`Changes` are snapshotted before the refused action and compared after it.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from moltsim.domain import actions as a
from moltsim.domain.actions import ACTION_ADAPTER, MAX_POST_BODY, MAX_TITLE
from moltsim.domain.entities import NotificationKind, Role, Status
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome
from moltsim.engine.forum import Forum
from moltsim.engine.ranking import hot
from moltsim.engine.rules import DAY, HOUR, MINUTE, ProactiveContact, RateLimits, Rules
from moltsim.engine.state import Changes, ForumState, pair_key

T0 = 1_800_000_000.0
"""When the standard agents register."""
NOW = T0 + 2 * DAY
"""Late enough that the standard agents are past the new-agent limits."""
KEY = bytes(range(32))

ALICE, BOB, CAROL = 1, 2, 3

VoteValue = Literal[-1, 0, 1]

NO_LIMITS = Rules(rate_limits=RateLimits(enabled=False))
OPEN_DMS = Rules(
    rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
)

# --- fixtures and helpers ---------------------------------------------------------------------


def make_forum(rules: Rules | None = None) -> Forum:
    """Alice, Bob and Carol (registered at T0) and the owner-less submolt m/general."""
    forum = Forum(rules)
    for expected, handle in enumerate(("alice", "bob", "carol"), start=1):
        assert forum.register_agent(handle, KEY, T0) == expected
    forum.seed_submolt("general", T0, title="General")
    return forum


@pytest.fixture
def forum() -> Forum:
    """Rate limits off, proactive-contact policy on (the default)."""
    return make_forum(NO_LIMITS)


@pytest.fixture
def limited() -> Forum:
    """The default rules: rate limits and proactive-contact policy on."""
    return make_forum(Rules())


@pytest.fixture
def modded(forum: Forum) -> Forum:
    """Alice owns m/mods, Bob moderates it, Carol is a bystander."""
    ok(forum, ALICE, a.CreateSubmolt(name="mods"))
    ok(forum, ALICE, a.AddModerator(submolt="mods", agent="bob"))
    return forum


def _windows(forum: Forum, created_at: float, now: float) -> dict[str, float]:
    rl = forum.rules.rate_limits
    new = now - created_at < rl.new_agent_age_s
    return {
        "read": MINUTE,
        "write": MINUTE,
        "post": rl.new_agent_post_interval_s if new else rl.post_interval_s,
        "comment": rl.comment_interval_s,
        "comment_day": DAY,
        "submolt": rl.submolt_interval_s,
    }


def snapshot(forum: Forum, now: float) -> tuple[ForumState, Changes]:
    """A deep copy of state and pending changes, with rate-limit times that expired by ``now``
    dropped (checking a limit may prune them; that is not a change)."""
    state = copy.deepcopy(forum.state)
    for agent in state.agents.values():
        windows = _windows(forum, agent.created_at, now)
        agent.rate = {
            name: deque(t for t in times if t > now - windows[name])
            for name, times in agent.rate.items()
        }
    return state, copy.deepcopy(forum.changes)


def ok(forum: Forum, agent_id: int, action: a.Action, now: float = NOW) -> dict[str, Any]:
    out = forum.apply(agent_id, action, now)
    assert out.ok, out
    return out.data


def refused(
    forum: Forum, agent_id: int, action: a.Action, code: ErrorCode, now: float = NOW
) -> Outcome:
    """Apply an action that must be refused with ``code`` and leave no trace at all."""
    before = snapshot(forum, now)
    out = forum.apply(agent_id, action, now)
    assert not out.ok, out
    assert out.code == code, out
    assert out.label == code.value
    assert snapshot(forum, now) == before, "a refused action changed the state"
    return out


def post(
    forum: Forum,
    agent_id: int,
    submolt: str = "general",
    body: str = "body",
    now: float = NOW,
    title: str = "title",
) -> int:
    data = ok(forum, agent_id, a.CreatePost(submolt=submolt, title=title, body=body), now)
    post_id: int = data["post_id"]
    return post_id


def comment(
    forum: Forum,
    agent_id: int,
    *,
    post_id: int | None = None,
    parent_id: int | None = None,
    body: str = "a comment",
    now: float = NOW,
) -> int:
    action = a.CreateComment(post_id=post_id, parent_id=parent_id, body=body)
    comment_id: int = ok(forum, agent_id, action, now)["comment_id"]
    return comment_id


def vote(
    forum: Forum, agent_id: int, target: str, target_id: int, value: int, now: float = NOW
) -> Outcome:
    action = ACTION_ADAPTER.validate_python(
        {"type": "vote", "target": target, "id": target_id, "value": value}
    )
    return forum.apply(agent_id, action, now)


def dm(forum: Forum, sender: int, to: str, now: float = NOW, body: str = "hi") -> Outcome:
    return forum.apply(sender, a.SendDm(to=to, body=body), now)


def notifications(forum: Forum) -> list[tuple[Any, ...]]:
    """(to, kind, actor, post_id, comment_id, dm_id) of each new notification."""
    return [tuple(row[1:7]) for row in forum.changes.notifications_new]


def invalid(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ACTION_ADAPTER.validate_python(data)


# --- register_agent and unknown agents ----------------------------------------------------------


def test_register_agent_assigns_ids_and_records_the_row() -> None:
    forum = Forum()
    agent_id = forum.register_agent("Zed", KEY, T0, bio="hello", owner="o", persona={"x": 1})
    assert agent_id == 1
    agent = forum.state.agents[1]
    assert (agent.handle, agent.display_name, agent.bio, agent.created_at) == (
        "Zed",
        "Zed",
        "hello",
        T0,
    )
    assert forum.state.handles == {"zed": 1}
    assert forum.state.next_agent_id == 2
    row = forum.changes.agents_new[0]
    assert row == (1, "Zed", "Zed", "hello", KEY, '{"x": 1}', "o", None, 0, T0)
    assert forum.register_agent("zoe", KEY, T0, display_name="Zoe Z") == 2
    assert forum.state.agents[2].display_name == "Zoe Z"


@pytest.mark.parametrize("handle", ["", "a", "x" * 33, "has space", "bad!", "dot.ted", "émile"])
def test_register_agent_refuses_a_bad_handle(handle: str) -> None:
    forum = make_forum()
    before = snapshot(forum, T0)
    with pytest.raises(Refusal) as info:
        forum.register_agent(handle, KEY, T0)
    assert info.value.code == ErrorCode.INVALID
    assert snapshot(forum, T0) == before


@pytest.mark.parametrize("handle", ["ab", "x" * 32, "A_b-9"])
def test_register_agent_accepts_edge_handles(handle: str) -> None:
    assert make_forum().register_agent(handle, KEY, T0) == 4


@pytest.mark.parametrize("handle", ["alice", "ALICE", "Alice"])
def test_register_agent_refuses_a_taken_handle_case_insensitively(handle: str) -> None:
    forum = make_forum()
    before = snapshot(forum, T0)
    with pytest.raises(Refusal) as info:
        forum.register_agent(handle, KEY, T0)
    assert info.value.code == ErrorCode.DUPLICATE
    assert snapshot(forum, T0) == before


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), bytes(64)])
def test_register_agent_needs_a_32_byte_public_key(key: bytes) -> None:
    forum = make_forum()
    before = snapshot(forum, T0)
    with pytest.raises(Refusal) as info:
        forum.register_agent("dave", key, T0)
    assert info.value.code == ErrorCode.INVALID
    assert snapshot(forum, T0) == before


@pytest.mark.parametrize(
    "action",
    [
        a.CreatePost(submolt="general", title="t"),
        a.Follow(agent="alice"),
        a.Feed(),
        a.Notifications(),
    ],
    ids=["post", "follow", "feed", "notifications"],
)
def test_unknown_agent_is_refused(forum: Forum, action: a.Action) -> None:
    refused(forum, 99, action, ErrorCode.UNKNOWN_AGENT)


def test_queries_are_admitted(forum: Forum) -> None:
    post_id = post(forum, BOB)
    for action in (
        a.Feed(),
        a.Feed(submolt="general"),
        a.Thread(post_id=post_id),
        a.Profile(),
        a.Profile(agent="bob"),
        a.Search(q="x"),
        a.ListSubmolts(),
    ):
        assert forum.apply(ALICE, action, NOW) == Outcome.success()


@pytest.mark.parametrize(
    "action",
    [a.Thread(post_id=99), a.Feed(submolt="nowhere"), a.Profile(agent="nobody")],
    ids=["thread", "feed", "profile"],
)
def test_queries_for_missing_targets_are_refused_before_they_count(
    forum: Forum, action: a.Action
) -> None:
    outcome = forum.apply(ALICE, action, NOW)
    assert outcome.code == ErrorCode.NOT_FOUND
    assert "read" not in forum.state.agents[ALICE].rate


# --- posts --------------------------------------------------------------------------------------


def test_post_creates_a_text_post(forum: Forum) -> None:
    data = ok(forum, ALICE, a.CreatePost(submolt="general", title="Hello", body="world"))
    assert data == {"post_id": 1}
    p = forum.state.posts[1]
    sub = forum.state.submolts["general"]
    assert (p.submolt_id, p.author_id, p.created_at, p.score, p.status) == (
        sub.id,
        ALICE,
        NOW,
        0,
        Status.VISIBLE,
    )
    assert sub.post_count == 1
    assert forum.state.agents[ALICE].post_count == 1
    assert forum.changes.posts_new == [(1, sub.id, ALICE, "Hello", "world", None, NOW, hot(0, NOW))]
    assert sub.id in forum.changes.submolts_dirty
    assert ALICE in forum.changes.agents_dirty
    assert post(forum, BOB) == 2


def test_post_creates_a_link_post(forum: Forum) -> None:
    ok(forum, ALICE, a.CreatePost(submolt="general", title="Look", url="https://example.org/x"))
    assert forum.changes.posts_new[0][3:6] == ("Look", "", "https://example.org/x")


def test_post_in_a_missing_submolt_is_not_found(forum: Forum) -> None:
    refused(forum, ALICE, a.CreatePost(submolt="nowhere", title="t"), ErrorCode.NOT_FOUND)


def test_post_field_limits_accept_the_maximum() -> None:
    action = ACTION_ADAPTER.validate_python(
        {
            "type": "post",
            "submolt": "general",
            "title": "t" * MAX_TITLE,
            "body": "b" * MAX_POST_BODY,
        }
    )
    forum = make_forum(NO_LIMITS)
    assert forum.apply(ALICE, action, NOW).ok
    assert (MAX_TITLE, MAX_POST_BODY) == (300, 40_000)


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "t" * (MAX_TITLE + 1)},
        {"title": "t", "body": "b" * (MAX_POST_BODY + 1)},
        {"title": "   "},
        {"title": ""},
        {"title": "t", "body": "x", "url": "https://example.org"},
        {"title": "t", "url": "ftp://example.org"},
        {"title": "t", "url": "https://has space"},
        {"title": "t", "body": "nul\x00"},
        {"title": "t", "submolt": "Bad"},
        {"title": "t", "extra": 1},
    ],
    ids=[
        "title-too-long",
        "body-too-long",
        "blank-title",
        "empty-title",
        "text-and-link",
        "not-http",
        "bad-url",
        "nul",
        "bad-submolt",
        "extra-field",
    ],
)
def test_post_model_refuses_bad_fields(fields: dict[str, Any]) -> None:
    invalid({"type": "post", "submolt": "general", **fields})


def test_link_post_with_a_blank_body_is_a_link_post() -> None:
    action = ACTION_ADAPTER.validate_python(
        {"type": "post", "submolt": "general", "title": "t", "body": "  ", "url": "https://x.y"}
    )
    assert isinstance(action, a.CreatePost)
    assert action.url == "https://x.y"


# --- comments -----------------------------------------------------------------------------------


def test_comment_on_a_post(forum: Forum) -> None:
    pid = post(forum, ALICE)
    data = ok(forum, BOB, a.CreateComment(post_id=pid, body="nice"))
    assert data == {"comment_id": 1, "post_id": pid}
    c = forum.state.comments[1]
    assert (c.post_id, c.parent_id, c.author_id, c.depth, c.created_at) == (pid, None, BOB, 0, NOW)
    assert forum.state.posts[pid].comment_count == 1
    assert forum.state.agents[BOB].comment_count == 1
    assert forum.changes.comments_new == [(1, pid, None, BOB, "nice", NOW, 0)]
    assert pid in forum.changes.post_counts_dirty


def test_comment_on_a_comment_derives_post_and_depth(forum: Forum) -> None:
    pid = post(forum, ALICE)
    c1 = comment(forum, BOB, post_id=pid)
    data = ok(forum, CAROL, a.CreateComment(parent_id=c1, body="reply"))
    c2 = data["comment_id"]
    assert data["post_id"] == pid
    c3 = comment(forum, ALICE, parent_id=c2)
    assert [
        (forum.state.comments[c].post_id, forum.state.comments[c].depth) for c in (c1, c2, c3)
    ] == [
        (pid, 0),
        (pid, 1),
        (pid, 2),
    ]
    assert forum.state.comments[c3].parent_id == c2
    assert forum.state.posts[pid].comment_count == 3


def test_comment_with_matching_post_and_parent(forum: Forum) -> None:
    pid = post(forum, ALICE)
    c1 = comment(forum, BOB, post_id=pid)
    c2 = comment(forum, CAROL, post_id=pid, parent_id=c1)
    assert forum.state.comments[c2].depth == 1


def test_comment_with_mismatched_post_is_invalid(forum: Forum) -> None:
    p1 = post(forum, ALICE)
    p2 = post(forum, ALICE)
    c1 = comment(forum, BOB, post_id=p1)
    refused(forum, CAROL, a.CreateComment(post_id=p2, parent_id=c1, body="x"), ErrorCode.INVALID)


@pytest.mark.parametrize(
    "target", [{"post_id": 99}, {"parent_id": 99}, {"post_id": 1, "parent_id": 99}]
)
def test_comment_on_a_missing_target_is_not_found(forum: Forum, target: dict[str, int]) -> None:
    post(forum, ALICE)
    action = ACTION_ADAPTER.validate_python({"type": "comment", "body": "x", **target})
    refused(forum, BOB, action, ErrorCode.NOT_FOUND)


def test_comment_on_a_deleted_post_is_gone(forum: Forum) -> None:
    pid = post(forum, ALICE)
    c1 = comment(forum, BOB, post_id=pid)
    ok(forum, ALICE, a.DeletePost(post_id=pid))
    refused(forum, CAROL, a.CreateComment(post_id=pid, body="x"), ErrorCode.GONE)
    # a reply to a surviving comment of a deleted post is refused too
    refused(forum, CAROL, a.CreateComment(parent_id=c1, body="x"), ErrorCode.GONE)


def test_reply_to_a_deleted_or_removed_comment_is_gone(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    c1 = comment(modded, CAROL, post_id=pid)
    c2 = comment(modded, CAROL, post_id=pid)
    ok(modded, CAROL, a.DeleteComment(comment_id=c1))
    ok(modded, ALICE, a.RemoveComment(submolt="mods", comment_id=c2))
    for cid in (c1, c2):
        refused(modded, BOB, a.CreateComment(parent_id=cid, body="x"), ErrorCode.GONE)


def test_comment_on_a_removed_post_is_gone(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    ok(modded, BOB, a.RemovePost(submolt="mods", post_id=pid))
    refused(modded, CAROL, a.CreateComment(post_id=pid, body="x"), ErrorCode.GONE)


@pytest.mark.parametrize(
    "fields",
    [
        {"body": "x"},
        {"post_id": 1, "body": ""},
        {"post_id": 1, "body": " \n "},
        {"post_id": 1, "body": "x" * (a.MAX_COMMENT_BODY + 1)},
        {"post_id": 0, "body": "x"},
        {"parent_id": -1, "body": "x"},
        {"post_id": "1", "body": "x"},
    ],
    ids=["no-target", "empty", "blank", "too-long", "zero-id", "negative-id", "string-id"],
)
def test_comment_model_refuses_bad_fields(fields: dict[str, Any]) -> None:
    invalid({"type": "comment", **fields})


# --- votes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["post", "comment"])
@pytest.mark.parametrize("old", [-1, 0, 1])
@pytest.mark.parametrize("new", [-1, 0, 1])
def test_changing_a_vote_moves_score_by_the_difference(
    forum: Forum, target: str, old: int, new: int
) -> None:
    pid = post(forum, ALICE)
    tid = pid if target == "post" else comment(forum, ALICE, post_id=pid)
    votes = forum.state.post_votes if target == "post" else forum.state.comment_votes
    item = forum.state.posts[tid] if target == "post" else forum.state.comments[tid]
    assert vote(forum, BOB, target, tid, old).ok
    assert vote(forum, CAROL, target, tid, 1).ok  # an unrelated vote that must not be disturbed
    assert (item.score, item.ups, item.downs) == (old + 1, (old == 1) + 1, int(old == -1))
    out = vote(forum, BOB, target, tid, new)
    assert out == Outcome.success(score=new + 1)
    assert (item.score, item.ups, item.downs) == (new + 1, (new == 1) + 1, int(new == -1))
    assert forum.state.agents[ALICE].karma == new + 1
    assert votes.get(pair_key(tid, BOB)) == (new or None)
    assert votes[pair_key(tid, CAROL)] == 1
    assert len(votes) == 1 + (new != 0)


def test_vote_rows_are_marked_dirty(forum: Forum) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, ALICE, post_id=pid)
    assert vote(forum, BOB, "post", pid, 1).ok
    assert vote(forum, BOB, "comment", cid, -1).ok
    ch = forum.changes
    assert ch.post_votes_dirty == {pair_key(pid, BOB): NOW}
    assert ch.comment_votes_dirty == {pair_key(cid, BOB): NOW}
    assert (ch.post_scores_dirty, ch.comment_scores_dirty) == ({pid}, {cid})
    assert ALICE in ch.agents_dirty


def test_one_vote_per_agent_per_target(forum: Forum) -> None:
    pid = post(forum, ALICE)
    for _ in range(3):
        assert vote(forum, BOB, "post", pid, 1) == Outcome.success(score=1)
    p = forum.state.posts[pid]
    assert (p.score, p.ups, p.downs, forum.state.agents[ALICE].karma) == (1, 1, 0, 1)
    assert vote(forum, CAROL, "post", pid, -1).ok
    assert (p.score, p.ups, p.downs, forum.state.agents[ALICE].karma) == (0, 1, 1, 0)


def test_clearing_a_vote_that_was_never_cast_changes_nothing(forum: Forum) -> None:
    pid = post(forum, ALICE)
    before = snapshot(forum, NOW)
    assert vote(forum, BOB, "post", pid, 0) == Outcome.success(score=0)
    assert snapshot(forum, NOW) == before


def test_karma_sums_over_posts_and_comments(forum: Forum) -> None:
    p1 = post(forum, ALICE)
    p2 = post(forum, ALICE)
    c1 = comment(forum, ALICE, post_id=p2)
    assert vote(forum, BOB, "post", p1, 1).ok
    assert vote(forum, CAROL, "post", p1, 1).ok
    assert vote(forum, BOB, "post", p2, -1).ok
    assert vote(forum, BOB, "comment", c1, 1).ok
    assert forum.state.agents[ALICE].karma == 2
    assert forum.state.agents[BOB].karma == 0


@pytest.mark.parametrize("target", ["post", "comment"])
@pytest.mark.parametrize("value", [1, -1])
def test_self_vote_is_forbidden(forum: Forum, target: str, value: VoteValue) -> None:
    pid = post(forum, ALICE)
    tid = pid if target == "post" else comment(forum, ALICE, post_id=pid)
    action = a.Vote(target="post" if target == "post" else "comment", id=tid, value=value)
    refused(forum, ALICE, action, ErrorCode.FORBIDDEN)


@pytest.mark.parametrize("target", ["post", "comment"])
def test_clearing_own_vote_is_allowed(forum: Forum, target: str) -> None:
    pid = post(forum, ALICE)
    tid = pid if target == "post" else comment(forum, ALICE, post_id=pid)
    assert vote(forum, ALICE, target, tid, 0) == Outcome.success(score=0)


@pytest.mark.parametrize("target", ["post", "comment"])
def test_self_vote_allowed_by_rules(target: str) -> None:
    forum = make_forum(Rules(rate_limits=RateLimits(enabled=False), allow_self_votes=True))
    pid = post(forum, ALICE)
    tid = pid if target == "post" else comment(forum, ALICE, post_id=pid)
    assert vote(forum, ALICE, target, tid, 1) == Outcome.success(score=1)
    assert forum.state.agents[ALICE].karma == 1
    assert vote(forum, ALICE, target, tid, -1) == Outcome.success(score=-1)
    assert forum.state.agents[ALICE].karma == -1
    assert vote(forum, ALICE, target, tid, 0) == Outcome.success(score=0)
    assert forum.state.agents[ALICE].karma == 0


@pytest.mark.parametrize("target", ["post", "comment"])
def test_vote_on_a_missing_target_is_not_found(forum: Forum, target: str) -> None:
    post(forum, ALICE)
    action = a.Vote(target="post" if target == "post" else "comment", id=42, value=1)
    refused(forum, BOB, action, ErrorCode.NOT_FOUND)


@pytest.mark.parametrize("value", [1, -1, 0])
def test_vote_on_deleted_content_is_gone(forum: Forum, value: VoteValue) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, ALICE, post_id=pid)
    assert vote(forum, BOB, "post", pid, 1).ok
    ok(forum, ALICE, a.DeleteComment(comment_id=cid))
    ok(forum, ALICE, a.DeletePost(post_id=pid))
    refused(forum, BOB, a.Vote(target="post", id=pid, value=value), ErrorCode.GONE)
    refused(forum, CAROL, a.Vote(target="comment", id=cid, value=value), ErrorCode.GONE)
    # deletion keeps the score and the karma earned
    assert forum.state.posts[pid].score == 1
    assert forum.state.agents[ALICE].karma == 1


def test_vote_on_removed_content_is_gone(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    cid = comment(modded, CAROL, post_id=post(modded, CAROL, "mods"))
    ok(modded, ALICE, a.RemovePost(submolt="mods", post_id=pid))
    ok(modded, ALICE, a.RemoveComment(submolt="mods", comment_id=cid))
    refused(modded, BOB, a.Vote(target="post", id=pid, value=1), ErrorCode.GONE)
    refused(modded, BOB, a.Vote(target="comment", id=cid, value=1), ErrorCode.GONE)


@pytest.mark.parametrize(
    "fields",
    [
        {"target": "post", "id": 1, "value": 2},
        {"target": "agent", "id": 1, "value": 1},
        {"target": "post", "id": 0, "value": 1},
        {"target": "post", "value": 1},
    ],
)
def test_vote_model_refuses_bad_fields(fields: dict[str, Any]) -> None:
    invalid({"type": "vote", **fields})


# --- submolts and subscriptions -------------------------------------------------------------------


def test_create_submolt_makes_the_creator_owner_and_subscriber(forum: Forum) -> None:
    data = ok(forum, ALICE, a.CreateSubmolt(name="ideas", description="d"))
    sub = forum.state.submolts["ideas"]
    assert data == {"submolt": "ideas", "submolt_id": sub.id}
    assert forum.state.submolts_by_id[sub.id] is sub
    assert (sub.owner_id, sub.subscribers, sub.subscriber_count, sub.moderators) == (
        ALICE,
        {ALICE},
        1,
        set(),
    )
    assert sub.can_moderate(ALICE)
    assert forum.changes.submolts_new[-1] == (sub.id, "ideas", "ideas", "d", ALICE, NOW)
    assert (sub.id, ALICE, Role.OWNER) in forum.changes.memberships_dirty
    assert (sub.id, ALICE, Role.SUBSCRIBER) in forum.changes.memberships_dirty


@pytest.mark.parametrize("name", ["general", "ideas"])
def test_create_submolt_refuses_a_taken_name(forum: Forum, name: str) -> None:
    ok(forum, ALICE, a.CreateSubmolt(name="ideas"))
    refused(forum, BOB, a.CreateSubmolt(name=name), ErrorCode.DUPLICATE)


def test_seed_submolt_refuses_a_taken_name(forum: Forum) -> None:
    before = snapshot(forum, NOW)
    with pytest.raises(Refusal) as info:
        forum.seed_submolt("general", NOW)
    assert info.value.code == ErrorCode.DUPLICATE
    assert snapshot(forum, NOW) == before
    assert forum.state.submolts["general"].owner_id is None


@pytest.mark.parametrize("name", ["ab", "a" * 30, "a-b", "x1", "9lives", "a--b"])
def test_submolt_names_accepted(forum: Forum, name: str) -> None:
    action = ACTION_ADAPTER.validate_python({"type": "create_submolt", "name": name})
    assert forum.apply(ALICE, action, NOW).ok


@pytest.mark.parametrize(
    "name", ["", "a", "a" * 31, "Ab", "-ab", "ab-", "a_b", "a b", "ab\n", "ünï"]
)
def test_submolt_names_refused(name: str) -> None:
    invalid({"type": "create_submolt", "name": name})


def test_submolt_title_and_description_limits() -> None:
    invalid({"type": "create_submolt", "name": "ab", "title": "t" * 101})
    invalid({"type": "create_submolt", "name": "ab", "description": "d" * 1001})


def test_subscribe_and_unsubscribe(forum: Forum) -> None:
    assert ok(forum, BOB, a.Subscribe(submolt="general")) == {"subscribers": 1}
    assert ok(forum, CAROL, a.Subscribe(submolt="general")) == {"subscribers": 2}
    sub = forum.state.submolts["general"]
    assert sub.subscribers == {BOB, CAROL}
    assert (sub.id, BOB, Role.SUBSCRIBER) in forum.changes.memberships_dirty
    assert ok(forum, BOB, a.Unsubscribe(submolt="general")) == {"subscribers": 1}
    assert sub.subscribers == {CAROL}


def test_subscribe_twice_is_duplicate(forum: Forum) -> None:
    ok(forum, BOB, a.Subscribe(submolt="general"))
    refused(forum, BOB, a.Subscribe(submolt="general"), ErrorCode.DUPLICATE)


def test_owner_is_already_subscribed(forum: Forum) -> None:
    ok(forum, ALICE, a.CreateSubmolt(name="ideas"))
    refused(forum, ALICE, a.Subscribe(submolt="ideas"), ErrorCode.DUPLICATE)


def test_unsubscribe_when_not_subscribed_is_not_found(forum: Forum) -> None:
    refused(forum, BOB, a.Unsubscribe(submolt="general"), ErrorCode.NOT_FOUND)


@pytest.mark.parametrize("action", [a.Subscribe(submolt="nope"), a.Unsubscribe(submolt="nope")])
def test_subscription_to_a_missing_submolt_is_not_found(forum: Forum, action: a.Action) -> None:
    refused(forum, BOB, action, ErrorCode.NOT_FOUND)


# --- follows ------------------------------------------------------------------------------------


def test_follow_counts_and_notifies(forum: Forum) -> None:
    assert ok(forum, BOB, a.Follow(agent="alice")) == {"followers": 1}
    assert ok(forum, CAROL, a.Follow(agent="ALICE")) == {"followers": 2}
    assert forum.state.follows == {pair_key(ALICE, BOB): NOW, pair_key(ALICE, CAROL): NOW}
    assert forum.state.agents[ALICE].follower_count == 2
    assert forum.state.agents[BOB].following_count == 1
    assert notifications(forum) == [
        (ALICE, "follow", BOB, None, None, None),
        (ALICE, "follow", CAROL, None, None, None),
    ]
    assert forum.changes.follows_dirty == {pair_key(ALICE, BOB), pair_key(ALICE, CAROL)}


def test_follow_self_is_invalid(forum: Forum) -> None:
    refused(forum, ALICE, a.Follow(agent="Alice"), ErrorCode.INVALID)


def test_follow_twice_is_duplicate(forum: Forum) -> None:
    ok(forum, BOB, a.Follow(agent="alice"))
    refused(forum, BOB, a.Follow(agent="alice"), ErrorCode.DUPLICATE)


@pytest.mark.parametrize("action", [a.Follow(agent="ghost"), a.Unfollow(agent="ghost")])
def test_follow_unknown_agent_is_not_found(forum: Forum, action: a.Action) -> None:
    refused(forum, BOB, action, ErrorCode.NOT_FOUND)


def test_unfollow(forum: Forum) -> None:
    ok(forum, BOB, a.Follow(agent="alice"))
    n = len(forum.changes.notifications_new)
    assert ok(forum, BOB, a.Unfollow(agent="alice")) == {"followers": 0}
    assert forum.state.follows == {}
    assert forum.state.agents[ALICE].follower_count == 0
    assert forum.state.agents[BOB].following_count == 0
    assert len(forum.changes.notifications_new) == n
    ok(forum, BOB, a.Follow(agent="alice"))  # may follow again


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_unfollow_when_not_following_is_not_found(forum: Forum, who: str) -> None:
    refused(forum, BOB, a.Unfollow(agent=who), ErrorCode.NOT_FOUND)


# --- profile ------------------------------------------------------------------------------------


def test_update_profile(forum: Forum) -> None:
    ok(forum, ALICE, a.UpdateProfile(display_name="Alice A."))
    agent = forum.state.agents[ALICE]
    assert (agent.display_name, agent.bio) == ("Alice A.", "")
    ok(forum, ALICE, a.UpdateProfile(bio="I like shells"))
    assert (agent.display_name, agent.bio) == ("Alice A.", "I like shells")
    ok(forum, ALICE, a.UpdateProfile(display_name="  A  ", bio=""))
    assert (agent.display_name, agent.bio) == ("A", "")
    assert ALICE in forum.changes.agents_dirty


@pytest.mark.parametrize(
    "fields",
    [{}, {"display_name": " "}, {"display_name": "x" * 65}, {"bio": "b" * 1001}],
    ids=["nothing", "blank-name", "long-name", "long-bio"],
)
def test_update_profile_model_refuses_bad_fields(fields: dict[str, Any]) -> None:
    invalid({"type": "update_profile", **fields})


# --- moderation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("moderator", [ALICE, BOB], ids=["owner", "moderator"])
def test_pin_up_to_three_posts(modded: Forum, moderator: int) -> None:
    pids = [post(modded, CAROL, "mods") for _ in range(4)]
    for pid in pids[:3]:
        assert ok(modded, moderator, a.PinPost(submolt="mods", post_id=pid)) == {"post_id": pid}
    sub = modded.state.submolts["mods"]
    assert sub.pinned == pids[:3]
    assert all(modded.state.posts[p].pinned for p in pids[:3])
    refused(modded, moderator, a.PinPost(submolt="mods", post_id=pids[3]), ErrorCode.LIMIT_REACHED)
    ok(modded, moderator, a.UnpinPost(submolt="mods", post_id=pids[0]))
    ok(modded, moderator, a.PinPost(submolt="mods", post_id=pids[3]))
    assert sub.pinned == [pids[1], pids[2], pids[3]]


def test_pin_cap_is_configurable() -> None:
    forum = make_forum(Rules(rate_limits=RateLimits(enabled=False), max_pinned_per_submolt=1))
    ok(forum, ALICE, a.CreateSubmolt(name="mods"))
    p1, p2 = post(forum, ALICE, "mods"), post(forum, ALICE, "mods")
    ok(forum, ALICE, a.PinPost(submolt="mods", post_id=p1))
    refused(forum, ALICE, a.PinPost(submolt="mods", post_id=p2), ErrorCode.LIMIT_REACHED)


def test_pin_twice_is_duplicate(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=pid))
    refused(modded, BOB, a.PinPost(submolt="mods", post_id=pid), ErrorCode.DUPLICATE)


def test_unpin(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=pid))
    assert ok(modded, BOB, a.UnpinPost(submolt="mods", post_id=pid)) == {"post_id": pid}
    assert modded.state.submolts["mods"].pinned == []
    assert not modded.state.posts[pid].pinned
    assert pid in modded.changes.post_meta_dirty


def test_unpin_a_post_that_is_not_pinned_is_not_found(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    refused(modded, ALICE, a.UnpinPost(submolt="mods", post_id=pid), ErrorCode.NOT_FOUND)


@pytest.mark.parametrize(
    "action",
    [
        a.PinPost(submolt="mods", post_id=1),
        a.UnpinPost(submolt="mods", post_id=1),
        a.RemovePost(submolt="mods", post_id=1),
        a.RemoveComment(submolt="mods", comment_id=1),
    ],
    ids=["pin", "unpin", "remove-post", "remove-comment"],
)
def test_moderating_content_of_another_submolt_is_invalid(modded: Forum, action: a.Action) -> None:
    pid = post(modded, CAROL, "general")
    comment(modded, CAROL, post_id=pid)
    assert pid == 1
    refused(modded, ALICE, action, ErrorCode.INVALID)


@pytest.mark.parametrize(
    "action",
    [
        a.PinPost(submolt="mods", post_id=9),
        a.UnpinPost(submolt="mods", post_id=9),
        a.RemovePost(submolt="mods", post_id=9),
        a.RemoveComment(submolt="mods", comment_id=9),
        a.PinPost(submolt="nope", post_id=1),
        a.AddModerator(submolt="nope", agent="carol"),
        a.AddModerator(submolt="mods", agent="ghost"),
        a.RemoveModerator(submolt="mods", agent="ghost"),
    ],
    ids=[
        "pin",
        "unpin",
        "remove-post",
        "remove-comment",
        "submolt",
        "add-mod-submolt",
        "add-mod-agent",
        "remove-mod-agent",
    ],
)
def test_moderating_missing_things_is_not_found(modded: Forum, action: a.Action) -> None:
    post(modded, CAROL, "mods")
    refused(modded, ALICE, action, ErrorCode.NOT_FOUND)


@pytest.mark.parametrize(
    "action",
    [
        a.PinPost(submolt="mods", post_id=1),
        a.UnpinPost(submolt="mods", post_id=1),
        a.RemovePost(submolt="mods", post_id=1),
        a.RemoveComment(submolt="mods", comment_id=1),
        a.AddModerator(submolt="mods", agent="carol"),
        a.RemoveModerator(submolt="mods", agent="bob"),
    ],
    ids=["pin", "unpin", "remove-post", "remove-comment", "add-mod", "remove-mod"],
)
def test_non_moderator_is_forbidden(modded: Forum, action: a.Action) -> None:
    pid = post(modded, ALICE, "mods")
    comment(modded, ALICE, post_id=pid)
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=pid))
    refused(modded, CAROL, action, ErrorCode.FORBIDDEN)


def test_nobody_moderates_a_seeded_submolt(forum: Forum) -> None:
    pid = post(forum, ALICE)
    refused(forum, ALICE, a.PinPost(submolt="general", post_id=pid), ErrorCode.FORBIDDEN)
    refused(forum, ALICE, a.AddModerator(submolt="general", agent="bob"), ErrorCode.FORBIDDEN)


def test_pin_a_gone_post_is_gone(modded: Forum) -> None:
    p1 = post(modded, CAROL, "mods")
    p2 = post(modded, CAROL, "mods")
    ok(modded, CAROL, a.DeletePost(post_id=p1))
    ok(modded, ALICE, a.RemovePost(submolt="mods", post_id=p2))
    for pid in (p1, p2):
        refused(modded, BOB, a.PinPost(submolt="mods", post_id=pid), ErrorCode.GONE)
        refused(modded, BOB, a.RemovePost(submolt="mods", post_id=pid), ErrorCode.GONE)


@pytest.mark.parametrize("moderator", [ALICE, BOB], ids=["owner", "moderator"])
def test_remove_post(modded: Forum, moderator: int) -> None:
    pid = post(modded, CAROL, "mods")
    assert ok(modded, moderator, a.RemovePost(submolt="mods", post_id=pid)) == {"post_id": pid}
    assert modded.state.posts[pid].status == Status.REMOVED
    assert pid in modded.changes.post_meta_dirty
    refused(modded, CAROL, a.DeletePost(post_id=pid), ErrorCode.GONE)


@pytest.mark.parametrize("moderator", [ALICE, BOB], ids=["owner", "moderator"])
def test_remove_comment(modded: Forum, moderator: int) -> None:
    cid = comment(modded, CAROL, post_id=post(modded, CAROL, "mods"))
    out = ok(modded, moderator, a.RemoveComment(submolt="mods", comment_id=cid))
    assert out == {"comment_id": cid}
    assert modded.state.comments[cid].status == Status.REMOVED
    assert cid in modded.changes.comment_meta_dirty
    refused(modded, ALICE, a.RemoveComment(submolt="mods", comment_id=cid), ErrorCode.GONE)
    refused(modded, CAROL, a.DeleteComment(comment_id=cid), ErrorCode.GONE)


def test_removing_a_pinned_post_unpins_it(modded: Forum) -> None:
    p1, p2 = post(modded, CAROL, "mods"), post(modded, CAROL, "mods")
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=p1))
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=p2))
    ok(modded, BOB, a.RemovePost(submolt="mods", post_id=p1))
    assert modded.state.submolts["mods"].pinned == [p2]
    assert not modded.state.posts[p1].pinned
    refused(modded, ALICE, a.UnpinPost(submolt="mods", post_id=p1), ErrorCode.GONE)


def test_deleting_a_pinned_post_unpins_it(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    ok(modded, ALICE, a.PinPost(submolt="mods", post_id=pid))
    ok(modded, CAROL, a.DeletePost(post_id=pid))
    assert modded.state.submolts["mods"].pinned == []
    assert not modded.state.posts[pid].pinned


def test_add_and_remove_moderator(forum: Forum) -> None:
    ok(forum, ALICE, a.CreateSubmolt(name="mods"))
    sub = forum.state.submolts["mods"]
    assert ok(forum, ALICE, a.AddModerator(submolt="mods", agent="Bob")) == {"moderators": 1}
    assert sub.moderators == {BOB}
    assert (sub.id, BOB, Role.MODERATOR) in forum.changes.memberships_dirty
    pid = post(forum, CAROL, "mods")
    ok(forum, BOB, a.PinPost(submolt="mods", post_id=pid))
    assert ok(forum, ALICE, a.RemoveModerator(submolt="mods", agent="bob")) == {"moderators": 0}
    assert sub.moderators == set()
    refused(forum, BOB, a.UnpinPost(submolt="mods", post_id=pid), ErrorCode.FORBIDDEN)


def test_only_the_owner_manages_moderators(modded: Forum) -> None:
    refused(modded, BOB, a.AddModerator(submolt="mods", agent="carol"), ErrorCode.FORBIDDEN)
    refused(modded, BOB, a.RemoveModerator(submolt="mods", agent="bob"), ErrorCode.FORBIDDEN)


@pytest.mark.parametrize(
    "action",
    [
        a.AddModerator(submolt="mods", agent="alice"),
        a.RemoveModerator(submolt="mods", agent="alice"),
    ],
    ids=["add", "remove"],
)
def test_the_owner_is_not_a_moderator_entry(modded: Forum, action: a.Action) -> None:
    refused(modded, ALICE, action, ErrorCode.INVALID)


def test_add_moderator_twice_is_duplicate(modded: Forum) -> None:
    refused(modded, ALICE, a.AddModerator(submolt="mods", agent="bob"), ErrorCode.DUPLICATE)


def test_remove_a_non_moderator_is_not_found(modded: Forum) -> None:
    refused(modded, ALICE, a.RemoveModerator(submolt="mods", agent="carol"), ErrorCode.NOT_FOUND)


# --- deletion -----------------------------------------------------------------------------------


def test_delete_own_post_is_a_soft_delete(forum: Forum) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, BOB, post_id=pid)
    assert ok(forum, ALICE, a.DeletePost(post_id=pid)) == {"post_id": pid}
    p = forum.state.posts[pid]
    assert p.status == Status.DELETED
    assert pid in forum.changes.post_meta_dirty
    # it keeps its place: counts and comments stay
    assert forum.state.submolts["general"].post_count == 1
    assert p.comment_count == 1
    assert forum.state.comments[cid].status == Status.VISIBLE


def test_delete_own_comment_is_a_soft_delete(forum: Forum) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, BOB, post_id=pid)
    child = comment(forum, CAROL, parent_id=cid)
    assert ok(forum, BOB, a.DeleteComment(comment_id=cid)) == {"comment_id": cid}
    assert forum.state.comments[cid].status == Status.DELETED
    assert cid in forum.changes.comment_meta_dirty
    assert forum.state.comments[child].status == Status.VISIBLE
    assert forum.state.posts[pid].comment_count == 2


@pytest.mark.parametrize("who", [BOB, CAROL])
def test_only_the_author_deletes(forum: Forum, who: int) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, ALICE, post_id=pid)
    refused(forum, who, a.DeletePost(post_id=pid), ErrorCode.FORBIDDEN)
    refused(forum, who, a.DeleteComment(comment_id=cid), ErrorCode.FORBIDDEN)


def test_owner_of_the_submolt_cannot_delete_others_posts(modded: Forum) -> None:
    pid = post(modded, CAROL, "mods")
    refused(modded, ALICE, a.DeletePost(post_id=pid), ErrorCode.FORBIDDEN)


def test_second_delete_is_gone(forum: Forum) -> None:
    pid = post(forum, ALICE)
    cid = comment(forum, ALICE, post_id=pid)
    ok(forum, ALICE, a.DeleteComment(comment_id=cid))
    ok(forum, ALICE, a.DeletePost(post_id=pid))
    refused(forum, ALICE, a.DeletePost(post_id=pid), ErrorCode.GONE)
    refused(forum, ALICE, a.DeleteComment(comment_id=cid), ErrorCode.GONE)


def test_delete_missing_is_not_found(forum: Forum) -> None:
    refused(forum, ALICE, a.DeletePost(post_id=5), ErrorCode.NOT_FOUND)
    refused(forum, ALICE, a.DeleteComment(comment_id=5), ErrorCode.NOT_FOUND)


# --- direct messages and the proactive-contact policy -------------------------------------------


def bob_contacts_alice(forum: Forum, times: int, now: float = NOW) -> None:
    """Bob replies ``times`` times to Alice's content (each reply is one contact)."""
    pid = post(forum, ALICE, now=now)
    for _ in range(times):
        comment(forum, BOB, post_id=pid, now=now)


def test_first_contact_is_refused(forum: Forum) -> None:
    out = refused(
        forum, ALICE, a.SendDm(to="bob", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED
    )
    assert out.retry_after is None


def test_first_contact_needs_five_contacts_from_the_recipient(forum: Forum) -> None:
    bob_contacts_alice(forum, 4)
    refused(forum, ALICE, a.SendDm(to="bob", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)
    bob_contacts_alice(forum, 1)
    assert dm(forum, ALICE, "bob").data == {"dm_id": 1, "proactive": True}
    assert forum.changes.dms_new == [(1, ALICE, BOB, "hi", NOW, 1)]
    assert forum.state.last_dm_sender[(ALICE, BOB)] == ALICE


def test_contacts_from_someone_else_do_not_count(forum: Forum) -> None:
    bob_contacts_alice(forum, 5)
    refused(forum, ALICE, a.SendDm(to="carol", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)
    # nor do contacts the sender made itself
    refused(forum, BOB, a.SendDm(to="alice", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)


def test_replies_to_comments_count_as_contacts(forum: Forum) -> None:
    pid = post(forum, CAROL)
    cid = comment(forum, ALICE, post_id=pid)
    for _ in range(5):
        comment(forum, BOB, parent_id=cid)
    assert dm(forum, ALICE, "bob").ok


def test_mentions_count_as_contacts(forum: Forum) -> None:
    for _ in range(3):
        post(forum, BOB, body="what does @alice think?")
    pid = post(forum, CAROL)
    for _ in range(2):
        comment(forum, BOB, post_id=pid, body="ask @Alice")
    assert dm(forum, ALICE, "bob").ok


def test_dms_are_noted_as_contacts(forum: Forum) -> None:
    bob_contacts_alice(forum, 5)
    assert dm(forum, ALICE, "bob", now=NOW + 10).ok
    assert list(forum.state.contacts[pair_key(BOB, ALICE)]) == [NOW + 10]


def test_contacts_older_than_the_window_do_not_count(forum: Forum) -> None:
    window = 14 * DAY
    bob_contacts_alice(forum, 4, now=NOW)
    bob_contacts_alice(forum, 1, now=NOW + 5 * DAY)
    later = NOW + window + 1
    refused(
        forum, ALICE, a.SendDm(to="bob", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED, later
    )
    # exactly at the edge the oldest contacts have expired too
    refused(
        forum,
        ALICE,
        a.SendDm(to="bob", body="hi"),
        ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED,
        NOW + window,
    )
    assert dm(forum, ALICE, "bob", now=NOW + window - 1).ok


def test_window_and_count_are_configurable() -> None:
    rules = Rules(
        rate_limits=RateLimits(enabled=False),
        proactive_contact=ProactiveContact(min_contacts=2, window_s=HOUR),
    )
    forum = make_forum(rules)
    bob_contacts_alice(forum, 2)
    refused(
        forum,
        ALICE,
        a.SendDm(to="bob", body="hi"),
        ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED,
        NOW + HOUR,
    )
    assert dm(forum, ALICE, "bob", now=NOW + HOUR - 1).ok


def test_reply_to_a_received_dm_is_always_allowed(forum: Forum) -> None:
    bob_contacts_alice(forum, 5)
    assert dm(forum, ALICE, "bob").ok
    # Bob never got any contact from Alice's side counted for him, yet may answer
    out = dm(forum, BOB, "alice", now=NOW + 30 * DAY)
    assert out.data == {"dm_id": 2, "proactive": False}
    assert forum.changes.dms_new[-1] == (2, BOB, ALICE, "hi", NOW + 30 * DAY, 0)
    # and the conversation may go on as long as each answers the other
    assert dm(forum, ALICE, "bob", now=NOW + 31 * DAY).data["proactive"] is False
    assert dm(forum, BOB, "alice", now=NOW + 32 * DAY).data["proactive"] is False


def test_second_message_while_unanswered_is_refused(forum: Forum) -> None:
    bob_contacts_alice(forum, 5)
    assert dm(forum, ALICE, "bob").ok
    bob_contacts_alice(forum, 5, now=NOW + 60)  # even with fresh contacts
    refused(
        forum,
        ALICE,
        a.SendDm(to="bob", body="again"),
        ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED,
        NOW + 120,
    )
    assert dm(forum, BOB, "alice", now=NOW + 180).ok
    assert dm(forum, ALICE, "bob", now=NOW + 240).ok


def test_zero_min_contacts_still_forbids_an_unanswered_second_message() -> None:
    rules = Rules(
        rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(min_contacts=0)
    )
    forum = make_forum(rules)
    assert dm(forum, ALICE, "bob").data == {"dm_id": 1, "proactive": True}
    refused(forum, ALICE, a.SendDm(to="bob", body="x"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)


def test_policy_disabled_allows_any_dm() -> None:
    forum = make_forum(OPEN_DMS)
    assert dm(forum, ALICE, "bob").data == {"dm_id": 1, "proactive": True}
    assert dm(forum, ALICE, "bob").data == {"dm_id": 2, "proactive": True}
    assert dm(forum, BOB, "alice").data == {"dm_id": 3, "proactive": False}
    assert forum.state.contacts == {}


@pytest.mark.parametrize("to", ["alice", "ALICE"])
def test_dm_to_self_is_invalid(to: str) -> None:
    refused(make_forum(OPEN_DMS), ALICE, a.SendDm(to=to, body="me"), ErrorCode.INVALID)


def test_dm_to_unknown_agent_is_not_found() -> None:
    refused(make_forum(OPEN_DMS), ALICE, a.SendDm(to="ghost", body="x"), ErrorCode.NOT_FOUND)


@pytest.mark.parametrize(
    "fields",
    [{"to": "bob", "body": " "}, {"to": "bob", "body": "x" * 5001}, {"to": "b", "body": "x"}],
    ids=["blank", "too-long", "bad-handle"],
)
def test_dm_model_refuses_bad_fields(fields: dict[str, Any]) -> None:
    invalid({"type": "dm", **fields})


def test_a_reply_that_mentions_its_addressee_is_one_contact(forum: Forum) -> None:
    pid = post(forum, ALICE)
    for _ in range(3):
        comment(forum, BOB, post_id=pid, body="@alice agreed")
    refused(forum, ALICE, a.SendDm(to="bob", body="hi"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)


# --- notifications ------------------------------------------------------------------------------


def test_reply_notifications(forum: Forum) -> None:
    pid = post(forum, ALICE)
    c1 = comment(forum, BOB, post_id=pid)
    c2 = comment(forum, CAROL, parent_id=c1)
    comment(forum, CAROL, parent_id=c2)  # replying to oneself: no notification
    comment(forum, ALICE, post_id=pid)  # commenting on one's own post: none either
    assert notifications(forum) == [
        (ALICE, "reply", BOB, pid, c1, None),
        (BOB, "reply", CAROL, pid, c2, None),
    ]


def test_mention_notifications(forum: Forum) -> None:
    pid = post(forum, ALICE, title="hey @Bob", body="and @carol, @bob, @ghost and @alice")
    cid = comment(forum, ALICE, post_id=pid, body="cc @carol")
    assert notifications(forum) == [
        (BOB, "mention", ALICE, pid, None, None),
        (CAROL, "mention", ALICE, pid, None, None),
        (CAROL, "mention", ALICE, pid, cid, None),
    ]


def test_dm_notification() -> None:
    forum = make_forum(OPEN_DMS)
    dm_id = dm(forum, ALICE, "bob").data["dm_id"]
    assert notifications(forum) == [(BOB, "dm", ALICE, None, None, dm_id)]


def test_notification_rows(forum: Forum) -> None:
    ok(forum, BOB, a.Follow(agent="alice"), NOW + 5)
    rows = forum.changes.notifications_new
    assert rows == [(1, ALICE, NotificationKind.FOLLOW.value, BOB, None, None, None, NOW + 5)]
    ok(forum, CAROL, a.Follow(agent="alice"), NOW + 6)
    assert [row[0] for row in rows] == [1, 2]
    assert forum.state.next_notification_id == 3


def test_refused_actions_notify_nobody(forum: Forum) -> None:
    pid = post(forum, ALICE)
    ok(forum, ALICE, a.DeletePost(post_id=pid))
    refused(forum, BOB, a.CreateComment(post_id=pid, body="@carol x"), ErrorCode.GONE)
    assert notifications(forum) == []


# --- rate limits (simulated seconds) ------------------------------------------------------------


def rate_refused(
    forum: Forum, agent_id: int, action: a.Action, now: float, retry_after: float
) -> None:
    out = refused(forum, agent_id, action, ErrorCode.RATE_LIMITED, now)
    assert out.retry_after == pytest.approx(retry_after)


def test_one_post_per_30_minutes(limited: Forum) -> None:
    action = a.CreatePost(submolt="general", title="t")
    ok(limited, ALICE, action, NOW)
    rate_refused(limited, ALICE, action, NOW + 60, 30 * MINUTE - 60)
    rate_refused(limited, ALICE, action, NOW + 30 * MINUTE - 1, 1)
    ok(limited, BOB, action, NOW + 60)  # limits are per agent
    ok(limited, ALICE, action, NOW + 30 * MINUTE)  # refusals did not push the window


def test_one_comment_per_20_seconds(limited: Forum) -> None:
    pid = post(limited, ALICE)
    action = a.CreateComment(post_id=pid, body="x")
    ok(limited, BOB, action, NOW)
    rate_refused(limited, BOB, action, NOW + 5, 15)
    ok(limited, BOB, action, NOW + 20)


def test_fifty_comments_per_day(limited: Forum) -> None:
    pid = post(limited, ALICE)
    action = a.CreateComment(post_id=pid, body="x")
    for i in range(50):
        ok(limited, BOB, action, NOW + 20 * i)
    at = NOW + 20 * 50
    rate_refused(limited, BOB, action, at, DAY - 20 * 50)
    ok(limited, BOB, action, NOW + DAY)
    assert limited.state.agents[BOB].comment_count == 51


def test_one_submolt_per_hour(limited: Forum) -> None:
    ok(limited, ALICE, a.CreateSubmolt(name="one"), NOW)
    rate_refused(limited, ALICE, a.CreateSubmolt(name="two"), NOW + 10, HOUR - 10)
    ok(limited, ALICE, a.CreateSubmolt(name="two"), NOW + HOUR)


def test_sixty_reads_per_minute(limited: Forum) -> None:
    for i in range(60):
        assert limited.apply(ALICE, a.Feed(), NOW + i / 2).ok
    rate_refused(limited, ALICE, a.Feed(), NOW + 30, 30)
    rate_refused(limited, ALICE, a.Notifications(), NOW + 59.5, 0.5)
    ok(limited, ALICE, a.UpdateProfile(bio="reads do not count as writes"), NOW + 30)
    assert limited.apply(ALICE, a.Search(q="again"), NOW + 60).ok


def test_thirty_writes_per_minute(limited: Forum) -> None:
    pid = post(limited, BOB)
    for i in range(15):
        ok(limited, ALICE, a.UpdateProfile(bio=str(i)), NOW + i)
        assert vote(limited, ALICE, "post", pid, 1 - 2 * (i % 2), NOW + i).ok
    rate_refused(limited, ALICE, a.UpdateProfile(bio="x"), NOW + 30, 30)
    rate_refused(limited, ALICE, a.Follow(agent="bob"), NOW + 59, 1)
    assert limited.apply(ALICE, a.Feed(), NOW + 30).ok  # reads have their own bucket
    ok(limited, ALICE, a.Follow(agent="bob"), NOW + 60)


def test_new_agents_post_once_per_two_hours(limited: Forum) -> None:
    newbie = limited.register_agent("newbie", KEY, NOW)
    action = a.CreatePost(submolt="general", title="t")
    ok(limited, newbie, action, NOW + 1)
    rate_refused(limited, newbie, action, NOW + 1 + 30 * MINUTE, 90 * MINUTE)
    ok(limited, newbie, action, NOW + 1 + 2 * HOUR)


def test_new_agents_comment_twenty_times_a_day(limited: Forum) -> None:
    newbie = limited.register_agent("newbie", KEY, NOW)
    pid = post(limited, ALICE)
    action = a.CreateComment(post_id=pid, body="x")
    for i in range(20):
        ok(limited, newbie, action, NOW + 20 * i)
    rate_refused(limited, newbie, action, NOW + 400, DAY - 400)


def test_new_agents_may_not_dm() -> None:
    forum = make_forum(Rules(proactive_contact=ProactiveContact(enabled=False)))
    newbie = forum.register_agent("newbie", KEY, NOW)
    rate_refused(forum, newbie, a.SendDm(to="bob", body="x"), NOW + HOUR, DAY - HOUR)
    # the age limit is the only thing in the way: a sim-day later it is lifted
    assert dm(forum, newbie, "bob", now=NOW + DAY).ok


def test_new_agent_dms_can_be_allowed() -> None:
    rules = Rules(
        rate_limits=RateLimits(new_agent_may_dm=True),
        proactive_contact=ProactiveContact(enabled=False),
    )
    forum = make_forum(rules)
    newbie = forum.register_agent("newbie", KEY, NOW)
    assert dm(forum, newbie, "bob", now=NOW + 1).ok


def test_agents_stop_being_new_after_a_day(limited: Forum) -> None:
    newbie = limited.register_agent("newbie", KEY, NOW)
    action = a.CreatePost(submolt="general", title="t")
    ok(limited, newbie, action, NOW + DAY - 30 * MINUTE)
    # now a grown-up: the 30-minute interval applies
    ok(limited, newbie, action, NOW + DAY)


def test_retrying_after_retry_after_succeeds(limited: Forum) -> None:
    action = a.CreatePost(submolt="general", title="t")
    ok(limited, ALICE, action, NOW)
    out = limited.apply(ALICE, action, NOW + 123.5)
    assert out.retry_after is not None
    ok(limited, ALICE, action, NOW + 123.5 + out.retry_after)


def test_refused_actions_do_not_consume_limits(limited: Forum) -> None:
    pid = post(limited, ALICE)
    ok(limited, ALICE, a.DeletePost(post_id=pid), NOW + 1)
    # refused for other reasons at the same instant: nothing is recorded
    refused(limited, BOB, a.CreatePost(submolt="nope", title="t"), ErrorCode.NOT_FOUND)
    refused(limited, BOB, a.CreateComment(post_id=pid, body="x"), ErrorCode.GONE, NOW + 2)
    refused(limited, BOB, a.Follow(agent="bob"), ErrorCode.INVALID)
    refused(limited, BOB, a.SendDm(to="alice", body="x"), ErrorCode.PROACTIVE_CONTACT_NOT_ALLOWED)
    assert limited.state.agents[BOB].rate == {}
    ok(limited, BOB, a.CreatePost(submolt="general", title="t"), NOW + 2)
    # refused by a rate limit: the retry time is unchanged by the attempts
    for t in (10.0, 20.0, 1000.0):
        rate_refused(
            limited, BOB, a.CreatePost(submolt="general", title="t"), NOW + t, 1800 + 2 - t
        )
    # a full write bucket refuses a comment without using the comment allowance
    pid2 = post(limited, ALICE, now=NOW + 2000)
    for i in range(30):
        ok(limited, CAROL, a.UpdateProfile(bio=str(i)), NOW + 2000)
    rate_refused(limited, CAROL, a.CreateComment(post_id=pid2, body="x"), NOW + 2001, 59)
    assert "comment" not in limited.state.agents[CAROL].rate
    ok(limited, CAROL, a.CreateComment(post_id=pid2, body="x"), NOW + 2060)


def test_rate_limits_can_be_disabled() -> None:
    forum = make_forum(NO_LIMITS)
    pid = post(forum, ALICE)
    for _ in range(100):
        post(forum, ALICE)
        comment(forum, BOB, post_id=pid)
        assert forum.apply(CAROL, a.Feed(), NOW).ok
    ok(forum, ALICE, a.CreateSubmolt(name="one"))
    ok(forum, ALICE, a.CreateSubmolt(name="two"))
    assert all(agent.rate == {} for agent in forum.state.agents.values())


def test_a_zero_allowance_refuses_outright() -> None:
    rules = Rules(rate_limits=RateLimits(comments_per_day=0))
    forum = make_forum(rules)
    pid = post(forum, ALICE)
    out = refused(forum, BOB, a.CreateComment(post_id=pid, body="x"), ErrorCode.RATE_LIMITED)
    assert out.retry_after is None


def test_disabled_rate_limits_let_new_agents_dm() -> None:
    forum = make_forum(OPEN_DMS)
    newbie = forum.register_agent("newbie", KEY, NOW)
    assert dm(forum, newbie, "bob", now=NOW + 1).ok


def test_retry_after_covers_every_limit_in_the_way(limited: Forum) -> None:
    ok(limited, ALICE, a.CreatePost(submolt="general", title="t"), NOW)
    for i in range(29):
        ok(limited, ALICE, a.UpdateProfile(bio=str(i)), NOW + 1)
    rate_refused(limited, ALICE, a.CreatePost(submolt="general", title="t"), NOW + 2, 1798)


def test_a_vote_value_must_be_an_integer() -> None:
    for value in (True, 1.0, "1"):
        with pytest.raises(ValidationError):
            a.ACTION_ADAPTER.validate_python(
                {"type": "vote", "target": "post", "id": 1, "value": value}
            )


def test_comments_of_a_deleted_post_take_no_more_votes(forum: Forum) -> None:
    post_id = post(forum, BOB)
    comment_id = ok(forum, BOB, a.CreateComment(post_id=post_id, body="first"))["comment_id"]
    ok(forum, BOB, a.DeletePost(post_id=post_id))
    outcome = forum.apply(ALICE, a.Vote(target="comment", id=comment_id, value=1), NOW)
    assert outcome.code == ErrorCode.GONE
