"""Read queries shared by the engine (for agents), the TUI and exports.

Each takes a read-only :class:`sqlite3.Connection` and returns domain views. Feed reads walk a
stored, indexed ranking (``hot``, ``score``, ``id``), so they cost the same at a thousand posts
and at a million.
"""

from __future__ import annotations

import heapq
import re
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from moltsim.domain.actions import CommentSort, FeedSort, TopWindow
from moltsim.domain.entities import (
    AgentView,
    CommentView,
    DirectMessage,
    Notification,
    NotificationKind,
    PostView,
    ProfileView,
    SearchHit,
    Status,
    SubmoltView,
    ThreadView,
)
from moltsim.engine import ranking
from moltsim.engine.rules import DAY, HOUR

WINDOWS: dict[str, float] = {
    "hour": HOUR,
    "day": DAY,
    "week": 7 * DAY,
    "month": 30 * DAY,
    "year": 365 * DAY,
}
PLACEHOLDER = {Status.DELETED: "[deleted]", Status.REMOVED: "[removed]"}
RISING_CANDIDATES = 2_000
"""How many of the newest posts in the rising window are ranked for ``rising``."""

_POST_COLUMNS = (
    "p.id, s.name, a.handle, p.title, p.body, p.url, p.created_at, p.score, p.ups, p.downs,"
    " p.comment_count, p.status, p.pinned, p.hot"
)
_POST_FROM = (
    " FROM posts p JOIN submolts s ON s.id = p.submolt_id JOIN agents a ON a.id = p.author_id"
)
_POST_SELECT = "SELECT " + _POST_COLUMNS + _POST_FROM
_ORDER = {"hot": "p.hot DESC", "new": "p.id DESC", "top": "p.score DESC, p.id DESC"}


def _post(row: Sequence[Any]) -> PostView:
    status = Status(row[11])
    hidden = status is not Status.VISIBLE
    return PostView(
        id=row[0],
        submolt=row[1],
        author=None if hidden else row[2],
        title=row[3],
        body=PLACEHOLDER[status] if hidden else row[4],
        url=None if hidden else row[5],
        created_at=row[6],
        score=row[7],
        ups=row[8],
        downs=row[9],
        comment_count=row[10],
        status=status,
        pinned=bool(row[12]),
        hot=row[13],
    )


# --- feeds ------------------------------------------------------------------------------------


def feed(
    conn: sqlite3.Connection,
    *,
    sort: FeedSort = "hot",
    submolt: str | None = None,
    window: TopWindow = "all",
    limit: int = 25,
    offset: int = 0,
    now: float = 0.0,
    rising_window_s: float = 6 * HOUR,
) -> list[PostView]:
    """Visible posts of one submolt or of the whole network. Pinned posts lead a submolt's
    first page."""
    where = ["p.status = 0"]
    params: list[Any] = []
    pinned: list[PostView] = []
    if submolt is not None:
        row = conn.execute("SELECT id FROM submolts WHERE name = ?", (submolt,)).fetchone()
        if row is None:
            return []
        where.append("p.submolt_id = ?")
        params.append(row[0])
        if sort in ("hot", "new"):
            # Pinned posts lead the listing; pages count them like any other post.
            where.append("p.pinned = 0")
            all_pinned = [
                _post(r)
                for r in conn.execute(
                    _POST_SELECT + " WHERE p.status = 0 AND p.pinned = 1 AND p.submolt_id = ?"
                    " ORDER BY p.id",
                    (row[0],),
                )
            ]
            pinned = all_pinned[offset : offset + limit]
            offset = max(offset - len(all_pinned), 0)
    if sort == "rising":
        return pinned + _rising(conn, where, params, limit, offset, now, rising_window_s)
    if sort == "top" and window != "all":
        # Ids rise with creation time, and the (score, id) index carries the id: filtering on
        # it finds the window's best posts without reading each candidate's row.
        where.append("p.id >= ?")
        params.append(_first_post_since(conn, now - WINDOWS[window]))
    sql = f"{_POST_SELECT} WHERE {' AND '.join(where)} ORDER BY {_ORDER[sort]} LIMIT ? OFFSET ?"
    rows = conn.execute(sql, (*params, max(limit - len(pinned), 0), offset)).fetchall()
    return pinned + [_post(r) for r in rows]


def _first_post_since(conn: sqlite3.Connection, since: float) -> int:
    """The id of the first visible post created at or after ``since`` (past the end if none)."""
    row = conn.execute(
        "SELECT id FROM posts WHERE status = 0 AND created_at >= ? ORDER BY created_at LIMIT 1",
        (since,),
    ).fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM posts").fetchone()[0])


