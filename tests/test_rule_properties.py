"""Property tests of the forum's rules: random action sequences from several agents.

After every step the bookkeeping must add up (scores, ups/downs, karma, counts, threads), and
a refused action must leave the state and the pending changes exactly as they were.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import fields, is_dataclass
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from moltsim.domain import actions as a
from moltsim.domain.entities import Status
from moltsim.engine.forum import Forum
from moltsim.engine.ranking import HOT_EPOCH, HOT_TIME_SCALE, hot
from moltsim.engine.rules import DAY, HOUR, ProactiveContact, RateLimits, Rules
from moltsim.engine.state import AGENT_BITS, AgentState
from tests.test_rules import _windows

T0 = 1_800_000_000.0
START = T0 + 3 * DAY
KEY = bytes(32)
HANDLES = ("ann", "ben", "cat", "dan")
"""Ann, Ben and Cat register at T0; Dan an hour before START, so he is still a new agent."""
AGENT_IDS = (1, 1, 2, 2, 3, 3, 4, 99)
"""The four agents (weighted), and one that is not registered."""
LOW_MASK = (1 << AGENT_BITS) - 1

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # no explain phase: it costs many extra runs when a long script fails
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)

# --- strategies ---------------------------------------------------------------------------------

ids = st.integers(min_value=1, max_value=5)
maybe_ids = st.none() | ids
handles = st.sampled_from((*HANDLES, "ghost", "ANN"))
submolts = st.sampled_from(("general", "ideas", "misc", "nope"))
owned = st.sampled_from(("ideas", "misc"))
bodies = st.sampled_from(("plain", "hi @ben", "@ann and @cat", "@Dan @ghost", "@ben @ben"))
votes = st.builds(
    a.Vote,
    target=st.sampled_from(("post", "comment")),
    id=ids,
    value=st.sampled_from((-1, 0, 1)),
)
comments = (
    st.tuples(maybe_ids, maybe_ids, bodies)
    .filter(lambda t: t[0] is not None or t[1] is not None)
    .map(lambda t: a.CreateComment(post_id=t[0], parent_id=t[1], body=t[2]))
)
posts = st.builds(a.CreatePost, submolt=submolts, title=st.just("title"), body=bodies)

actions: st.SearchStrategy[a.Action] = st.one_of(  # repeated branches are drawn more often
    posts,
    posts,
    comments,
    comments,
    comments,
    votes,
    votes,
    votes,
    votes,
    st.builds(a.CreateSubmolt, name=submolts),
    st.builds(a.Subscribe, submolt=submolts),
    st.builds(a.Unsubscribe, submolt=submolts),
    st.builds(a.Follow, agent=handles),
    st.builds(a.Unfollow, agent=handles),
    st.builds(a.UpdateProfile, bio=st.just("bio")),
    st.builds(a.SendDm, to=handles, body=st.just("hello")),
    st.builds(a.DeletePost, post_id=ids),
    st.builds(a.DeletePost, post_id=ids),
    st.builds(a.DeleteComment, comment_id=ids),
    st.builds(a.PinPost, submolt=owned, post_id=ids),
    st.builds(a.PinPost, submolt=owned, post_id=ids),
    st.builds(a.UnpinPost, submolt=owned, post_id=ids),
    st.builds(a.RemovePost, submolt=owned, post_id=ids),
    st.builds(a.RemovePost, submolt=owned, post_id=ids),
    st.builds(a.RemoveComment, submolt=owned, comment_id=ids),
    st.builds(a.AddModerator, submolt=owned, agent=handles),
    st.builds(a.RemoveModerator, submolt=owned, agent=handles),
    st.builds(a.Feed),
)
delays = st.sampled_from((0.0, 0.0, 1.0, 10.0, 25.0, 90.0, 1_000.0, 2_000.0, 7_300.0, 3 * DAY))
steps = st.lists(st.tuples(st.sampled_from(AGENT_IDS), delays, actions), min_size=10, max_size=40)
rules_strategy = st.builds(
    Rules,
    rate_limits=st.sampled_from((RateLimits(), RateLimits(enabled=False))),
    proactive_contact=st.sampled_from(
        (ProactiveContact(), ProactiveContact(min_contacts=1), ProactiveContact(enabled=False))
    ),
    allow_self_votes=st.booleans(),
    max_pinned_per_submolt=st.sampled_from((1, 3)),
)

PRELUDE: tuple[tuple[int, a.Action], ...] = (
    (1, a.CreateSubmolt(name="ideas")),
    (2, a.CreateSubmolt(name="misc")),
    (1, a.AddModerator(submolt="ideas", agent="cat")),
    (1, a.CreatePost(submolt="ideas", title="p1")),
    (2, a.CreatePost(submolt="misc", title="p2")),
    (3, a.CreatePost(submolt="general", title="p3")),
    (1, a.CreatePost(submolt="general", title="p4", body="@ben look")),
    (2, a.CreateComment(post_id=1, body="c1")),
    (3, a.CreateComment(parent_id=1, body="c2")),
    (1, a.CreateComment(post_id=2, body="c3")),
    (2, a.CreateComment(post_id=3, body="c4")),
    (3, a.PinPost(submolt="ideas", post_id=1)),
    (2, a.PinPost(submolt="misc", post_id=2)),
)
"""Ann owns m/ideas (Cat moderates it), Ben owns m/misc; posts 1-4 and comments 1-4 exist;
post 1 is pinned in m/ideas, post 2 in m/misc."""

# --- helpers ------------------------------------------------------------------------------------


def make_forum(rules: Rules) -> Forum:
    forum = Forum(rules)
    for handle in HANDLES[:3]:
        forum.register_agent(handle, KEY, T0)
    forum.register_agent(HANDLES[3], KEY, START - HOUR)
    forum.seed_submolt("general", T0)
    for i, (agent_id, action) in enumerate(PRELUDE):
        out = forum.apply(agent_id, action, T0 + DAY + 2 * HOUR * i)
        assert out.ok, (action, out)
    return forum


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The fields to compare of a dataclass type; ``None`` for any other type."""
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = (
            # an agent's rate-limit times are compared separately, see live_rates()
            tuple(f.name for f in fields(cls) if not (cls is AgentState and f.name == "rate"))
            if is_dataclass(cls)
            else None
        )
    return _FIELD_NAMES[cls]


