"""From raw envelopes to engine submissions and back to replies, with no transport in sight.

The gateway decides everything that is about the *envelope* — size, JSON, shape, which agent,
whether this pool may act for it, the signature, the sequence number — and hands the rest to
the engine, in arrival order, as one group. Every envelope, refused or not, reaches the
ledger. The engine server moves bytes between MQTT and this class; tests drive it directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import VerifyKey
from pydantic import ValidationError
from pydantic_core import to_json

from moltsim.domain.actions import ACTION_ADAPTER, QUERY_TYPES
from moltsim.domain.envelope import HELLO_SEQ, MAX_ENVELOPE_BYTES, Envelope
from moltsim.domain.errors import ErrorCode, Refusal
from moltsim.domain.results import Outcome
from moltsim.engine.service import Engine, Submission
from moltsim.identity.signing import verify, verify_key

SEQ_WINDOW = 256
"""How many recent sequence numbers per agent are remembered (duplicates within it get the
original result; older ones are refused as stale)."""
MAX_SEQ_AHEAD = 1_000
"""How far past the last seen seq an envelope may jump before it is refused."""
ENVELOPE_FAILURES = (
    "malformed",
    "too_large",
    "unknown_agent",
    "bad_signature",
    "replay",
    "not_your_agent",
)
"""Ledger outcomes of envelopes that never reached the rules: they consume no seq."""
VERIFY_AHEAD_MIN = 32
"""Groups at least this large have their signatures checked on several cores at once."""
VERIFY_THREADS = max(1, min(4, (os.cpu_count() or 1) - 1))
"""Threads that check signatures beside the event loop (libsodium releases the GIL)."""


@dataclass(slots=True)
class Inbound:
    """One envelope as it arrived: its bytes, and who could have sent it."""

    raw: bytes
    topic_agent: str | None = None
    """The agent named by the topic (``act/{agent}``), or ``None`` for a pool batch."""
    pool: str | None = None
    """The pool named by the topic (``act-batch/{pool}``), or ``None`` for ``act/{agent}``."""
    parsed: Any = None
    """The envelope already parsed from JSON (taken from a batch), if it was."""
    envelope: Envelope | None = None
    """The envelope validated ahead of the checks, when its signature was checked ahead."""
    signed: bool | None = None
    """Whether its signature verified, when checked ahead (``None``: not yet checked)."""


@dataclass(slots=True)
class Reply:
    """What goes back: to ``agent``'s reply topic (or the pool's batch), and an event if any."""

    agent: str | None
    body: dict[str, Any]
    event: dict[str, Any] | None = None

    def payload(self) -> bytes:
        return to_json(self.body)


@dataclass(slots=True)
class _SeqState:
    last: int = 0
    seen: OrderedDict[int, asyncio.Future[dict[str, Any]] | dict[str, Any] | None] = field(
        default_factory=OrderedDict
    )
    """Recent seqs: the reply of a write (or a future while it commits); ``None`` for a query."""

    def remember(
        self, seq: int, value: asyncio.Future[dict[str, Any]] | dict[str, Any] | None
    ) -> None:
        self.seen[seq] = value
        if seq > self.last:
            self.last = seq
        horizon = self.last - SEQ_WINDOW
        while self.seen and next(iter(self.seen)) <= horizon:
            self.seen.popitem(last=False)


@dataclass(slots=True)
class _Pending:
    inbound: Inbound
    submission: Submission
    agent: str | None
    seq: int | None
    state: _SeqState | None = None
    original: asyncio.Future[dict[str, Any]] | dict[str, Any] | None = None
    """For a duplicate: the original reply (or the future of it)."""
    future: asyncio.Future[dict[str, Any]] | None = None


class Gateway:
    """Checks envelopes and drives the engine. One per engine."""

    def __init__(self, engine: Engine, now: Any) -> None:
        self.engine = engine
        self.now = now
        """A callable returning the current sim time (the engine's clock)."""
        self._keys: dict[int, VerifyKey] = {}
        self._seqs: dict[int, _SeqState] = {}
        self._verifiers: ThreadPoolExecutor | None = None
        self._turn: asyncio.Future[None] | None = None
        """Resolved once the latest group has been checked and applied: groups are checked and
        applied strictly in arrival order, even while one waits for its signatures."""

    @classmethod
    async def open(cls, engine: Engine, now: Any) -> Gateway:
        gateway = cls(engine, now)
        await engine.reads.run(gateway._load_seqs)
        return gateway

    def _load_seqs(self, conn: sqlite3.Connection) -> None:
        """Rebuild the recent sequence numbers of every agent from the ledger."""
        excluded = ",".join(f"'{code}'" for code in ENVELOPE_FAILURES)
        for agent_id in list(self.engine.forum.state.agents):
            rows = conn.execute(
                "SELECT seq, type, outcome, message, result FROM actions"
                f" WHERE agent_id = ? AND seq > 0 AND outcome NOT IN ({excluded})"
                " ORDER BY seq DESC LIMIT ?",
                (agent_id, SEQ_WINDOW),
            ).fetchall()
            if not rows:
                continue
            state = self._seqs[agent_id] = _SeqState()
            handle = self.engine.forum.state.agents[agent_id].handle
            for seq, kind, outcome, message, result in reversed(rows):
                if kind in QUERY_TYPES:
                    state.remember(seq, None)
                    continue
                data = json.loads(result) if result else {}
                if outcome == "ok":
                    body = {"ok": True, **data}
                else:
                    body = {"ok": False, "code": outcome, "message": message, **data}
                state.remember(seq, {"v": 1, "agent": handle, "seq": seq, **body})

    def last_seq(self, agent_id: int) -> int:
        state = self._seqs.get(agent_id)
        return 0 if state is None else state.last

    # --- the pipeline -------------------------------------------------------------------------

    async def handle(self, inbound: list[Inbound]) -> list[Reply]:
        """Check, apply and answer a group of envelopes, in order; returns after the commit."""
        earlier, turn = self._turn, asyncio.get_running_loop().create_future()
        self._turn = turn
        try:
            if len(inbound) >= VERIFY_AHEAD_MIN:
                await self._verify_ahead(inbound)
            if earlier is not None and not earlier.done():
                await earlier
            now = self.now()
            pending = [self._check_safely(item, now) for item in inbound]
        finally:
            # The next group wakes on a later turn of the loop, after this group's actions
            # are applied (``submit_many`` applies them before its first await).
            turn.set_result(None)
        outcomes = await self.engine.submit_many([p.submission for p in pending])
        replies: list[Reply] = []
        for p, outcome in zip(pending, outcomes, strict=True):
            if p.original is not None:
                original = p.original
                body = await original if isinstance(original, asyncio.Future) else original
                replies.append(Reply(p.agent, {**body, "duplicate": True}))
                continue
            body = {"v": 1, "agent": p.agent, "seq": p.seq, **outcome.to_json_dict()}
            if p.future is not None and not p.future.done():
                p.future.set_result(body)
                assert p.state is not None and p.seq is not None
                p.state.seen[p.seq] = body
            event = None
            action = p.submission.action
            if outcome.ok and action is not None and action.type not in QUERY_TYPES:
                event = {"type": action.type, "agent": p.agent, "at": p.submission.now,
                         **outcome.data}  # fmt: skip
            replies.append(Reply(p.agent, body, event))
        return replies

    def _refuse(
        self, item: Inbound, now: float, code: ErrorCode, message: str, **known: Any
    ) -> _Pending:
        submission = Submission(
            known.get("agent_id"),
            None,
            now,
            seq=known.get("seq"),
            payload=_printable(item.raw or _serialised(item.parsed)),
            sig=known.get("sig"),
            refusal=Refusal(code, message),
            kind=known.get("kind"),
        )
        return _Pending(item, submission, known.get("handle") or item.topic_agent, known.get("seq"))

    def _check_safely(self, item: Inbound, now: float) -> _Pending:
        """Check one envelope; whatever it contains, it fails alone."""
        try:
            return self._check(item, now)
        except (RecursionError, ValueError, TypeError) as exc:
            return self._refuse(item, now, ErrorCode.MALFORMED, f"unreadable envelope: {exc}")

    async def _verify_ahead(self, inbound: list[Inbound]) -> None:
        """Check the signatures of a large group on several cores at once; the checks that
        follow, in arrival order, then only read the answers. Whatever cannot be checked ahead
        (too large, malformed, unknown agent) is left to them."""
        jobs: list[tuple[Inbound, VerifyKey, Envelope]] = []
        handles = self.engine.forum.state.handles
        agents = self.engine.forum.state.agents
        for item in inbound:
            try:
                if _size(item) > MAX_ENVELOPE_BYTES:
                    continue
                envelope = _parse(item)
            except (ValidationError, RecursionError, ValueError, TypeError):
                continue
            item.envelope = envelope  # the in-order check need not parse it again
            agent_id = handles.get(envelope.agent.lower())
            if agent_id is not None:
                jobs.append((item, self._key(agent_id, agents[agent_id].public_key), envelope))
        if not jobs:
            return
        if self._verifiers is None:
            self._verifiers = ThreadPoolExecutor(VERIFY_THREADS, "moltsim-verify")
        share = -(-len(jobs) // (VERIFY_THREADS + 1))
        loop = asyncio.get_running_loop()
        ahead = [
            loop.run_in_executor(self._verifiers, _verify_all, jobs[i : i + share])
            for i in range(share, len(jobs), share)
        ]
        _verify_all(jobs[:share])  # this thread takes a share too
        await asyncio.gather(*ahead)

    def close(self) -> None:
        if self._verifiers is not None:
            self._verifiers.shutdown(wait=True)
            self._verifiers = None

    def _check(self, item: Inbound, now: float) -> _Pending:
        size = _size(item)
        if size > MAX_ENVELOPE_BYTES:
            return self._refuse(
                item, now, ErrorCode.TOO_LARGE,
                f"{size} bytes; envelopes are limited to {MAX_ENVELOPE_BYTES}",
            )  # fmt: skip
        try:
            envelope = item.envelope or _parse(item)
        except ValidationError as exc:
            return self._refuse(item, now, ErrorCode.MALFORMED, _first_error(exc))
        handle, seq, sig = envelope.agent, envelope.seq, envelope.sig
        known: dict[str, Any] = {"handle": handle, "seq": seq, "sig": sig}
        kind = envelope.action.get("type")
        if isinstance(kind, str) and len(kind) <= 32:
            known["kind"] = kind
        forum_state = self.engine.forum.state
        agent_id = forum_state.handles.get(handle.lower())
        if agent_id is None:
            return self._refuse(
                item, now, ErrorCode.UNKNOWN_AGENT, f"@{handle} is not registered", **known
            )
        agent = forum_state.agents[agent_id]
        known["agent_id"] = agent_id
        if item.topic_agent is not None and item.topic_agent != agent.handle:
            return self._refuse(
                item, now, ErrorCode.NOT_YOUR_AGENT,
                f"an envelope for @{handle} on the topic of @{item.topic_agent}", **known,
            )  # fmt: skip
        if item.pool is not None and agent.pool != item.pool:
            return self._refuse(
                item, now, ErrorCode.NOT_YOUR_AGENT,
                f"pool {item.pool!r} may not act for @{handle}", **known,
            )  # fmt: skip
        signed = item.signed
        if signed is None:
            signed = _signed(self._key(agent_id, agent.public_key), envelope)
        if not signed:
            return self._refuse(
                item, now, ErrorCode.BAD_SIGNATURE,
                f"the signature does not verify against @{handle}'s registered key", **known,
            )  # fmt: skip
        payload = to_json(envelope.action).decode()
        state = self._seqs.setdefault(agent_id, _SeqState())
        if seq == HELLO_SEQ:
            if kind != "hello":
                return self._refuse(
                    item, now, ErrorCode.REPLAY, "seq 0 is reserved for hello", **known
                )
            answer = Outcome.success(last_seq=state.last, sim_time=now)
            submission = Submission(agent_id, None, now, seq=seq, payload=payload, sig=sig,
                                    answered=answer, kind="hello")  # fmt: skip
            return _Pending(item, submission, agent.handle, seq)
        if seq > state.last + MAX_SEQ_AHEAD:
            return self._refuse(
                item, now, ErrorCode.REPLAY,
                f"seq {seq} is too far ahead of the last seq {state.last}", **known,
            )  # fmt: skip
        if seq <= state.last - SEQ_WINDOW:
            return self._refuse(
                item, now, ErrorCode.REPLAY,
                f"seq {seq} is stale (last seq {state.last})", **known,
            )  # fmt: skip
        original = state.seen.get(seq)
        if original is None and seq in state.seen:
            return self._refuse(
                item, now, ErrorCode.REPLAY,
                f"seq {seq} was already used (by a query or a refused action); ask again with a"
                " new seq", **known,
            )  # fmt: skip
        if original is not None:
            pending = self._refuse(
                item, now, ErrorCode.REPLAY,
                f"seq {seq} was already processed; its original result was sent again", **known,
            )  # fmt: skip
            pending.original = original
            return pending
        try:
            action = ACTION_ADAPTER.validate_python(envelope.action)
        except ValidationError as exc:
            state.remember(seq, None)
            submission = Submission(
                agent_id, None, now, seq=seq, payload=payload, sig=sig,
                refusal=Refusal(ErrorCode.INVALID, _first_error(exc)), kind=known.get("kind"),
            )  # fmt: skip
            return _Pending(item, submission, agent.handle, seq)
        submission = Submission(agent_id, action, now, seq=seq, payload=payload, sig=sig)
        pending = _Pending(item, submission, agent.handle, seq, state)
        if action.type in QUERY_TYPES:
            state.remember(seq, None)
        else:
            pending.future = asyncio.get_running_loop().create_future()
            state.remember(seq, pending.future)
        return pending

    def _key(self, agent_id: int, public_key: bytes) -> VerifyKey:
        key = self._keys.get(agent_id)
        if key is None:
            key = self._keys[agent_id] = verify_key(public_key)
        return key


def _size(item: Inbound) -> int:
    """An envelope taken from a pool batch is measured as compact JSON: the limit holds
    whichever topic it came by."""
    return len(item.raw) if item.raw or item.parsed is None else len(to_json(item.parsed))


def _parse(item: Inbound) -> Envelope:
    if item.parsed is not None:
        return Envelope.model_validate(item.parsed)
    return Envelope.model_validate_json(item.raw)


def _signed(key: VerifyKey, envelope: Envelope) -> bool:
    fields = {"v": envelope.v, "agent": envelope.agent, "seq": envelope.seq,
              "action": envelope.action}  # fmt: skip
    return verify(key, fields, envelope.sig)


def _verify_all(jobs: list[tuple[Inbound, VerifyKey, Envelope]]) -> None:
    for item, key, envelope in jobs:
        try:
            item.signed = _signed(key, envelope)
        except (RecursionError, ValueError, TypeError):
            item.signed = None  # the in-order check meets the same error and refuses it


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "envelope"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _serialised(value: Any) -> bytes:
    try:
        return to_json(value)
    except (ValueError, RecursionError):
        return repr(value)[:4_096].encode()


def _printable(raw: bytes, limit: int = 4_096) -> str:
    """The raw envelope as ledger text: JSON if it is valid UTF-8, else base64; truncated."""
    try:
        text = raw[:limit].decode()
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(raw[: limit // 2]).decode()
    if len(raw) > limit:
        text += f"…(+{len(raw) - limit} bytes)"
    return text
