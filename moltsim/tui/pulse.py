"""The run header's figures (a :class:`Pulse`), read again on every poll: the sim clock, the
run state, agents online, the action rate, refusals, tokens and cost, and the newest ids that
tell the screens what is new."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from moltsim.engine.rules import HOUR
from moltsim.store.llmstats import calls_since, percentile
from moltsim.store.metrics import run_state, token_prices

ACTIVE_WINDOW_S = 30.0
"""Without a recorded run state, a run whose ledger grew in the last this-many wall seconds
is shown as ``active``."""
TAIL_ACTIONS = 50_000
"""Per-sim-hour figures read at most this many of the newest ledger rows (a bounded read)."""


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
    llm_calls: int
    llm_failed: int
    """Model decisions that came to nothing (a failed call, an answer invalid after repair)."""
    llm_server_p50_ms: float
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
        self._call_id = 0
        self._llm_failed = 0
        self._server_ms: list[float] = []
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
            for call in calls_since(conn, self._call_id):
                self._call_id = call.id
                self._llm_failed += call.outcome not in ("ok", "repaired")
                self._server_ms.append(call.server_ms)
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
            llm_calls=len(self._server_ms),
            llm_failed=self._llm_failed,
            llm_server_p50_ms=percentile(self._server_ms, 0.5),
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