def _freeze(value: Any) -> Any:
    """A deep, comparable copy: dataclasses to tuples, lists and deques to tuples, sets to
    frozensets (much faster than ``copy.deepcopy``, which matters when hypothesis shrinks)."""
    cls = type(value)
    if cls is dict:
        return {k: _freeze(v) for k, v in value.items()}
    if cls is list or cls is deque:
        return tuple(value)  # the engine's lists and deques hold ids, times or row tuples
    if cls is set:
        return frozenset(value)
    names = _field_names(cls)
    if names is None:
        return value  # numbers, strings, enums, row tuples: immutable
    return (cls.__name__, *[_freeze(getattr(value, n)) for n in names])


def live_rates(forum: Forum, now: float) -> dict[int, dict[str, tuple[float, ...]]]:
    """Each agent's rate-limit times still inside their window at ``now``. Expired ones are
    left out: checking a limit may prune them, which changes nothing that matters."""
    rates = {}
    for agent in forum.state.agents.values():
        windows = _windows(forum, agent.created_at, now)
        rates[agent.id] = {
            name: tuple(t for t in times if t > now - windows[name])
            for name, times in agent.rate.items()
        }
    return rates


def frozen(forum: Forum) -> tuple[Any, Any]:
    """State (less rate-limit times) and pending changes, frozen for comparison."""
    return _freeze(forum.state), _freeze(forum.changes)


