"""Rebuild the engine's in-memory working set from a run file (on start and on resume)."""

from __future__ import annotations

import sqlite3
from collections import deque
from pathlib import Path

from moltsim.domain.actions import QUERY_TYPES, mentions
from moltsim.domain.entities import Status
from moltsim.engine.rules import DAY, Rules
from moltsim.engine.state import (
    AgentState,
    CommentState,
    ForumState,
    PostState,
    SubmoltState,
    pair_key,
)
from moltsim.store.reader import open_readonly

_RATE_BUCKETS = {
    "post": ("post",),
    "comment": ("comment", "comment_day"),
    "create_submolt": ("submolt",),
}


def load_state(path: str | Path, rules: Rules) -> tuple[ForumState, float]:
    """The forum's working state and the latest sim time found in the ledger."""
    conn = open_readonly(path)
    try:
        return _load(conn, rules)
    finally:
        conn.close()


def load_rules(path: str | Path) -> Rules | None:
    """The rules saved with the run (``run_meta.rules``), if any."""
    conn = open_readonly(path)
    try:
        row = conn.execute("SELECT value FROM run_meta WHERE key = 'rules'").fetchone()
    finally:
        conn.close()
    return None if row is None else Rules.model_validate_json(row[0])


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0])


def _load(conn: sqlite3.Connection, rules: Rules) -> tuple[ForumState, float]:
    st = ForumState()
    for row in conn.execute(
        "SELECT id, handle, display_name, bio, created_at, karma, post_count, comment_count,"
        " follower_count, following_count, objects_to_training, public_key, pool FROM agents"
    ):
        agent = AgentState(
            id=row[0], handle=row[1], display_name=row[2], bio=row[3], created_at=row[4],
            karma=row[5], post_count=row[6], comment_count=row[7], follower_count=row[8],
            following_count=row[9], objects_to_training=bool(row[10]), public_key=row[11],
            pool=row[12],
        )  # fmt: skip
        st.agents[agent.id] = agent
        st.handles[agent.handle.lower()] = agent.id
    for sub_id, name, owner_id, created_at, subs, posts in conn.execute(
        "SELECT id, name, owner_id, created_at, subscriber_count, post_count FROM submolts"
    ):
        sub = SubmoltState(sub_id, name, owner_id, created_at, subs, posts)
        st.submolts[name] = sub
        st.submolts_by_id[sub_id] = sub
    for sub_id, agent_id, role in conn.execute(
        "SELECT submolt_id, agent_id, role FROM memberships"
    ):
        sub = st.submolts_by_id[sub_id]
        if role == "moderator":
            sub.moderators.add(agent_id)
        elif role == "subscriber":
            sub.subscribers.add(agent_id)
    posts = st.posts
    for row in conn.execute(
        "SELECT id, submolt_id, author_id, created_at, score, ups, downs, comment_count, status,"
        " pinned FROM posts"
    ):
        post = PostState(
            id=row[0], submolt_id=row[1], author_id=row[2], created_at=row[3], score=row[4],
            ups=row[5], downs=row[6], comment_count=row[7], status=Status(row[8]),
            pinned=bool(row[9]),
        )  # fmt: skip
        posts[post.id] = post
        if post.pinned:
            st.submolts_by_id[post.submolt_id].pinned.append(post.id)
    comments = st.comments
    for row in conn.execute(
        "SELECT id, post_id, parent_id, author_id, created_at, depth, score, ups, downs, status"
        " FROM comments"
    ):
        comments[row[0]] = CommentState(
            id=row[0], post_id=row[1], parent_id=row[2], author_id=row[3], created_at=row[4],
            depth=row[5], score=row[6], ups=row[7], downs=row[8], status=Status(row[9]),
        )  # fmt: skip
    post_votes, comment_votes = st.post_votes, st.comment_votes
    for kind, target_id, agent_id, value in conn.execute(
        "SELECT target_kind, target_id, agent_id, value FROM votes"
    ):
        votes = post_votes if kind == "post" else comment_votes
        votes[pair_key(target_id, agent_id)] = value
    for follower, followee, since in conn.execute(
        "SELECT follower_id, followee_id, created_at FROM follows"
    ):
        st.follows[pair_key(followee, follower)] = since
    for sender, recipient in conn.execute("SELECT sender_id, recipient_id FROM dms ORDER BY id"):
        st.last_dm_sender[(min(sender, recipient), max(sender, recipient))] = sender

    now = float(conn.execute("SELECT COALESCE(MAX(sim_time), 0) FROM actions").fetchone()[0])
    _load_contacts(conn, st, rules, now)
    _load_rates(conn, st, rules, now)
    st.next_agent_id = _next_id(conn, "agents")
    st.next_submolt_id = _next_id(conn, "submolts")
    st.next_post_id = _next_id(conn, "posts")
    st.next_comment_id = _next_id(conn, "comments")
    st.next_dm_id = _next_id(conn, "dms")
    st.next_notification_id = _next_id(conn, "notifications")
    st.next_action_id = _next_id(conn, "actions")
    st.next_llm_call_id = _next_id(conn, "llm_calls")
    return st, now


