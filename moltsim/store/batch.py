"""Turn the engine's :class:`~moltsim.engine.state.Changes` into SQL for one group commit.

This runs on the event loop, before the batch goes to the writer thread, so that it reads the
in-memory state as it was when the batch was taken.
"""

from __future__ import annotations

from moltsim.domain.entities import Role
from moltsim.engine.ranking import hot
from moltsim.engine.state import AGENT_BITS, Changes, ForumState, Row

Statement = tuple[str, list[Row]]

_MASK = (1 << AGENT_BITS) - 1

INSERT_AGENT = (
    "INSERT INTO agents (id, handle, display_name, bio, public_key, persona, owner, pool,"
    " objects_to_training, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SUBMOLT = (
    "INSERT INTO submolts (id, name, title, description, owner_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_POST = (
    "INSERT INTO posts (id, submolt_id, author_id, title, body, url, created_at, hot)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_POST_FTS = "INSERT INTO posts_fts (rowid, title, body) VALUES (?, ?, ?)"
INSERT_COMMENT = (
    "INSERT INTO comments (id, post_id, parent_id, author_id, body, created_at, depth)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_COMMENT_FTS = "INSERT INTO comments_fts (rowid, body) VALUES (?, ?)"
INSERT_DM = (
    "INSERT INTO dms (id, sender_id, recipient_id, body, created_at, proactive)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_NOTIFICATION = (
    "INSERT INTO notifications (id, agent_id, kind, actor_id, post_id, comment_id, dm_id,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ACTION = (
    "INSERT INTO actions (id, sim_time, wall_time, agent_id, seq, type, payload, sig, outcome,"
    " message, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_LLM_CALL = (
    "INSERT INTO llm_calls (id, agent_id, sim_time, model, prompt_tokens, completion_tokens,"
    " latency_ms, outcome, estimated, error, queue_ms, server_ms, cached_tokens, mode, endpoint,"
    " request, answers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_VOTE = (
    "INSERT INTO votes (target_kind, target_id, agent_id, value, voted_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (target_kind, target_id, agent_id)"
    " DO UPDATE SET value = excluded.value, voted_at = excluded.voted_at"
)
DELETE_VOTE = "DELETE FROM votes WHERE target_kind = ? AND target_id = ? AND agent_id = ?"
INSERT_FOLLOW = (
    "INSERT OR REPLACE INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)"
)
DELETE_FOLLOW = "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?"
INSERT_MEMBERSHIP = (
    "INSERT OR IGNORE INTO memberships (submolt_id, agent_id, role) VALUES (?, ?, ?)"
)
DELETE_MEMBERSHIP = "DELETE FROM memberships WHERE submolt_id = ? AND agent_id = ? AND role = ?"
UPDATE_AGENT = (
    "UPDATE agents SET display_name = ?, bio = ?, karma = ?, post_count = ?, comment_count = ?,"
    " follower_count = ?, following_count = ? WHERE id = ?"
)
UPDATE_OBJECTION = "UPDATE agents SET objects_to_training = 1, objected_at = ? WHERE id = ?"
UPDATE_SUBMOLT = "UPDATE submolts SET subscriber_count = ?, post_count = ? WHERE id = ?"
UPDATE_POST_SCORE = "UPDATE posts SET score = ?, ups = ?, downs = ?, hot = ? WHERE id = ?"
UPDATE_POST_COUNT = "UPDATE posts SET comment_count = ? WHERE id = ?"
UPDATE_POST_META = "UPDATE posts SET status = ?, pinned = ? WHERE id = ?"
UPDATE_COMMENT_SCORE = "UPDATE comments SET score = ?, ups = ?, downs = ? WHERE id = ?"
UPDATE_COMMENT_META = "UPDATE comments SET status = ? WHERE id = ?"


def build_batch(ch: Changes, st: ForumState) -> list[Statement]:
    """SQL and parameters, inserts first, that bring the run file up to ``st``."""
    out: list[Statement] = []

    def add(sql: str, rows: list[Row]) -> None:
        if rows:
            out.append((sql, rows))

    add(INSERT_AGENT, ch.agents_new)
    add(INSERT_SUBMOLT, ch.submolts_new)
    add(INSERT_POST, ch.posts_new)
    add(INSERT_POST_FTS, [(r[0], r[3], r[4]) for r in ch.posts_new])
    add(INSERT_COMMENT, ch.comments_new)
    add(INSERT_COMMENT_FTS, [(r[0], r[4]) for r in ch.comments_new])
    add(INSERT_DM, ch.dms_new)
    add(INSERT_NOTIFICATION, ch.notifications_new)
    add(INSERT_LLM_CALL, ch.llm_calls_new)

    memberships_in: list[Row] = []
    memberships_out: list[Row] = []
    for sub_id, agent_id, role in ch.memberships_dirty:
        sub = st.submolts_by_id[sub_id]
        if role is Role.OWNER:
            present = sub.owner_id == agent_id
        elif role is Role.MODERATOR:
            present = agent_id in sub.moderators
        else:
            present = agent_id in sub.subscribers
        (memberships_in if present else memberships_out).append((sub_id, agent_id, role.value))
    add(INSERT_MEMBERSHIP, memberships_in)
    add(DELETE_MEMBERSHIP, memberships_out)

    for kind, dirty, votes in (
        ("post", ch.post_votes_dirty, st.post_votes),
        ("comment", ch.comment_votes_dirty, st.comment_votes),
    ):
        upserts: list[Row] = []
        deletes: list[Row] = []
        for key, voted_at in dirty.items():
            target_id, agent_id = key >> AGENT_BITS, key & _MASK
            value = votes.get(key)
            if value is None:
                deletes.append((kind, target_id, agent_id))
            else:
                upserts.append((kind, target_id, agent_id, value, voted_at))
        add(UPSERT_VOTE, upserts)
        add(DELETE_VOTE, deletes)

    follows_in: list[Row] = []
    follows_out: list[Row] = []
    for key in ch.follows_dirty:
        followee, follower = key >> AGENT_BITS, key & _MASK
        since = st.follows.get(key)
        if since is None:
            follows_out.append((follower, followee))
        else:
            follows_in.append((follower, followee, since))
    add(INSERT_FOLLOW, follows_in)
    add(DELETE_FOLLOW, follows_out)

    agents = st.agents
    add(
        UPDATE_AGENT,
        [
            (ag.display_name, ag.bio, ag.karma, ag.post_count, ag.comment_count,
             ag.follower_count, ag.following_count, ag.id)
            for ag in map(agents.__getitem__, ch.agents_dirty)
        ],
    )  # fmt: skip
    add(UPDATE_OBJECTION, ch.agents_objected)
    subs = st.submolts_by_id
    add(
        UPDATE_SUBMOLT,
        [
            (s.subscriber_count, s.post_count, s.id)
            for s in map(subs.__getitem__, ch.submolts_dirty)
        ],
    )
    posts = st.posts
    add(
        UPDATE_POST_SCORE,
        [
            (p.score, p.ups, p.downs, hot(p.score, p.created_at), p.id)
            for p in map(posts.__getitem__, ch.post_scores_dirty)
        ],
    )
    add(
        UPDATE_POST_COUNT,
        [(p.comment_count, p.id) for p in map(posts.__getitem__, ch.post_counts_dirty)],
    )
    add(
        UPDATE_POST_META,
        [(int(p.status), int(p.pinned), p.id) for p in map(posts.__getitem__, ch.post_meta_dirty)],
    )
    comments = st.comments
    add(
        UPDATE_COMMENT_SCORE,
        [
            (c.score, c.ups, c.downs, c.id)
            for c in map(comments.__getitem__, ch.comment_scores_dirty)
        ],
    )
    add(
        UPDATE_COMMENT_META,
        [(int(c.status), c.id) for c in map(comments.__getitem__, ch.comment_meta_dirty)],
    )
    add(INSERT_ACTION, ch.ledger)
    return out
