"""The engine as a service: applies actions to the :class:`Forum`, commits them in groups,
and answers only after the commit.

Writes are applied in memory the moment they arrive (so later actions see them), noted in the
ledger, and grouped: while one transaction is being written, the next group accumulates. An
outcome is handed back only once the transaction holding its change has committed. Queries are
admitted (rate limits) in order with the writes and then answered from read-only connections
once every write before them is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from moltsim.domain import actions as a
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome
from moltsim.engine.forum import Forum
from moltsim.engine.rules import Rules
from moltsim.store import queries
from moltsim.store.batch import Statement, build_batch
from moltsim.store.loader import load_rules, load_state
from moltsim.store.reader import ReadPool
from moltsim.store.runfile import RunFile, RunFileError

RUN_STATES = ("running", "finished", "stopped", "interrupted", "failed")
"""The values of ``run_meta.state``."""

MetricSample = tuple[float, float, str, str, float]
"""One ``metrics`` row: wall time, sim time, process ('' for run-wide), name, value."""

INSERT_METRIC = (
    "INSERT INTO metrics (wall_time, sim_time, process, name, value) VALUES (?, ?, ?, ?, ?)"
)
SET_META = "INSERT OR REPLACE INTO run_meta (key, value) VALUES (?, ?)"


class EngineFailed(RuntimeError):
    """A commit failed; the engine stopped and must be restarted from its run file."""


@dataclass(slots=True)
class Submission:
    """One envelope's worth of work for the engine.

    ``action`` is ``None`` when the envelope was refused before it could be parsed; then
    ``refusal`` says why, and it is only recorded in the ledger.
    """

    agent_id: int | None
    action: a.Action | None
    now: float
    seq: int | None = None
    payload: str | None = None
    """The action as received (JSON); computed from ``action`` when not given."""
    sig: str | None = None
    refusal: Refusal | None = None
    kind: str | None = None
    """Ledger ``type`` for a refused-before-parsing envelope (defaults to ``malformed``)."""
    answered: Outcome | None = None
    """An outcome decided before the engine (a hello, a duplicate): recorded, not applied."""


class Engine:
    """The only writer of a run file."""

    def __init__(self, forum: Forum, runfile: RunFile, reads: ReadPool) -> None:
        self.forum = forum
        self.runfile = runfile
        self.reads = reads
        self.last_sim_time = 0.0
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._failure: BaseException | None = None
        self._committer = asyncio.create_task(self._commit_loop(), name="moltsim-commit")
        self._closed = False
        self.commits = 0
        self._records: list[Statement] = []
        """Rows about the run rather than the forum (metrics, run state), for the next commit."""

    @classmethod
    async def open(
        cls, path: str | Path, rules: Rules | None = None, *, readers: int = 2
    ) -> Engine:
        """Open or create the run file at ``path`` and load its state.

        Without ``rules``, the rules saved in the run file apply (or the defaults)."""
        runfile = await RunFile.open(path)
        try:
            if rules is None:
                rules = await asyncio.to_thread(load_rules, path) or Rules()
            state, last = await asyncio.to_thread(load_state, path, rules)
        except BaseException:
            await runfile.close()
            raise
        engine = cls(Forum(rules, state), runfile, ReadPool(path, readers))
        engine.last_sim_time = last
        return engine

    # --- writes -------------------------------------------------------------------------------

    async def submit(self, agent_id: int, action: a.Action, now: float, **meta: Any) -> Outcome:
        """Apply one action; returns once it is committed (or refused and recorded)."""
        (outcome,) = await self.submit_many([Submission(agent_id, action, now, **meta)])
        return outcome

    async def submit_many(self, items: Sequence[Submission]) -> list[Outcome]:
        """Apply several actions in order; returns once all of them are committed."""
        self._ensure_running()
        outcomes: list[Outcome] = []
        pending_queries: list[tuple[int, Submission]] = []
        for item in items:
            outcome = self._apply(item)
            if (
                outcome.ok
                and item.answered is None
                and item.action is not None
                and item.action.type in a.QUERY_TYPES
            ):
                pending_queries.append((len(outcomes), item))
            outcomes.append(outcome)
        await self._committed()
        if pending_queries:
            answers = await asyncio.gather(*(self._answer(item) for _, item in pending_queries))
            for (index, _), answer in zip(pending_queries, answers, strict=True):
                outcomes[index] = answer
        return outcomes

    def _apply(self, item: Submission) -> Outcome:
        forum = self.forum
        action = item.action
        if item.now < self.last_sim_time:
            # The engine's clock never runs backwards: ids follow creation time, which the
            # ranking queries rely on.
            item.now = self.last_sim_time
        if item.answered is not None:
            outcome = item.answered
            kind = item.kind or (action.type if action else "malformed")
        elif item.refusal is not None or action is None:
            refusal = item.refusal or Refusal(ErrorCode.MALFORMED, "no action")
            outcome = Outcome.refused(refusal)
            kind = item.kind or (action.type if action else "malformed")
        else:
            try:
                outcome = forum.apply(item.agent_id or 0, action, item.now)
            except Exception as exc:  # a bug in a rule must not take the engine down
                outcome = Outcome.refused(Refusal(ErrorCode.INTERNAL, f"engine error: {exc!r}"))
            kind = action.type
        self.last_sim_time = item.now
        payload = item.payload
        if payload is None:
            payload = action.model_dump_json(exclude_defaults=True) if action else "null"
        result = None
        if outcome.ok and outcome.data and kind not in a.QUERY_TYPES:
            result = to_json(outcome.data).decode()
        elif outcome.retry_after is not None:
            result = to_json({"retry_after": outcome.retry_after}).decode()
        st = forum.state
        action_id = st.next_action_id
        st.next_action_id += 1
        forum.changes.ledger.append(
            (action_id, item.now, time.time(), item.agent_id, item.seq, kind, payload, item.sig,
             outcome.label, outcome.message, result)
        )  # fmt: skip
        return outcome

    async def register_agent(
        self, handle: str, public_key: bytes, now: float, **profile: Any
    ) -> int:
        """Register an agent (public key only) and return its id once committed."""
        self._ensure_running()
        agent_id = self.forum.register_agent(handle, public_key, now, **profile)
        self._ledger_entry(agent_id, "register", {"handle": handle}, now)
        await self._committed()
        return agent_id

    async def register_agents(
        self, agents: Sequence[tuple[str, bytes, dict[str, Any]]], now: float
    ) -> list[int]:
        """Register many agents (handle, public key, profile) in one commit."""
        self._ensure_running()
        ids = []
        for handle, public_key, profile in agents:
            agent_id = self.forum.register_agent(handle, public_key, now, **profile)
            self._ledger_entry(agent_id, "register", {"handle": handle}, now)
            ids.append(agent_id)
        await self._committed()
        return ids

    async def seed_submolt(
        self, name: str, now: float, title: str = "", description: str = ""
    ) -> int:
        self._ensure_running()
        sub_id = self.forum.seed_submolt(name, now, title, description)
        self._ledger_entry(None, "seed_submolt", {"name": name}, now)
        await self._committed()
        return sub_id

    async def record_objection(self, agent_id: int, now: float) -> None:
        """Record an owner's objection to training use of the agent's content (in the ledger)."""
        self._ensure_running()
        self.forum.record_objection(agent_id, now)
        self._ledger_entry(agent_id, "objection", {"purpose": "training"}, now)
        await self._committed()

    async def record_metrics(self, samples: Sequence[MetricSample]) -> None:
        """Write the runner's samples of the run's health in the next group commit."""
        self._ensure_running()
        self._records.append((INSERT_METRIC, list(samples)))
        await self._committed()

    async def record_state(self, state: str, at: float | None = None) -> None:
        """Record the run's state (``running``, ``finished``...) and when it changed."""
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}; one of {', '.join(RUN_STATES)}")
        self._ensure_running()
        at = time.time() if at is None else float(at)
        if not math.isfinite(at):
            raise ValueError(f"a run state's time is a finite number, not {at!r}")
        self._records.append((SET_META, [("state", state), ("state_at", json.dumps(at))]))
        await self._committed()

    def _ledger_entry(
        self, agent_id: int | None, kind: str, payload: dict[str, Any], now: float
    ) -> None:
        st = self.forum.state
        action_id = st.next_action_id
        st.next_action_id += 1
        self.forum.changes.ledger.append(
            (action_id, now, time.time(), agent_id, None, kind, json.dumps(payload), None, "ok", "",
             None)
        )  # fmt: skip
        self.last_sim_time = max(self.last_sim_time, now)

    # --- queries ------------------------------------------------------------------------------

    async def _answer(self, item: Submission) -> Outcome:
        action, agent_id, now = item.action, item.agent_id, item.now
        assert action is not None and agent_id is not None

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            return self._run_query(conn, agent_id, action, now)

        try:
            data = await self.reads.run(run)
        except Refusal as refusal:
            return Outcome.refused(refusal)
        return Outcome(ok=True, data=data)

    def _run_query(
        self, conn: sqlite3.Connection, agent_id: int, action: a.Action, now: float
    ) -> dict[str, Any]:
        rules = self.forum.rules
        match action:
            case a.Feed(scope="personal"):
                posts = queries.personal_feed(
                    conn, agent_id, sort=action.sort, window=action.window, limit=action.limit,
                    offset=action.offset, now=now, rising_window_s=rules.rising_window_s,
                )  # fmt: skip
                return {"posts": [p.model_dump(mode="json") for p in posts]}
            case a.Feed():
                if action.submolt is not None and action.submolt not in self.forum.state.submolts:
                    raise Refusal(ErrorCode.NOT_FOUND, f"no submolt m/{action.submolt}")
                posts = queries.feed(
                    conn, sort=action.sort, submolt=action.submolt, window=action.window,
                    limit=action.limit, offset=action.offset, now=now,
                    rising_window_s=rules.rising_window_s,
                )  # fmt: skip
                return {"posts": [p.model_dump(mode="json") for p in posts]}
            case a.Thread():
                view = queries.thread(conn, action.post_id, sort=action.sort, limit=action.limit)
                if view is None:
                    raise Refusal(ErrorCode.NOT_FOUND, f"no post #{action.post_id}")
                return {"thread": view.model_dump(mode="json")}
            case a.Profile():
                handle = action.agent or self.forum.state.agents[agent_id].handle
                found = queries.profile(conn, handle)
                if found is None:
                    raise Refusal(ErrorCode.NOT_FOUND, f"no agent @{handle}")
                return {"profile": found.model_dump(mode="json")}
            case a.Notifications():
                items = queries.notifications(
                    conn, agent_id, since_id=action.since_id, limit=action.limit
                )
                return {"notifications": [n.model_dump(mode="json") for n in items]}
            case a.Search():
                hits = queries.search(conn, action.q, kind=action.kind, limit=action.limit)
                return {"hits": [h.model_dump(mode="json") for h in hits]}
            case a.ListSubmolts():
                subs = queries.submolts(conn, sort=action.sort, limit=action.limit)
                return {"submolts": [s.model_dump(mode="json") for s in subs]}
        raise Refusal(ErrorCode.INVALID, f"{action.type} is not a query")

    # --- group commit -------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._failure is not None:
            raise EngineFailed("the engine stopped after a failed commit") from self._failure
        if self._closed:
            raise EngineFailed("the engine is closed")

    def _committed(self) -> asyncio.Future[None]:
        """A future that resolves when everything applied so far is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._wake.set()
        return future

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            waiting, self._waiting = self._waiting, []
            changes = self.forum.take_changes()
            records, self._records = self._records, []
            try:
                await self.runfile.write(build_batch(changes, self.forum.state) + records)
            except BaseException as exc:
                # Memory is now ahead of the disk: refuse everything from here on.
                self._failure = exc
                # The store's own errors (a full disk) say what to do; pass them on as they are.
                failed = exc if isinstance(exc, RunFileError) else None
                for future in [*waiting, *self._waiting]:
                    if not future.done():
                        future.set_exception(failed or EngineFailed(f"commit failed: {exc!r}"))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            self.commits += 1
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    async def flush(self) -> None:
        """Wait until everything applied so far is committed."""
        self._ensure_running()
        await self._committed()

    async def close(self) -> None:
        """Commit what is pending, then close the run file and the readers."""
        if self._closed:
            return
        if self._failure is None:
            await self._committed()
        self._closed = True
        self._committer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._committer
        self.reads.close()
        await self.runfile.close()
