"""The reads only the watcher needs, beside the store's feeds, threads and profiles: the event
log, submolt activity, an agent's extras, and the counters that tell a screen what is new."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from moltsim.domain.actions import QUERY_TYPES
from moltsim.engine.rules import DAY

# --- the event log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One entry of the action ledger, as the event log shows it."""

    id: int
    sim_time: float
    agent: str | None
    type: str
    outcome: str
    summary: str


_QUERY_TYPE_LIST = ", ".join(f"'{t}'" for t in sorted(QUERY_TYPES))
_EVENT_SELECT = (
    "SELECT a.id, a.sim_time, g.handle, a.type, a.outcome, a.payload, a.message"
    " FROM actions a LEFT JOIN agents g ON g.id = a.agent_id"
)


def ledger_events(
    conn: sqlite3.Connection, *, after_id: int | None = None, limit: int = 200
) -> list[LedgerEvent]:
    """Ledger entries other than queries, oldest first: the newest ``limit`` when
    ``after_id`` is ``None``, else the first ``limit`` after it."""
    where = f"a.type NOT IN ({_QUERY_TYPE_LIST})"
    if after_id is None:
        rows = conn.execute(
            f"{_EVENT_SELECT} WHERE {where} ORDER BY a.id DESC LIMIT ?", (limit,)
        ).fetchall()
        rows.reverse()
    else:
        rows = conn.execute(
            f"{_EVENT_SELECT} WHERE {where} AND a.id > ? ORDER BY a.id LIMIT ?", (after_id, limit)
        ).fetchall()
    return [
        LedgerEvent(
            id=row[0],
            sim_time=row[1],
            agent=row[2],
            type=row[3],
            outcome=row[4],
            summary=_summary(row[3], row[5], row[6]),
        )
        for row in rows
    ]


def _summary(kind: str, payload: str, message: str) -> str:
    """A short, single-line description of a ledger entry."""
    try:
        data: Any = json.loads(payload)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return message
    match kind:
        case "post":
            text = f"m/{data.get('submolt', '?')}: {data.get('title', '')}"
        case "comment":
            target = data.get("parent_id") or data.get("post_id")
            where = "comment" if data.get("parent_id") else "post"
            text = f"on {where} #{target}: {data.get('body', '')}"
        case "vote":
            text = f"{data.get('value', 0):+d} on {data.get('target', '?')} #{data.get('id', '?')}"
        case "follow" | "unfollow":
            text = f"@{data.get('agent', '?')}"
        case "subscribe" | "unsubscribe" | "create_submolt" | "seed_submolt":
            text = f"m/{data.get('submolt') or data.get('name', '?')}"
        case "dm":
            text = f"to @{data.get('to', '?')}"
        case "llm_call":
            tokens = f"{data.get('prompt_tokens', 0)}+{data.get('completion_tokens', 0)} tokens"
            text = f"{data.get('model', '?')}: {tokens}, {data.get('outcome', '?')}"
        case "register":
            text = f"@{data.get('handle', '?')} joined"
        case _:
            text = ""
    if message:
        text = f"{text} ({message})" if text else message
    return " ".join(text.split())[:160]


# --- submolts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmoltRow:
    name: str
    title: str
    owner: str | None
    members: int
    posts: int
    posts_last_day: int
    """Posts created in the sim-day before the run's latest post."""


def submolt_rows(conn: sqlite3.Connection, *, limit: int = 500) -> list[SubmoltRow]:
    """Every submolt (busiest first) with its members, posts, and posts of the last sim-day."""
    latest = conn.execute("SELECT MAX(created_at) FROM posts WHERE status = 0").fetchone()[0]
    recent: dict[int, int] = {}
    if latest is not None:
        recent = dict(
            conn.execute(
                "SELECT submolt_id, COUNT(*) FROM posts WHERE status = 0 AND created_at > ?"
                " GROUP BY submolt_id",
                (latest - DAY,),
            ).fetchall()
        )
    rows = conn.execute(
        "SELECT s.id, s.name, s.title, a.handle, s.subscriber_count, s.post_count"
        " FROM submolts s LEFT JOIN agents a ON a.id = s.owner_id"
        " ORDER BY s.subscriber_count DESC, s.post_count DESC, s.id LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        SubmoltRow(
            name=name,
            title=title,
            owner=owner,
            members=members,
            posts=posts,
            posts_last_day=recent.get(sub_id, 0),
        )
        for sub_id, name, title, owner, members, posts in rows
    ]