def formula(score: int, created_at: float) -> float:
    sign = (score > 0) - (score < 0)
    return sign * math.log10(max(abs(score), 1)) + (created_at - HOT_EPOCH) / HOT_TIME_SCALE


def assert_hot_orders_like_the_formula(items: list[tuple[int, float]]) -> None:
    """``hot`` is the formula rounded to 7 decimals: equal to it within half a unit of the last
    place, and ordering items the same way (ties only where the formula values are that close)."""
    hs = [hot(s, t) for s, t in items]
    fs = [formula(s, t) for s, t in items]
    for h, f in zip(hs, fs, strict=True):
        assert abs(h - f) <= 5e-8 + 1e-9
    for i in range(len(items)):
        for j in range(len(items)):
            if fs[i] < fs[j]:
                assert hs[i] <= hs[j]
            if fs[i] < fs[j] - 1e-7:
                assert hs[i] < hs[j]
            if hs[i] < hs[j]:
                assert fs[i] < fs[j]
    by_hot = sorted(range(len(items)), key=lambda i: (-hs[i], i))
    by_formula = sorted(range(len(items)), key=lambda i: (-fs[i], i))
    distinct = sorted(set(fs))
    if all(b - a_ > 1e-7 for a_, b in pairwise(distinct)):
        assert by_hot == by_formula


def check_invariants(forum: Forum) -> None:
    st_ = forum.state
    rules = forum.rules

    post_votes: dict[int, list[int]] = {pid: [] for pid in st_.posts}
    for key, value in st_.post_votes.items():
        assert value in (1, -1)
        post_votes[key >> AGENT_BITS].append(value)
        if not rules.allow_self_votes:
            assert st_.posts[key >> AGENT_BITS].author_id != key & LOW_MASK
    for pid, p in st_.posts.items():
        vs = post_votes[pid]
        assert p.score == sum(vs)
        assert (p.ups, p.downs) == (vs.count(1), vs.count(-1))

    comment_votes: dict[int, list[int]] = {cid: [] for cid in st_.comments}
    for key, value in st_.comment_votes.items():
        assert value in (1, -1)
        comment_votes[key >> AGENT_BITS].append(value)
        if not rules.allow_self_votes:
            assert st_.comments[key >> AGENT_BITS].author_id != key & LOW_MASK
    for cid, c in st_.comments.items():
        vs = comment_votes[cid]
        assert c.score == sum(vs)
        assert (c.ups, c.downs) == (vs.count(1), vs.count(-1))
        assert c.post_id in st_.posts
        if c.parent_id is None:
            assert c.depth == 0
        else:
            parent = st_.comments[c.parent_id]
            assert parent.id < c.id
            assert c.post_id == parent.post_id
            assert c.depth == parent.depth + 1

    karma: Counter[int] = Counter()
    for p in st_.posts.values():
        karma[p.author_id] += p.score
    for c in st_.comments.values():
        karma[c.author_id] += c.score
    for agent in st_.agents.values():
        assert agent.karma == karma[agent.id]
        assert agent.post_count == sum(p.author_id == agent.id for p in st_.posts.values())
        assert agent.comment_count == sum(c.author_id == agent.id for c in st_.comments.values())
        followers = sum(k >> AGENT_BITS == agent.id for k in st_.follows)
        following = sum(k & LOW_MASK == agent.id for k in st_.follows)
        assert (agent.follower_count, agent.following_count) == (followers, following)
        assert st_.handles[agent.handle.lower()] == agent.id

    for p in st_.posts.values():
        assert p.comment_count == sum(c.post_id == p.id for c in st_.comments.values())

    assert set(st_.submolts_by_id) == {s.id for s in st_.submolts.values()}
    for sub in st_.submolts.values():
        assert st_.submolts_by_id[sub.id] is sub
        assert sub.subscriber_count == len(sub.subscribers)
        assert sub.post_count == sum(p.submolt_id == sub.id for p in st_.posts.values())
        assert len(sub.pinned) <= rules.max_pinned_per_submolt
        assert len(set(sub.pinned)) == len(sub.pinned)
        assert sub.owner_id not in sub.moderators
        pinned_here = {p.id for p in st_.posts.values() if p.submolt_id == sub.id and p.pinned}
        assert set(sub.pinned) == pinned_here
        for pid in sub.pinned:
            assert st_.posts[pid].status == Status.VISIBLE

    notification_ids = [row[0] for row in forum.changes.notifications_new]
    assert notification_ids == list(range(1, st_.next_notification_id))
    assert all(row[1] != row[3] for row in forum.changes.notifications_new), "self-notification"
    dm_ids = [row[0] for row in forum.changes.dms_new]
    assert dm_ids == list(range(1, st_.next_dm_id))