def _rising(
    conn: sqlite3.Connection,
    where: list[str],
    params: list[Any],
    limit: int,
    offset: int,
    now: float,
    window_s: float,
) -> list[PostView]:
    sql = (
        f"{_POST_SELECT} WHERE {' AND '.join([*where, 'p.created_at >= ?'])}"
        f" ORDER BY p.created_at DESC LIMIT {RISING_CANDIDATES}"
    )
    posts = [_post(r) for r in conn.execute(sql, (*params, now - window_s))]
    posts.sort(
        key=lambda p: (ranking.rising(p.score, p.comment_count, p.created_at, now), p.id),
        reverse=True,
    )
    return posts[offset : offset + limit]


def personal_feed(
    conn: sqlite3.Connection,
    agent_id: int,
    *,
    sort: FeedSort = "hot",
    window: TopWindow = "all",
    limit: int = 25,
    offset: int = 0,
    now: float = 0.0,
    rising_window_s: float = 6 * HOUR,
) -> list[PostView]:
    """Posts from the submolts the agent subscribes to and the agents it follows.

    Each source is read from its own index and the sources are merged, so the cost depends on
    how many sources the agent has, not on how many posts exist.
    """
    submolt_ids = [
        r[0]
        for r in conn.execute(
            "SELECT submolt_id FROM memberships WHERE agent_id = ? AND role = 'subscriber'",
            (agent_id,),
        )
    ]
    followee_ids = [
        r[0]
        for r in conn.execute("SELECT followee_id FROM follows WHERE follower_id = ?", (agent_id,))
    ]
    if not submolt_ids and not followee_ids:
        return []
    want = offset + limit
    extra = ""
    extra_params: list[Any] = []
    if sort == "top" and window != "all":
        extra = " AND p.id >= ?"
        extra_params.append(_first_post_since(conn, now - WINDOWS[window]))
    elif sort == "rising":
        extra = " AND p.created_at >= ?"
        extra_params.append(now - rising_window_s)
    order = _ORDER["new" if sort == "rising" else sort]
    take = RISING_CANDIDATES if sort == "rising" else want
    sources: list[list[PostView]] = []
    for column, ids in (("p.submolt_id", submolt_ids), ("p.author_id", followee_ids)):
        for source_id in ids:
            sql = (
                f"{_POST_SELECT} WHERE p.status = 0 AND {column} = ?{extra}"
                f" ORDER BY {order} LIMIT ?"
            )
            sources.append([_post(r) for r in conn.execute(sql, (source_id, *extra_params, take))])
    unique = {post.id: post for source in sources for post in source}
    key = {
        "hot": lambda p: (p.hot, p.id),
        "new": lambda p: (p.id,),
        "top": lambda p: (p.score, p.id),
        "rising": lambda p: (ranking.rising(p.score, p.comment_count, p.created_at, now), p.id),
    }[sort]
    return heapq.nlargest(want, unique.values(), key=key)[offset:]


# --- threads ------------------------------------------------------------------------------------


def post(conn: sqlite3.Connection, post_id: int) -> PostView | None:
    row = conn.execute(_POST_SELECT + " WHERE p.id = ?", (post_id,)).fetchone()
    return None if row is None else _post(row)


_COMMENT_SELECT = (
    "SELECT c.id, c.post_id, c.parent_id, a.handle, c.body, c.created_at, c.score, c.ups,"
    " c.downs, c.status, c.depth FROM comments c JOIN agents a ON a.id = c.author_id"
)

_COMMENT_KEYS = {
    "best": lambda c: (-ranking.wilson_lower_bound(c[7], c[8]), -c[6], c[0]),
    "top": lambda c: (-c[6], c[0]),
    "new": lambda c: (-c[0],),
    "old": lambda c: (c[0],),
    "controversial": lambda c: (-ranking.controversy(c[7], c[8]), c[0]),
}


def thread(
    conn: sqlite3.Connection, post_id: int, *, sort: CommentSort = "best", limit: int = 200
) -> ThreadView | None:
    """A post and its comment tree, siblings in ``sort`` order, at most ``limit`` comments
    (taken depth-first, so every shown comment comes with its ancestors)."""
    head = post(conn, post_id)
    if head is None:
        return None
    rows = conn.execute(_COMMENT_SELECT + " WHERE c.post_id = ?", (post_id,)).fetchall()
    children: dict[int | None, list[Sequence[Any]]] = {}
    for row in rows:
        children.setdefault(row[2], []).append(row)
    key = _COMMENT_KEYS[sort]
    for siblings in children.values():
        siblings.sort(key=key)
    shown = 0

    def build(parent: int | None) -> list[CommentView]:
        nonlocal shown
        out: list[CommentView] = []
        for row in children.get(parent, ()):
            if shown >= limit:
                break
            shown += 1
            out.append(_comment(row, build(row[0])))
        return out

    tree = build(None)
    return ThreadView(post=head, comments=tree, total_comments=len(rows), shown_comments=shown)