def _load_contacts(conn: sqlite3.Connection, st: ForumState, rules: Rules, now: float) -> None:
    """Recent contacts (DMs, replies, mentions), for the proactive-contact policy."""
    policy = rules.proactive_contact
    if not policy.enabled or policy.min_contacts == 0:
        return
    since = now - policy.window_s
    events: list[tuple[float, int, int]] = []  # (time, from, to)
    events += conn.execute(
        "SELECT created_at, sender_id, recipient_id FROM dms WHERE created_at > ?", (since,)
    ).fetchall()
    replies = conn.execute(
        "SELECT c.created_at, c.author_id, COALESCE(pc.author_id, p.author_id), c.body"
        " FROM comments c JOIN posts p ON p.id = c.post_id"
        " LEFT JOIN comments pc ON pc.id = c.parent_id WHERE c.created_at > ?",
        (since,),
    ).fetchall()
    texts: list[tuple[float, int, str, int | None]] = [
        (at, author, f"{title}\n{body}", None)
        for at, author, title, body in conn.execute(
            "SELECT created_at, author_id, title, body FROM posts WHERE created_at > ?", (since,)
        )
    ]
    for at, author, replied_to, body in replies:
        events.append((at, author, replied_to))
        texts.append((at, author, body, replied_to))
    # As in the rules: a mention of the agent being replied to is not a second contact.
    for created_at, author_id, text, skip in texts:
        for handle in mentions(text):
            target = st.handles.get(handle)
            if target is not None and target != skip:
                events.append((created_at, author_id, target))
    for created_at, from_id, to_id in sorted(events):
        if from_id == to_id:
            continue
        key = pair_key(to_id, from_id)
        times = st.contacts.get(key)
        if times is None:
            times = st.contacts[key] = deque(maxlen=policy.min_contacts)
        times.append(created_at)


def _load_rates(conn: sqlite3.Connection, st: ForumState, rules: Rules, now: float) -> None:
    """Rate-limit windows from the last sim-day of accepted actions in the ledger."""
    if not rules.rate_limits.enabled:
        return
    for agent_id, kind, at in conn.execute(
        "SELECT agent_id, type, sim_time FROM actions"
        " WHERE sim_time > ? AND outcome = 'ok' AND agent_id IS NOT NULL ORDER BY id",
        (now - DAY,),
    ):
        agent = st.agents.get(agent_id)
        if agent is None or kind in ("register", "objection"):
            continue
        buckets = ("read",) if kind in QUERY_TYPES else ("write", *_RATE_BUCKETS.get(kind, ()))
        for bucket in buckets:
            agent.rate.setdefault(bucket, deque()).append(at)