# --- properties ---------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(rules=rules_strategy, script=steps)
def test_bookkeeping_holds_and_refusals_leave_no_trace(
    rules: Rules, script: list[tuple[int, float, a.Action]]
) -> None:
    forum = make_forum(rules)
    now = START
    check_invariants(forum)
    state = frozen(forum)
    for agent_id, delay, action in script:
        now += delay
        rates = live_rates(forum, now)
        out = forum.apply(agent_id, action, now)
        previous, state = state, frozen(forum)
        if not out.ok:
            assert out.code is not None
            assert state == previous, f"{action!r} refused with {out.code} changed state"
            assert live_rates(forum, now) == rates, f"{action!r} refused used a rate limit"
        else:
            assert out.code is None
        check_invariants(forum)
    items = [(p.score, p.created_at) for p in forum.state.posts.values()]
    assert_hot_orders_like_the_formula(items)


@PROPERTY_SETTINGS
@given(
    votes_cast=st.lists(
        st.tuples(
            st.sampled_from((2, 3, 4)),
            st.sampled_from(("post", "comment")),
            st.sampled_from((-1, 0, 1)),
        ),
        max_size=60,
    )
)
def test_score_is_the_sum_of_the_latest_votes(
    votes_cast: list[tuple[int, str, int]],
) -> None:
    forum = make_forum(Rules(rate_limits=RateLimits(enabled=False)))
    pid = forum.apply(1, a.CreatePost(submolt="general", title="t"), START).data["post_id"]
    cid = forum.apply(1, a.CreateComment(post_id=pid, body="c"), START).data["comment_id"]
    latest: dict[tuple[int, str], int] = {}
    for voter, target, value in votes_cast:
        action = a.ACTION_ADAPTER.validate_python(
            {
                "type": "vote",
                "target": target,
                "id": pid if target == "post" else cid,
                "value": value,
            }
        )
        out = forum.apply(voter, action, START)
        assert out.ok
        latest[voter, target] = value
        item = forum.state.posts[pid] if target == "post" else forum.state.comments[cid]
        expected = sum(v for (_, t), v in latest.items() if t == target)
        assert out.data == {"score": expected}
        assert item.score == expected
    assert forum.state.agents[1].karma == sum(latest.values())


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(10**6), max_value=10**6),
            st.floats(min_value=1.0e9, max_value=2.5e9, allow_nan=False, allow_infinity=False),
        ),
        max_size=30,
    )
)
def test_hot_orders_like_the_formula(items: list[tuple[int, float]]) -> None:
    assert_hot_orders_like_the_formula(items)


def test_hot_examples() -> None:
    t = START
    assert hot(0, t) == round((t - HOT_EPOCH) / HOT_TIME_SCALE, 7)
    assert hot(1, t) == hot(0, t) == hot(-1, t)
    assert hot(10, t) == round(hot(1, t) + 1, 7)
    assert hot(-10, t) == round(hot(-1, t) - 1, 7)
    # ten times the votes are worth 45,000 s (12.5 h) of age
    assert hot(10, t) == hot(1, t + HOT_TIME_SCALE)
    assert hot(2, t) > hot(1, t) > hot(-2, t)
    assert hot(1, t + 1) > hot(1, t)