def _comment(row: Sequence[Any], replies: list[CommentView] | None = None) -> CommentView:
    status = Status(row[9])
    hidden = status is not Status.VISIBLE
    return CommentView(
        id=row[0],
        post_id=row[1],
        parent_id=row[2],
        author=None if hidden else row[3],
        body=PLACEHOLDER[status] if hidden else row[4],
        created_at=row[5],
        score=row[6],
        ups=row[7],
        downs=row[8],
        status=status,
        depth=row[10],
        replies=replies or [],
    )


# --- agents ---------------------------------------------------------------------------------------

_AGENT_SELECT = (
    "SELECT id, handle, display_name, bio, created_at, karma, post_count, comment_count,"
    " follower_count, following_count FROM agents"
)


def _agent(row: Sequence[Any]) -> AgentView:
    return AgentView(
        id=row[0],
        handle=row[1],
        display_name=row[2],
        bio=row[3],
        created_at=row[4],
        karma=row[5],
        post_count=row[6],
        comment_count=row[7],
        follower_count=row[8],
        following_count=row[9],
    )


def agent(conn: sqlite3.Connection, handle: str) -> AgentView | None:
    row = conn.execute(_AGENT_SELECT + " WHERE handle = ?", (handle,)).fetchone()
    return None if row is None else _agent(row)


def profile(conn: sqlite3.Connection, handle: str, *, recent: int = 10) -> ProfileView | None:
    """An agent's public profile with its latest posts and comments."""
    who = agent(conn, handle)
    if who is None:
        return None
    posts = [
        _post(r)
        for r in conn.execute(
            _POST_SELECT + " WHERE p.author_id = ? AND p.status = 0 ORDER BY p.id DESC LIMIT ?",
            (who.id, recent),
        )
    ]
    comments = [
        _comment(r)
        for r in conn.execute(
            _COMMENT_SELECT + " WHERE c.author_id = ? AND c.status = 0 ORDER BY c.id DESC LIMIT ?",
            (who.id, recent),
        )
    ]
    roles: dict[str, list[str]] = {"owner": [], "moderator": [], "subscriber": []}
    for name, role in conn.execute(
        "SELECT s.name, m.role FROM memberships m JOIN submolts s ON s.id = m.submolt_id"
        " WHERE m.agent_id = ? ORDER BY s.name",
        (who.id,),
    ):
        roles[role].append(name)
    return ProfileView(
        agent=who,
        recent_posts=posts,
        recent_comments=comments,
        moderates=sorted({*roles["owner"], *roles["moderator"]}),
        subscriptions=roles["subscriber"],
    )


# --- notifications ------------------------------------------------------------------------------


def notifications(
    conn: sqlite3.Connection, agent_id: int, *, since_id: int = 0, limit: int = 50
) -> list[Notification]:
    """What happened to the agent since ``since_id``, oldest first."""
    rows = conn.execute(
        "SELECT n.id, n.kind, a.handle, n.created_at, n.post_id, n.comment_id, n.dm_id,"
        " CASE WHEN c.status = 0 THEN c.body END, CASE WHEN p.status = 0 THEN p.title END,"
        " d.body, r.handle"
        " FROM notifications n JOIN agents a ON a.id = n.actor_id"
        " LEFT JOIN comments c ON c.id = n.comment_id"
        " LEFT JOIN posts p ON p.id = n.post_id"
        " LEFT JOIN dms d ON d.id = n.dm_id"
        " LEFT JOIN agents r ON r.id = d.recipient_id"
        " WHERE n.agent_id = ? AND n.id > ? ORDER BY n.id LIMIT ?",
        (agent_id, since_id, limit),
    ).fetchall()
    out: list[Notification] = []
    for nid, kind, actor, at, post_id, comment_id, dm_id, c_body, p_title, d_body, rcpt in rows:
        dm = None
        if dm_id is not None:
            dm = DirectMessage(id=dm_id, sender=actor, recipient=rcpt, body=d_body, created_at=at)
        excerpt = (c_body or d_body or p_title or "")[:280]
        out.append(
            Notification(
                id=nid,
                kind=NotificationKind(kind),
                actor=actor,
                created_at=at,
                post_id=post_id,
                comment_id=comment_id,
                dm=dm,
                excerpt=excerpt,
            )
        )
    return out


