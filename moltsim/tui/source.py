"""The watcher's read-only view of a run file: one connection, opened ``mode=ro`` and
``query_only``, used by one query at a time, plus the reads only the watcher needs (the run
header, the event log, submolt activity).

Nothing here imports Textual: the queries are plain functions of a connection, so they are
tested, and benchmarked, without a terminal.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from moltsim.domain.actions import QUERY_TYPES
from moltsim.engine.rules import DAY, HOUR
from moltsim.store.metrics import run_state, token_prices
from moltsim.store.reader import open_readonly

T = TypeVar("T")

ACTIVE_WINDOW_S = 30.0
"""Without a recorded run state, a run whose ledger grew in the last this-many wall seconds
is shown as ``active``."""
TAIL_ACTIONS = 50_000
"""Per-sim-hour figures read at most this many of the newest ledger rows (a bounded read)."""


class RunSource:
    """Read-only connections to a run file: one for the screens' queries, one for the run
    header's polls, so a slow header read never delays a screen.

    Queries come from worker threads; a lock per connection keeps its queries in turn.
    """

    LANES = ("screens", "header")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lanes: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
        try:
            for lane in self.LANES:
                conn = open_readonly(self.path)
                self._lanes[lane] = (conn, threading.Lock())
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            self.close()
            raise
        self.header = HeaderReader()

    @property
    def connections(self) -> list[sqlite3.Connection]:
        """The connections themselves (for checks that they cannot write)."""
        return [conn for conn, _ in self._lanes.values()]

    def read(self, query: Callable[[sqlite3.Connection], T], lane: str = "screens") -> T:
        """Run ``query(conn)`` inside one read transaction (one consistent snapshot)."""
        conn, lock = self._lanes[lane]
        with lock:
            conn.execute("BEGIN")
            try:
                return query(conn)
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        for conn, lock in self._lanes.values():
            with lock:
                conn.close()
        self._lanes.clear()


# --- the run header -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pulse:
    """What the run header shows, and the newest ids (to tell screens what is new)."""

    run_name: str
    sim_time: float | None
    state: str
    agents: int
    agents_online: int
    online_measured: bool
    """True when ``agents_online`` comes from the run's metrics, False when it counts the
    agents that acted in the last sim-hour."""
    actions_per_sim_hour: int
    actions: int
    refusals: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """``None`` when the scenario names no token prices."""
    max_post_id: int
    max_comment_id: int
    max_action_id: int


class HeaderReader:
    """Reads the run header, counting only the ledger rows added since the last read."""

    def __init__(self) -> None:
        self._action_id = 0
        self._actions = 0
        self._refusals = 0
        self._llm_id = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._prices: tuple[float, float] | None = None
        self._meta_loaded = False
        self._run_name = ""

    def _load_meta(self, conn: sqlite3.Connection) -> None:
        meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
        self._run_name = meta.get("scenario_name", "")
        self._prices = token_prices(meta.get("scenario"))
        self._meta_loaded = True

    def read(self, conn: sqlite3.Connection) -> Pulse:
        if not self._meta_loaded:
            self._load_meta(conn)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        count, refused, last = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(outcome != 'ok'), 0), MAX(id) FROM actions WHERE id > ?",
            (self._action_id,),
        ).fetchone()
        self._actions += count
        self._refusals += refused
        self._action_id = last or self._action_id
        if "llm_calls" in tables:
            prompt, completion, last_call = conn.execute(
                "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
                " MAX(id) FROM llm_calls WHERE id > ?",
                (self._llm_id,),
            ).fetchone()
            self._prompt_tokens += prompt
            self._completion_tokens += completion
            self._llm_id = last_call or self._llm_id
        last_row = conn.execute(
            "SELECT sim_time, wall_time FROM actions ORDER BY id DESC LIMIT 1"
        ).fetchone()
        sim_time = None if last_row is None else float(last_row[0])
        per_hour, active = (0, 0)
        if sim_time is not None:
            per_hour, active = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT agent_id) FROM actions"
                " WHERE id > ? AND sim_time > ?",
                (self._action_id - TAIL_ACTIONS, sim_time - HOUR),
            ).fetchone()
        online, measured = active, False
        if "metrics" in tables:
            row = conn.execute(
                "SELECT value FROM metrics WHERE name = 'agents_online' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                online, measured = int(row[0]), True
        cost = None
        if self._prices is not None:
            cost = self._prompt_tokens * self._prices[0] + self._completion_tokens * self._prices[1]
        (agents,) = conn.execute("SELECT COUNT(*) FROM agents").fetchone()
        (max_post,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM posts").fetchone()
        (max_comment,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM comments").fetchone()
        return Pulse(
            run_name=self._run_name,
            sim_time=sim_time,
            state=_run_state(conn, None if last_row is None else float(last_row[1])),
            agents=agents,
            agents_online=online,
            online_measured=measured,
            actions_per_sim_hour=per_hour,
            actions=self._actions,
            refusals=self._refusals,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            cost_usd=cost,
            max_post_id=max_post,
            max_comment_id=max_comment,
            max_action_id=self._action_id,
        )


def _run_state(conn: sqlite3.Connection, last_wall_time: float | None) -> str:
    """The recorded run state; for run files that record none and whose ledger does not say
    the run finished, ``active`` while the ledger grows, else ``unknown``."""
    state = run_state(conn).state
    if state != "unknown":
        return state
    if last_wall_time is not None and time.time() - last_wall_time < ACTIVE_WINDOW_S:
        return "active"
    return "unknown"


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