def post_counters(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[int, int]]:
    """Current (score, comment count) of the given posts, to refresh rows in place."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            f"SELECT id, score, comment_count FROM posts WHERE id IN ({marks})", ids
        )
    }


# --- agents -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentExtras:
    """What a profile shows beyond :func:`moltsim.store.queries.profile`."""

    persona: str
    """A one-line summary of the persona the agent was registered with ('' if none)."""
    followers: list[str]
    following: list[str]


def agent_extras(conn: sqlite3.Connection, agent_id: int, *, limit: int = 30) -> AgentExtras:
    row = conn.execute("SELECT persona FROM agents WHERE id = ?", (agent_id,)).fetchone()
    followers = [
        r[0]
        for r in conn.execute(
            "SELECT a.handle FROM follows f JOIN agents a ON a.id = f.follower_id"
            " WHERE f.followee_id = ? ORDER BY f.created_at DESC LIMIT ?",
            (agent_id, limit),
        )
    ]
    following = [
        r[0]
        for r in conn.execute(
            "SELECT a.handle FROM follows f JOIN agents a ON a.id = f.followee_id"
            " WHERE f.follower_id = ? ORDER BY f.created_at DESC LIMIT ?",
            (agent_id, limit),
        )
    ]
    return AgentExtras(
        persona=persona_summary(row[0] if row else None),
        followers=followers,
        following=following,
    )


def persona_summary(persona_json: str | None) -> str:
    """Interests, tone, temperament and brain of a stored persona, on one line."""
    if not persona_json:
        return ""
    try:
        persona: Any = json.loads(persona_json)
    except ValueError:
        return ""
    if not isinstance(persona, dict):
        return ""
    if isinstance(persona.get("persona"), dict):
        persona = persona["persona"]
    parts: list[str] = []
    if interests := persona.get("interests"):
        parts.append("interests: " + ", ".join(str(i) for i in interests[:6]))
    if isinstance(voice := persona.get("voice"), dict) and voice.get("tone"):
        parts.append(f"tone: {voice['tone']}")
    if isinstance(temper := persona.get("temperament"), dict):
        keys = ("post", "comment", "vote", "contrarian")
        parts.append("temperament: " + " ".join(f"{k} {temper[k]:g}" for k in keys if k in temper))
    if persona.get("brain"):
        parts.append(f"brain: {persona['brain']}")
    return " · ".join(parts)


def new_since(conn: sqlite3.Connection, table: str, after_id: int, **where: int | None) -> int:
    """How many visible rows of ``posts`` or ``comments`` have an id above ``after_id``
    (optionally only those with ``column = value`` for each keyword)."""
    if table not in ("posts", "comments"):
        raise ValueError(f"unknown table {table!r}")
    clauses = ["id > ?", "status = 0"]
    params: list[Any] = [after_id]
    for column, value in where.items():
        if value is not None:
            if column not in ("submolt_id", "post_id"):
                raise ValueError(f"unknown column {column!r}")
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT COUNT(*) FROM {table} WHERE {' AND '.join(clauses)}"
    return int(conn.execute(sql, params).fetchone()[0])


def submolt_id(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM submolts WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def comment_scores(
    conn: sqlite3.Connection, post_id: int, up_to_id: int
) -> dict[int, tuple[int, int, int]]:
    """(score, ups, downs) of a post's comments with ids up to ``up_to_id``."""
    return {
        row[0]: (row[1], row[2], row[3])
        for row in conn.execute(
            "SELECT id, score, ups, downs FROM comments WHERE post_id = ? AND id <= ?",
            (post_id, up_to_id),
        )
    }


def sim_now(conn: sqlite3.Connection) -> float | None:
    """The run's sim clock as the ledger shows it: the time of its latest entry."""
    row = conn.execute("SELECT sim_time FROM actions ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else float(row[0])