# --- search ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """A safe FTS5 query: every word quoted (so no operator syntax leaks in), all required."""
    return " ".join(f'"{token}"' for token in _TOKEN.findall(text))


# Both return: id, post id, submolt, author, post title, snippet, score, created_at, rank.
_SEARCH_POSTS = (
    "SELECT p.id, p.id, s.name, a.handle, p.title,"
    " snippet(posts_fts, -1, '[', ']', '…', 12), p.score, p.created_at,"
    " bm25(posts_fts, 2.0, 1.0) AS rank"
    " FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid"
    " JOIN submolts s ON s.id = p.submolt_id JOIN agents a ON a.id = p.author_id"
    " WHERE posts_fts MATCH ? AND p.status = 0 ORDER BY rank LIMIT ?"
)
_SEARCH_COMMENTS = (
    "SELECT c.id, c.post_id, s.name, a.handle, p.title,"
    " snippet(comments_fts, 0, '[', ']', '…', 12), c.score, c.created_at,"
    " bm25(comments_fts) AS rank"
    " FROM comments_fts JOIN comments c ON c.id = comments_fts.rowid"
    " JOIN posts p ON p.id = c.post_id JOIN submolts s ON s.id = p.submolt_id"
    " JOIN agents a ON a.id = c.author_id"
    " WHERE comments_fts MATCH ? AND c.status = 0 AND p.status = 0 ORDER BY rank LIMIT ?"
)


def search(
    conn: sqlite3.Connection, q: str, *, kind: str = "all", limit: int = 20
) -> list[SearchHit]:
    """Visible posts and comments matching every word of ``q``, best match (BM25) first."""
    match = fts_query(q)
    if not match:
        return []
    sources: list[tuple[Literal["post", "comment"], str]] = []
    if kind in ("all", "posts"):
        sources.append(("post", _SEARCH_POSTS))
    if kind in ("all", "comments"):
        sources.append(("comment", _SEARCH_COMMENTS))
    hits = [
        SearchHit(
            kind=hit_kind,
            id=row[0],
            post_id=row[1],
            submolt=row[2],
            author=row[3],
            title=row[4],
            snippet=row[5],
            score=row[6],
            created_at=row[7],
            rank=row[8],
        )
        for hit_kind, sql in sources
        for row in conn.execute(sql, (match, limit))
    ]
    hits.sort(key=lambda h: (h.rank, -h.id))
    return hits[:limit]


# --- submolts -----------------------------------------------------------------------------------

_SUBMOLT_ORDER = {
    "popular": "s.subscriber_count DESC, s.post_count DESC, s.id",
    "new": "s.id DESC",
    "name": "s.name",
}


def submolts(
    conn: sqlite3.Connection, *, sort: str = "popular", limit: int = 50
) -> list[SubmoltView]:
    rows = conn.execute(
        "SELECT s.id, s.name, s.title, s.description, a.handle, s.created_at,"
        " s.subscriber_count, s.post_count FROM submolts s LEFT JOIN agents a ON a.id = s.owner_id"
        f" ORDER BY {_SUBMOLT_ORDER[sort]} LIMIT ?",
        (limit,),
    ).fetchall()
    return [_submolt(conn, row) for row in rows]


def submolt(conn: sqlite3.Connection, name: str) -> SubmoltView | None:
    row = conn.execute(
        "SELECT s.id, s.name, s.title, s.description, a.handle, s.created_at,"
        " s.subscriber_count, s.post_count FROM submolts s LEFT JOIN agents a ON a.id = s.owner_id"
        " WHERE s.name = ?",
        (name,),
    ).fetchone()
    return None if row is None else _submolt(conn, row)


def _submolt(conn: sqlite3.Connection, row: Sequence[Any]) -> SubmoltView:
    moderators = [
        r[0]
        for r in conn.execute(
            "SELECT a.handle FROM memberships m JOIN agents a ON a.id = m.agent_id"
            " WHERE m.submolt_id = ? AND m.role = 'moderator' ORDER BY a.handle",
            (row[0],),
        )
    ]
    pinned = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM posts WHERE submolt_id = ? AND pinned = 1 AND status = 0 ORDER BY id",
            (row[0],),
        )
    ]
    return SubmoltView(
        id=row[0], name=row[1], title=row[2], description=row[3], owner=row[4],
        created_at=row[5], subscriber_count=row[6], post_count=row[7],
        moderators=moderators, pinned=pinned,
    )  # fmt: skip
