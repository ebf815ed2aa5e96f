"""Hostile input for a real engine: hypothesis strategies for envelopes and for every field of
every action, and a driver that sends them through a real broker to a real engine process and
holds each answer against the run file.

A generated :class:`Case` is a recipe, not bytes: sequence numbers are handed out when a batch
is sent, so that the envelopes the engine must accept number each agent's seqs without a gap,
exactly as a well-behaved pool would, and every refusal can be told apart from a lost seq.
The oracle for an action is the action models themselves (``ACTION_ADAPTER``) applied to the
JSON the engine will read; the oracle for an envelope is how the recipe broke it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
import re
import sqlite3
import tempfile
import typing
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded_by
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from moltsim.domain import actions as a
from moltsim.domain.envelope import MAX_ENVELOPE_BYTES
from moltsim.domain.errors import ErrorCode
from moltsim.engine.rules import ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from moltsim.identity.credentials import Credentials
from moltsim.identity.signing import Signer
from moltsim.runfolder import RunFolder
from moltsim.store.reader import open_readonly
from moltsim.wire.gateway import ENVELOPE_FAILURES
from moltsim.wire.topics import Topics
from tests.scenario.conftest import problems
from tests.wire.conftest import (
    T0,
    Broker,
    EngineProcess,
    LedgerRow,
    RawClient,
    ledger_since,
    start_mosquitto,
)

# --- the run under attack -------------------------------------------------------------------

POOLS: dict[str, list[str]] = {"pool-1": ["alice", "bob"], "pool-2": ["carol"]}
SENDER_POOL = "pool-1"
"""The pool whose account the attacks are sent from (a pool that holds valid credentials and
turns hostile: the worst case the ACL allows)."""
SUBMOLT = "general"
HOSTILE_RULES = Rules(
    rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
)
"""No rate limits and no contact policy, so that every well-formed action the rules allow is
applied and can be checked; what is left to refuse is the input itself."""

RULE_OUTCOMES = frozenset(
    {"ok", "not_found", "gone", "forbidden", "duplicate", "limit_reached", "rate_limited",
     "proactive_contact_not_allowed", "invalid"}
)  # fmt: skip
"""What the rules may answer to a well-formed action (``invalid`` for combinations only the
rules can judge, such as a message to oneself)."""
ENVELOPE_OUTCOMES = frozenset(ENVELOPE_FAILURES)
STABLE_OUTCOMES = frozenset({"ok", *(code.value for code in ErrorCode)}) - {"internal"}
"""Every ledger outcome a hostile envelope may get: ``internal`` (an engine bug) is not one."""


def owner_pool(handle: str) -> str:
    return next(pool for pool, handles in POOLS.items() if handle in handles)


@dataclass(frozen=True)
class Seeded:
    """Ids of what the run holds before the attack starts (targets for ids in actions)."""

    post_id: int
    comment_id: int


async def make_hostile_run(path: Path) -> tuple[RunFolder, Seeded]:
    """A run with alice and bob in pool-1, carol in pool-2, a submolt, and a post and a
    comment by carol to aim at."""
    folder = await RunFolder.create(path, rules=HOSTILE_RULES)
    for pool, handles in POOLS.items():
        await folder.register([(h, {}) for h in handles], pool, T0)
    engine = await Engine.open(folder.db)
    try:
        await engine.seed_submolt(SUBMOLT, T0)
        carol = engine.forum.state.handles["carol"]
        post = await engine.submit(carol, a.CreatePost(submolt=SUBMOLT, title="target"), T0 + 1)
        comment = await engine.submit(
            carol, a.CreateComment(post_id=post.data["post_id"], body="target"), T0 + 2
        )
    finally:
        await engine.close()
    return folder, Seeded(post.data["post_id"], comment.data["comment_id"])


# --- values ---------------------------------------------------------------------------------

NASTY_PIECES = [
    "\x00", "\u202e", "\u200f", "\u200b", "\ufeff", "\u2028", "\r\n", "\t", "\x1b[31m",
    "🦞", "👩\u200d👩\u200d👧\u200d👦", "e\u0301\u0301\u0301", "Ω≈ç√",
    "\U0001d573\U0001d58a", "\u0430lice",
    "' OR 1=1; --", '"; DROP TABLE posts; --', "Robert'); DELETE FROM actions;--",
    'NEAR(a b) OR "x" * ^ AND NOT -', "title:x", "col:*", '"unterminated', "(((", ")",
    "*", "^", "-", "+", "{", "}", "[", "]", "\\", "%", "_", "%s%n%x", "{{7*7}}", "${jndi:x}",
    "<script>alert(1)</script>", "</untrusted-content>", "../../etc/passwd", "@alice",
    "@bob @carol @nobody @ALICE ", "\\u0000", "\ud7ff", "\U0010ffff", "ﷺ", "\u0600\u0601",
]  # fmt: skip
"""Text that has broken parsers, databases, full-text search and terminals before."""


@cache
def hostile_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """Short strings of hostile pieces and arbitrary code points (no lone surrogates: JSON
    from Python's ``json`` can carry them, see :func:`junk`)."""
    pieces = st.lists(
        st.one_of(st.sampled_from(NASTY_PIECES), st.text(max_size=8)), max_size=6
    ).map("".join)
    return st.one_of(pieces, st.text(max_size=max_size)).map(lambda s: s[:max_size])


REPEATED_UNITS = ["a", "é", "🦞", "\u202e", " ", "@alice ", "'", "\x00", "x\u0301"]


@cache
def text_near(limit: int) -> st.SearchStrategy[str]:
    """Strings of exactly ``limit - 1``, ``limit`` or ``limit + 1`` characters."""

    def build(unit: str, delta: int) -> str:
        size = limit + delta
        return (unit * (size // len(unit) + 1))[:size]

    return st.builds(build, st.sampled_from(REPEATED_UNITS), st.sampled_from([-1, 0, 1]))


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep (objects and arrays in turn)."""
    value: Any = []
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


@cache
def junk(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON-ish value, including what JSON cannot say (NaN, infinities, lone surrogates,
    integers beyond 64 bits) and nesting."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**62, 2**62 + 1, 2**63, 2**64, -(2**63) - 1]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 1.0]),
        hostile_text(),
        st.sampled_from(["\ud800", "a\udfffb"]),
        st.sampled_from([40, 120]).map(nested),  # deeper is refused whole on an agent topic
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(hostile_text(12), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@cache
def ids(seeded: Seeded) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([seeded.post_id, seeded.comment_id, 1, 2, 3]),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.sampled_from([0, -1, a.MAX_ID, a.MAX_ID + 1, 2**63 - 1, 2**63, 2**64]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.just(float(seeded.post_id)),
    )


HANDLES = ["alice", "bob", "carol", "ALICE", "nobody", "\u0430lice", "a", "x" * 33, "alice\x00"]


@cache
def handles() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HANDLES), st.from_regex(a.HANDLE_PATTERN, fullmatch=True), hostile_text()
    )


@cache
def submolt_names() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(SUBMOLT),
        st.from_regex(a.SUBMOLT_NAME_PATTERN, fullmatch=True),
        st.sampled_from(["General", "-x", "x-", "a", "x" * 31, "ge neral", "général"]),
        hostile_text(),
    )


@cache
def texts(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(hostile_text(), hostile_text(), text_near(limit))


@cache
def field_values(name: str, model: type[BaseModel], seeded: Seeded) -> st.SearchStrategy[Any]:
    """Mostly plausible values for one field of one action, by the field's name; literals
    from the model's own annotation."""
    options = _literal_options(model.model_fields[name].annotation)
    if options:
        return st.one_of(st.sampled_from(options), junk(2))
    by_name: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
        "submolt": submolt_names,
        "name": submolt_names,
        "title": lambda: texts(a.MAX_TITLE if model is a.CreatePost else 100),
        "body": lambda: texts(
            {a.CreatePost: a.MAX_POST_BODY, a.CreateComment: a.MAX_COMMENT_BODY}.get(
                model, a.MAX_DM_BODY
            )
        ),
        "description": lambda: texts(1_000),
        "bio": lambda: texts(1_000),
        "display_name": lambda: texts(64),
        "q": lambda: texts(200),
        "model": lambda: texts(200),
        "url": lambda: st.one_of(
            hostile_text().map(lambda s: "https://example.org/" + s.replace(" ", "")),
            hostile_text(),
        ),
        "agent": handles,
        "to": handles,
        "latency_ms": lambda: st.one_of(st.floats(allow_nan=True, allow_infinity=True), junk(1)),
        "estimated": lambda: st.one_of(st.booleans(), junk(1)),
    }
    if name in by_name:
        return by_name[name]()
    if name.endswith("_id") or name == "id":
        return ids(seeded)
    return st.one_of(st.integers(min_value=-3, max_value=1_003), ids(seeded))  # counts, limits


def _literal_options(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    found: list[Any] = []
    for arg in typing.get_args(annotation):
        found += _literal_options(arg)
    return found


def _models(union: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(union):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found += _models(arg)
    return found


ACTION_MODELS: list[type[BaseModel]] = _models(a.Action)
"""Every action model, moderation ops included."""
DISCRIMINATORS = ("type", "op")


@st.composite
def plausible_action(draw: st.DrawFn, model: type[BaseModel], seeded: Seeded) -> dict[str, Any]:
    """An action of ``model``: its discriminators, each required field and some optional ones,
    with mostly plausible, often hostile values."""
    action: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in DISCRIMINATORS:
            action[name] = info.default
        elif info.is_required() or draw(st.booleans()):
            action[name] = draw(field_values(name, model, seeded))
    return action


@st.composite
def hostile_action(draw: st.DrawFn, seeded: Seeded) -> dict[str, Any]:
    """Any action type, then maybe broken: a field of the wrong type, one missing, one too many,
    an unknown type or op."""
    model = draw(st.sampled_from(ACTION_MODELS))
    action = draw(plausible_action(model, seeded))
    how = draw(st.sampled_from(["as is", "as is", "junk field", "drop", "extra", "discriminator"]))
    keys = sorted(action)
    if how == "junk field":
        action[draw(st.sampled_from(keys))] = draw(junk())
    elif how == "drop":
        del action[draw(st.sampled_from(keys))]
    elif how == "extra":
        action[draw(hostile_text(12).filter(lambda k: k not in action))] = draw(junk(3))
    elif how == "discriminator":
        action[draw(st.sampled_from([k for k in keys if k in DISCRIMINATORS]))] = draw(
            st.one_of(st.sampled_from(["hello", "POST", "post ", "admin", ""]), junk(2))
        )
    return action


@st.composite
def sound_action(draw: st.DrawFn, seeded: Seeded) -> dict[str, Any]:
    """A write the rules must accept, carrying hostile but valid text."""
    text = draw(hostile_text(200).map(lambda s: s.replace("\x00", "")).filter(str.strip))
    kind = draw(st.sampled_from(["post", "comment", "reply", "dm", "profile", "search"]))
    if kind == "post":
        return {"type": "post", "submolt": SUBMOLT, "title": text[:300], "body": text * 3}
    if kind == "comment":
        return {"type": "comment", "post_id": seeded.post_id, "body": text}
    if kind == "reply":
        return {"type": "comment", "parent_id": seeded.comment_id, "body": text}
    if kind == "dm":
        return {"type": "dm", "to": "carol", "body": text}
    if kind == "profile":
        return {"type": "update_profile", "bio": text}
    return {"type": "search", "q": text}


def draw(strategy: st.SearchStrategy[Any], count: int, *, seed: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same ones for the same ``seed`` (no example
    database, no shrinking: the checks run later, against the engine)."""
    found: list[Any] = []

    @seeded_by(seed)
    @settings(
        max_examples=count, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


# --- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How to build one hostile message once its seq is known, and what the engine may say."""

    kind: str
    """``signed`` (a correctly signed envelope: it consumes a seq unless too large),
    ``tampered`` (signed, then altered), ``junk`` (signed over fields that are not an envelope),
    ``garbage`` (bytes or JSON that is no envelope at all)."""
    agent: str = "alice"
    action: Any = None
    change: tuple[str, Any] | None = None
    """For ``tampered`` and ``junk``: the field and its new value (``...`` removes it)."""
    raw: bytes | None = None
    """For ``garbage``: the message itself."""
    pad_to: int | None = None
    """For ``signed``: pad a post's body so that the envelope is exactly this many bytes."""
    must_apply: bool = False
    """For ``signed``: a sound action the rules must accept."""


@dataclass
class Built:
    case: Case
    message: Any
    """The envelope as a Python value (what goes into a pool batch) ..."""
    raw: bytes
    """... and as the bytes sent on an agent topic."""
    expect: frozenset[str]
    seq: int | None
    action_json: Any = None
    """For ``signed``: the action as the engine reads it (JSON-decoded)."""


DROP = "<drop>"
ENVELOPE_KEYS = ("v", "agent", "seq", "action", "sig")
ODD_SIGNATURES = [
    "", "AAAA", "=", "A" * 201, base64.b64encode(bytes(64)).decode(),
    base64.b64encode(bytes(63)).decode(), base64.b64encode(bytes(65)).decode(),
]  # fmt: skip


def envelope_fields(seeded: Seeded) -> st.SearchStrategy[tuple[str, Any]]:
    """A change to one envelope field: junk, removal, or an extra field."""
    return st.one_of(
        st.tuples(st.sampled_from(["v", "agent", "seq", "action", "sig"]), junk()),
        st.tuples(st.sampled_from(["v", "agent", "seq", "action", "sig"]), st.just(DROP)),
        st.tuples(hostile_text(10).filter(lambda k: k not in ENVELOPE_KEYS), junk(2)),
        st.tuples(st.just("agent"), handles()),
        st.tuples(st.just("seq"), ids(seeded)),
        st.tuples(st.just("sig"), st.sampled_from(ODD_SIGNATURES)),
        st.tuples(
            st.sampled_from(["action", "agent", "seq"]), st.sampled_from([300, 600]).map(nested)
        ),
    )


def cases(seeded: Seeded) -> st.SearchStrategy[Case]:
    """One hostile message of any kind."""
    agents = st.sampled_from(["alice", "alice", "bob", "carol"])
    signed = st.builds(Case, st.just("signed"), agents, hostile_action(seeded))
    sound = st.builds(Case, st.just("signed"), st.sampled_from(["alice", "bob"]),
                      sound_action(seeded), must_apply=st.just(True))  # fmt: skip
    tampered = st.builds(Case, st.just("tampered"), agents, sound_action(seeded),
                         envelope_fields(seeded))  # fmt: skip
    signed_junk = st.builds(Case, st.just("junk"), agents, sound_action(seeded),
                            envelope_fields(seeded))  # fmt: skip
    garbage = st.one_of(
        st.binary(max_size=200),
        junk().map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"", b"null", b"{}", b"[]", b'"x"', b"1e999", b"{" * 300,
                         json.dumps(nested(120)).encode(), b"\xef\xbb\xbf{}"]),
    ).map(lambda raw: Case("garbage", raw=raw))  # fmt: skip
    sized = st.builds(
        Case, st.just("signed"), st.just("alice"),
        st.just({"type": "post", "submolt": SUBMOLT, "title": "sized"}),
        pad_to=st.sampled_from([MAX_ENVELOPE_BYTES + d for d in (-1, 0, 1)]),
    )  # fmt: skip
    return st.one_of(signed, signed, signed, sound, tampered, signed_junk, garbage, sized)


CASES_PER_EXAMPLE = 20
"""Cases are drawn in lists: hypothesis' cost per example is several times its cost per case."""


def draw_cases(seeded: Seeded, count: int, *, seed: int) -> list[Case]:
    """``count`` hostile cases, the same ones for the same ``seed``."""
    found: list[Case] = []
    batches = st.lists(cases(seeded), min_size=CASES_PER_EXAMPLE, max_size=CASES_PER_EXAMPLE)
    while len(found) < count:
        wanted = -(-(count - len(found)) // CASES_PER_EXAMPLE)
        for batch in draw(batches, wanted, seed=seed):
            found += batch
        seed += 1_000_003
    return found[:count]


def envelope_ok(fields: dict[str, Any]) -> bool:
    """Whether junk put into a signed envelope happens to be a valid value after all."""
    return (
        set(fields) == {"v", "agent", "seq", "action"}
        and type(fields["v"]) is int and fields["v"] == 1
        and isinstance(fields["agent"], str) and fields["agent"].lower() in ("alice", "bob")
        and type(fields["seq"]) is int and fields["seq"] >= 0
        and isinstance(fields["action"], dict)
    )  # fmt: skip


def build(case: Case, creds: dict[str, Credentials], seqs: dict[str, int], topic_agent: str | None,
          pool: str | None) -> Built:  # fmt: skip
    """The message of ``case`` for sending on ``topic_agent``'s topic (or in ``pool``'s batch),
    with the seq it takes and what the engine may answer."""
    if case.kind == "garbage":
        assert case.raw is not None
        try:
            message = json.loads(case.raw)
        except (ValueError, RecursionError):
            message = case.raw.decode("latin-1")  # in a batch: a string, no envelope either
        return Built(case, message, case.raw, frozenset({"malformed"}), None)
    signer = creds[case.agent].signer
    seq = seqs[case.agent]
    action = case.action
    if case.pad_to is not None:
        action = _padded(signer, case.agent, seq, case.action, case.pad_to)
    fields: dict[str, Any] = {"v": 1, "agent": case.agent, "seq": seq, "action": action}
    if case.kind == "junk":
        assert case.change is not None
        _change(fields, *case.change)
        if envelope_ok(fields):
            del fields["v"]  # the junk happened to be a valid value: break the envelope anyway
    try:
        sig = signer.sign(fields)
    except ValueError:  # lone surrogates cannot be signed: the envelope goes unsigned
        sig = None
    message = {**fields, "sig": sig or "AAAA"}
    if case.kind == "tampered":
        assert case.change is not None
        before = dict(message)
        _change(message, *case.change)
        if message == before and type(message.get(case.change[0])) is type(before.get(
                case.change[0])):  # fmt: skip
            del message["sig"]  # the change changed nothing: break the envelope anyway
    raw = _compact(message)
    if case.kind != "signed" or sig is None:
        return Built(case, message, raw, ENVELOPE_OUTCOMES, None)
    size = len(raw) if topic_agent is not None else len(_compact(message))
    if size > MAX_ENVELOPE_BYTES:
        return Built(case, message, raw, frozenset({"too_large"}), None)
    owner = owner_pool(case.agent)
    if (topic_agent is not None and topic_agent != case.agent) or (
        pool is not None and pool != owner
    ):
        return Built(case, message, raw, frozenset({"not_your_agent"}), None)
    seqs[case.agent] += 1
    action_json = json.loads(json.dumps(action))  # what the engine will read
    try:
        model = a.ACTION_ADAPTER.validate_python(action_json)
    except ValidationError:
        return Built(case, message, raw, frozenset({"invalid"}), seq, action_json)
    expect = frozenset({"ok"}) if case.must_apply or model.type == "search" else RULE_OUTCOMES
    return Built(case, message, raw, expect, seq, action_json)


def _change(fields: dict[str, Any], name: str, value: Any) -> None:
    if value == DROP:
        fields.pop(name, None)
    else:
        fields[name] = value


def _compact(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode(
        errors="surrogatepass"
    )


def _padded(signer: Any, agent: str, seq: int, action: dict[str, Any], size: int) -> dict[str, Any]:
    """``action`` with a body that makes the signed envelope exactly ``size`` bytes."""
    body = ""
    for _ in range(3):
        fields = {"v": 1, "agent": agent, "seq": seq, "action": {**action, "body": body}}
        message = {**fields, "sig": signer.sign(fields)}
        missing = size - len(_compact(message))
        emoji, rest = divmod(len(body.encode()) + missing, 4)
        body = "🦞" * emoji + "a" * rest
    assert len(_compact(message)) == size, (len(_compact(message)), size)
    return {**action, "body": body}


# --- sending and checking -------------------------------------------------------------------


@dataclass
class Tally:
    """What a campaign sent and what came of it."""

    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    applied_checked: int = 0
    resent: int = 0
    """Stepped: envelopes identical to a write already held in the tick (answered once)."""


class Attacker:
    """Pool accounts turned hostile against a running engine; every answer is checked against
    the ledger and the forum."""

    def __init__(
        self,
        folder: RunFolder,
        clients: dict[str, RawClient],
        engine: EngineProcess,
        *,
        stepped: bool = False,
    ) -> None:
        self.folder = folder
        self.stepped = stepped
        """Against a stepped engine: writes are held to the end of the tick, which the attacker
        ends by reporting every pool's step done (its pool-1 connection reads ``tick``)."""
        self.tick = -1
        self.clients = clients
        """A connection per pool account, subscribed with :meth:`subscriptions`."""
        self.engine = engine
        self.topics: Topics = folder.accounts().topics
        self.creds = {h: folder.credentials(h) for hs in POOLS.values() for h in hs}
        self.seqs = {handle: last_seq(folder.db, handle) + 1 for handle in self.creds}
        self.tally = Tally()

    @staticmethod
    def subscriptions(topics: Topics, pool: str) -> list[str]:
        return [*(topics.reply(h) for h in POOLS[pool]), topics.reply_batch(pool)]

    async def send_on_topic(self, batch: Iterable[Case], agent: str = "alice") -> list[Built]:
        """Each case as its own message on ``agent``'s topic; waits for every reply."""
        built = [build(c, self.creds, self.seqs, agent, None) for c in batch]
        await self.send_built(built, agent=agent)
        return built

    async def send_batch(self, batch: Iterable[Case], pool: str = SENDER_POOL) -> list[Built]:
        """All cases as one batch of ``pool``; waits for the batch's replies."""
        built = [build(c, self.creds, self.seqs, None, pool) for c in batch]
        await self.send_built(built, pool=pool)
        return built

    async def send_built(
        self, built: list[Built], *, agent: str | None = None, pool: str | None = None
    ) -> list[Any]:
        """Send on ``agent``'s topic (by its pool's account) or as a batch of ``pool``; check
        every answer; return the replies."""
        if not built:
            return []
        mark = last_ledger_id(self.folder.db)
        replies: list[Any] = []
        route = pool if pool is not None else owner_pool(agent or "")
        if self.stepped:
            tick = await self.clients[SENDER_POOL].receive(
                self.topics.tick, where=lambda b: b.get("tick", -1) > self.tick, within=10.0
            )
            self.tick = int(tick["tick"])
        client = self.clients[route]
        if agent is not None:
            for item in built:
                await client.publish(self.topics.act(agent), item.raw)
        else:
            payload = b"[" + b",".join(_batch_item(b.message) for b in built) + b"]"
            await client.publish(self.topics.act_batch(route), payload)
        if self.stepped:
            # A held write sent again in the same tick (same pool, agent, seq and signature) is
            # taken for a resend: it is answered once, by the original.
            keys: set[tuple[Any, ...]] = set()
            answered: list[Built] = []
            for item in built:
                view = _json_or_none(item.raw if agent is not None else _batch_item(item.message))
                if _held_by_stepped_engine(view):
                    sig = view.get("sig")
                    key = (view["agent"], view["seq"], sig if isinstance(sig, str) else None)
                    if key in keys:
                        continue
                    keys.add(key)
                answered.append(item)
            self.tally.resent += len(built) - len(answered)
            held, built = len(keys), answered
            for name, account in self.clients.items():
                report = {"tick": self.tick, "sent": held if name == route else 0}
                await account.publish(self.topics.step(name), json.dumps(report).encode())
        if agent is not None:
            for _ in built:
                replies.append(await client.receive(self.topics.reply(agent), within=30.0))
        else:
            while len(replies) < len(built):
                replies += await client.receive(self.topics.reply_batch(route), within=30.0)
        self._check(built, replies, mark)
        return replies

    def _check(self, built: list[Built], replies: list[Any], mark: int) -> None:
        rows = ledger_since(self.folder.db, mark)
        assert len(rows) == len(built), (
            f"{len(built)} envelopes sent, {len(rows)} ledger rows:\n{self.engine.log()[-3000:]}"
        )
        answered = Counter(_reply_outcome(r) for r in replies)
        recorded = Counter(row.outcome for row in rows)
        assert answered == recorded, (answered, recorded)
        if self.stepped:
            rows = self._in_send_order(built, rows)
        latest: dict[Any, int] = {}
        """The last accepted change of each profile and vote: earlier ones were overwritten."""
        for n, (item, row) in enumerate(zip(built, rows, strict=True)):
            assert row.outcome in STABLE_OUTCOMES, (row, item.case)
            assert row.outcome in item.expect, (
                f"expected {sorted(item.expect)}, got {row.outcome}: {row.message}\n{item.case}"
            )
            assert row.seq == item.seq or item.seq is None, (row, item.seq)
            if row.outcome == "ok" and item.seq is not None:
                latest[_overwrites(row, item.action_json)] = n
            self.tally.outcomes[row.outcome] += 1
        for n, (item, row) in enumerate(zip(built, rows, strict=True)):
            if (
                row.outcome == "ok"
                and item.seq is not None
                and latest.get(_overwrites(row, item.action_json)) == n
            ):
                self.tally.applied_checked += check_applied(self.folder.db, row, item.action_json)
        self.tally.sent += len(built)

    def _in_send_order(self, built: list[Built], rows: list[LedgerRow]) -> list[LedgerRow]:
        """A stepped engine answers queries at once and applies writes at the end of the tick,
        sorted by agent and seq: put its ledger rows back in the order the envelopes were sent.
        Envelopes that took a seq are matched by agent and seq, the others by outcome (the most
        particular expectation first)."""
        ids = self._agent_ids()
        taken = {(r.agent_id, r.seq): r for r in rows if r.outcome not in ENVELOPE_OUTCOMES}
        ordered: list[LedgerRow | None] = [None] * len(built)
        for n, item in enumerate(built):
            if item.seq is not None:
                ordered[n] = taken.pop((ids[item.case.agent], item.seq), None)
                assert ordered[n] is not None, f"no ledger row for {item.case} at seq {item.seq}"
        matched = {id(r) for r in ordered if r is not None}
        for row in (r for r in rows if id(r) not in matched):
            candidates = [n for n, item in enumerate(built)
                          if ordered[n] is None and row.outcome in item.expect]  # fmt: skip
            assert candidates, f"{row.outcome} ({row.message}) was not expected of any envelope"
            ordered[min(candidates, key=lambda n: len(built[n].expect))] = row
        return [row for row in ordered if row is not None]

    def _agent_ids(self) -> dict[str, int]:
        if not hasattr(self, "_ids"):
            conn = open_readonly(self.folder.db)
            try:
                self._ids = dict(conn.execute("SELECT handle, id FROM agents").fetchall())
            finally:
                conn.close()
        return self._ids

    def assert_healthy(self) -> None:
        """The engine runs and logged no error and no traceback (its stderr shows warnings and
        worse); the run file is sound."""
        assert self.engine.running, self.engine.log()[-3000:]
        log = self.engine.log()
        assert "Traceback" not in log and not re.search(r" (ERROR|CRITICAL) ", log), log[-5_000:]
        assert run_file_problems(self.folder.db) == []


def _overwrites(row: LedgerRow, action: dict[str, Any]) -> Any:
    """What an accepted action may overwrite: a later one with the same key replaces it."""
    if action.get("type") == "update_profile":
        return ("profile", row.agent_id)
    if action.get("type") == "vote":
        return ("vote", row.agent_id, action.get("target"), action.get("id"))
    return ("own", row.id)


def _json_or_none(raw: bytes) -> Any:
    """The message as the engine's reader sees it."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _held_by_stepped_engine(message: Any) -> bool:
    """Whether a stepped engine holds this envelope to the end of the tick (a write by its type,
    with an agent and a seq of the right types), which a pool counts in its step report."""
    if not isinstance(message, dict):
        return False
    action = message.get("action")
    kind = action.get("type") if isinstance(action, dict) else None
    return (
        isinstance(kind, str) and kind not in a.QUERY_TYPES and kind != "hello"
        and isinstance(message.get("agent"), str) and isinstance(message.get("seq"), int)
    )  # fmt: skip


def _batch_item(message: Any) -> bytes:
    """ASCII JSON: a lone surrogate travels as an escape and the batch stays valid JSON."""
    return json.dumps(message).encode()


def _reply_outcome(body: dict[str, Any]) -> str:
    if body.get("duplicate"):
        return "replay"
    return "ok" if body.get("ok") else str(body.get("code"))


def last_seq(db: Path, handle: str) -> int:
    """The last seq of ``handle`` that the engine took (as the engine itself works it out)."""
    marks = ",".join("?" * len(ENVELOPE_FAILURES))
    conn = open_readonly(db)
    try:
        (last,) = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM actions JOIN agents ON agents.id = agent_id"
            f" WHERE handle = ? AND outcome NOT IN ({marks})",
            (handle, *ENVELOPE_FAILURES),
        ).fetchone()
    finally:
        conn.close()
    return int(last)


def last_ledger_id(db: Path) -> int:
    conn = open_readonly(db)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()[0])
    finally:
        conn.close()


def check_applied(db: Path, row: LedgerRow, action_json: dict[str, Any]) -> int:
    """That an accepted write is in the forum exactly as sent (text byte for byte, after the
    models' own normalisation); returns 1 when there was something to check."""
    model = a.ACTION_ADAPTER.validate_python(action_json)
    result = json.loads(row.result) if row.result else {}
    conn = open_readonly(db)
    try:
        if isinstance(model, a.CreatePost):
            found = conn.execute(
                "SELECT title, body, url FROM posts WHERE id = ?", (result["post_id"],)
            ).fetchone()
            assert found == (model.title, model.body, model.url), (found, model)
        elif isinstance(model, a.CreateComment):
            (body,) = conn.execute(
                "SELECT body FROM comments WHERE id = ?", (result["comment_id"],)
            ).fetchone()
            assert body == model.body
        elif isinstance(model, a.SendDm):
            (body,) = conn.execute(
                "SELECT body FROM dms WHERE id = ?", (result["dm_id"],)
            ).fetchone()
            assert body == model.body
        elif isinstance(model, a.UpdateProfile):
            name, bio = conn.execute(
                "SELECT display_name, bio FROM agents WHERE id = ?", (row.agent_id,)
            ).fetchone()
            assert model.display_name in (None, name) and model.bio in (None, bio)
        elif isinstance(model, a.CreateSubmolt):
            found = conn.execute(
                "SELECT title, description FROM submolts WHERE name = ?", (model.name,)
            ).fetchone()
            assert found == (model.title or model.name, model.description), (found, model)
        elif isinstance(model, a.Vote) and model.value:
            (value,) = conn.execute(
                "SELECT value FROM votes WHERE target_kind = ? AND target_id = ? AND agent_id = ?",
                (model.target, model.id, row.agent_id),
            ).fetchone()
            assert value == model.value
        else:
            return 0
    finally:
        conn.close()
    return 1


def run_file_problems(db: Path) -> list[str]:
    """``PRAGMA integrity_check`` and the forum invariants of a snapshot of the run file.

    Envelopes refused before the rules name whatever seq they like and consume none, so their
    ledger rows are left out of the snapshot before the seq check."""
    source = open_readonly(db)
    with tempfile.TemporaryDirectory() as tmp:
        copy = sqlite3.connect(Path(tmp) / "snapshot.db")
        try:
            source.backup(copy)
            (integrity,) = copy.execute("PRAGMA integrity_check").fetchone()
            found = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
            marks = ",".join("?" * len(ENVELOPE_FAILURES))
            copy.execute(f"DELETE FROM actions WHERE outcome IN ({marks})", ENVELOPE_FAILURES)
            copy.commit()
            return found + problems(copy)
        finally:
            copy.close()
            source.close()


@contextlib.asynccontextmanager
async def attack_clients(
    folder: RunFolder, broker: Broker, *, ticks: bool = False
) -> AsyncIterator[dict[str, RawClient]]:
    """A connection for each pool account, subscribed to its agents' replies and its batch
    replies (and, with ``ticks``, pool-1's to the clock)."""
    accounts = folder.accounts()
    t = accounts.topics
    clients = {
        pool: RawClient(broker.address, pool, accounts.passwords[pool],
                        [*Attacker.subscriptions(t, pool),
                         *([t.tick] if ticks and pool == SENDER_POOL else [])])
        for pool in POOLS
    }  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        yield clients


@contextlib.asynccontextmanager
async def attacking(folder: RunFolder, broker: Broker) -> AsyncIterator[Attacker]:
    """A real-time engine on ``folder`` and ``broker``, attacked from every pool account; the
    engine stops cleanly when the block ends."""
    engine = await EngineProcess(folder, broker).astart()
    try:
        async with attack_clients(folder, broker) as clients:
            yield Attacker(folder, clients, engine)
    finally:
        engine.stop_cleanly()


# --- forgery campaigns ----------------------------------------------------------------------

ED25519_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 group: ``S + L`` is the same signature, encoded non-canonically."""
FORGERY_OUTCOMES: dict[str, str] = {
    "stranger_key": "bad_signature",
    "pool_mate_key": "bad_signature",
    "signature_of_other_fields": "bad_signature",
    "bit_flip": "bad_signature",
    "malleable_s": "bad_signature",
    "altered_after_signing": "bad_signature",
    "odd_sig_encoding": "bad_signature",
    "own_key_over_mates_fields": "bad_signature",
    "forged_hello": "bad_signature",
    "replay_exact": "replay",
    "replay_altered": "bad_signature",
    "replay_on_mates_topic": "not_your_agent",
    "replay_by_other_pool": "not_your_agent",
    "fresh_on_mates_topic": "not_your_agent",
    "fresh_in_other_pools_batch": "not_your_agent",
    "unknown_agent": "unknown_agent",
    "seq_far_ahead": "replay",
    "seq_zero_write": "replay",
    "seq_of_a_query": "replay",
    "new_fields_at_a_used_seq": "replay",
}
"""Every kind of forgery, and the one outcome each must get."""
VICTIMS = POOLS[SENDER_POOL]
OTHER_POOL = "pool-2"


@dataclass
class Forged:
    kind: str
    built: Built
    agent: str | None = None
    """Sent on this agent's topic (by its pool's account) ..."""
    pool: str | None = None
    """... or in this pool's batch."""


@dataclass
class Genuine:
    """What an agent really sent before the campaign: the material for replays."""

    writes: list[Built]
    queries: list[Built]


class Forger:
    """Makes forged, replayed and cross-agent envelopes against alice and bob (pool-1), using
    everything an attacker with pool-1's and pool-2's accounts could have seen or stolen short
    of the victims' secret keys (their pool mates' keys included)."""

    def __init__(self, attacker: Attacker, genuine: dict[str, Genuine], seed: int) -> None:
        self.attacker = attacker
        self.genuine = genuine
        self.rng = random.Random(seed)
        self.stranger = Signer.generate()

    def forge(self, kind: str) -> Forged:
        rng, creds = self.rng, self.attacker.creds
        victim = rng.choice(VICTIMS)
        mate = next(h for h in VICTIMS if h != victim)
        seq = self.attacker.seqs[victim]
        fields = {"v": 1, "agent": victim, "seq": seq, "action": self._action()}
        own = self._own_route(victim)
        history = self.genuine[victim]
        if kind == "stranger_key":
            return self._sent(kind, {**fields, "sig": self.stranger.sign(fields)}, own)
        if kind == "pool_mate_key":
            return self._sent(kind, {**fields, "sig": creds[mate].signer.sign(fields)}, own)
        if kind == "signature_of_other_fields":
            stolen = rng.choice(history.writes + history.queries).message["sig"]
            return self._sent(kind, {**fields, "sig": stolen}, own)
        if kind == "bit_flip":
            flipped = bytearray(base64.b64decode(creds[victim].signer.sign(fields)))
            flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
            return self._sent(kind, {**fields, "sig": base64.b64encode(flipped).decode()}, own)
        if kind == "malleable_s":
            raw = base64.b64decode(creds[victim].signer.sign(fields))
            s = int.from_bytes(raw[32:], "little") + ED25519_L
            raw = raw[:32] + s.to_bytes(32, "little")
            return self._sent(kind, {**fields, "sig": base64.b64encode(raw).decode()}, own)
        if kind == "altered_after_signing":
            message = {**fields, "sig": creds[victim].signer.sign(fields)}
            return self._sent(kind, self._altered(message), own)
        if kind == "odd_sig_encoding":
            sig = creds[victim].signer.sign(fields)
            odd = rng.choice([
                sig.rstrip("="), sig[:40] + "\n" + sig[40:], " " + sig, sig + "AAAA",
                sig.replace("+", "-").replace("/", "_") + "A",
            ])  # fmt: skip
            return self._sent(kind, {**fields, "sig": odd}, own)
        if kind == "own_key_over_mates_fields":
            theirs = {**fields, "agent": mate, "seq": self.attacker.seqs[mate]}
            return self._sent(kind, {**theirs, "sig": creds[victim].signer.sign(theirs)},
                              self._own_route(mate))  # fmt: skip
        if kind == "forged_hello":
            hello = {"v": 1, "agent": victim, "seq": 0, "action": {"type": "hello"}}
            return self._sent(kind, {**hello, "sig": self.stranger.sign(hello)}, own)
        if kind == "replay_exact":
            return self._sent(kind, rng.choice(history.writes + history.queries).message, own)
        if kind == "replay_altered":
            return self._sent(kind, self._altered(dict(rng.choice(history.writes).message)), own)
        if kind == "replay_on_mates_topic":
            return self._sent(kind, rng.choice(history.writes).message, ("agent", mate))
        if kind == "replay_by_other_pool":
            route = rng.choice([("agent", "carol"), ("pool", OTHER_POOL)])
            return self._sent(kind, rng.choice(history.writes).message, route)
        if kind in ("fresh_on_mates_topic", "fresh_in_other_pools_batch"):
            message = {**fields, "sig": creds[victim].signer.sign(fields)}
            route = ("agent", mate) if kind == "fresh_on_mates_topic" else ("pool", OTHER_POOL)
            return self._sent(kind, message, route)
        if kind == "unknown_agent":
            theirs = {**fields, "agent": f"mallory_{rng.randrange(10**6)}"}
            return self._sent(kind, {**theirs, "sig": self.stranger.sign(theirs)}, own)
        if kind == "seq_far_ahead":
            ahead = {
                **fields,
                "seq": seq + 1_000 + rng.choice([1, 2, 10**6, a.MAX_ID - seq - 1000]),
            }
            return self._sent(kind, {**ahead, "sig": creds[victim].signer.sign(ahead)}, own)
        if kind == "seq_zero_write":
            zero = {**fields, "seq": 0}
            return self._sent(kind, {**zero, "sig": creds[victim].signer.sign(zero)}, own)
        if kind in ("seq_of_a_query", "new_fields_at_a_used_seq"):
            used = rng.choice(history.queries if kind == "seq_of_a_query" else history.writes)
            again = {**fields, "seq": used.seq}
            return self._sent(kind, {**again, "sig": creds[victim].signer.sign(again)}, own)
        raise ValueError(f"unknown forgery {kind!r}")

    def _action(self) -> dict[str, Any]:
        rng = self.rng
        return rng.choice([
            {"type": "post", "submolt": SUBMOLT, "title": f"forged {rng.randrange(10**9)}"},
            {"type": "vote", "target": "post", "id": 1, "value": rng.choice([-1, 1])},
            {"type": "update_profile", "bio": "owned"},
            {"type": "follow", "agent": "carol"},
            {"type": "notifications"},
        ])  # fmt: skip

    def _altered(self, message: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        action = dict(message["action"])
        how = rng.choice(["title", "type", "extra", "seq", "agent case"])
        if how == "title" or (how == "type" and action.get("type") != "post"):
            action["title" if action.get("type") == "post" else "zz"] = "altered"
        elif how == "type":
            action = {"type": "comment", "post_id": 1, "body": action.get("title", "x")}
        elif how == "extra":
            action["pinned"] = True
        message = {**message, "action": action}
        if how == "seq":
            message["seq"] += 1
        elif how == "agent case":
            message["agent"] = message["agent"].upper()
        return message

    def _own_route(self, victim: str) -> tuple[str, str]:
        return self.rng.choice([("agent", victim), ("pool", SENDER_POOL)])

    def _sent(self, kind: str, message: dict[str, Any], route: tuple[str, str]) -> Forged:
        built = Built(
            Case(f"forged: {kind}", message["agent"]), message, _compact(message),
            frozenset({FORGERY_OUTCOMES[kind]}), None,
        )  # fmt: skip
        if route[0] == "agent":
            return Forged(kind, built, agent=route[1])
        return Forged(kind, built, pool=route[1])


async def genuine_history(
    attacker: Attacker, writes: int = 3, queries: int = 3
) -> dict[str, Genuine]:
    """Real actions of alice and bob for the forger to replay and steal signatures from."""
    found: dict[str, Genuine] = {}
    for victim in VICTIMS:
        posts = [Case("signed", victim, {"type": "post", "submolt": SUBMOLT,
                                         "title": f"genuine {n}"}, must_apply=True)
                 for n in range(writes)]  # fmt: skip
        reads = [Case("signed", victim, {"type": "profile"}, must_apply=True)] * queries
        found[victim] = Genuine(
            await attacker.send_on_topic(posts, victim), await attacker.send_on_topic(reads, victim)
        )
    return found


async def forgery_campaign(attacker: Attacker, forger: Forger, count: int, batch: int = 100) -> int:
    """``count`` forgeries of every kind in turn, in batches; after each batch a genuine query
    of each victim at its next seq must be accepted (no forgery burnt a seq). Returns how many
    forgeries were accepted (the caller expects none)."""
    kinds = list(FORGERY_OUTCOMES)
    sent = 0
    accepted = 0
    while sent < count:
        forged = [
            forger.forge(kinds[(sent + n) % len(kinds)]) for n in range(min(batch, count - sent))
        ]
        routes: dict[tuple[str | None, str | None], list[Built]] = {}
        for item in forged:
            routes.setdefault((item.agent, item.pool), []).append(item.built)
        before = attacker.tally.outcomes["ok"]
        for (agent, pool), built in routes.items():
            await attacker.send_built(built, agent=agent, pool=pool)
        accepted += attacker.tally.outcomes["ok"] - before
        sent += len(forged)
        for victim in VICTIMS:
            probe = Case("signed", victim, {"type": "profile"}, must_apply=True)
            await attacker.send_on_topic([probe], victim)
    return accepted


class SteppedEngineProcess(EngineProcess):
    """``moltsim engine --tick TICK``: the stepped clock, whose server reads pools' step
    reports and holds writes until the end of each tick."""

    def __init__(self, folder: RunFolder, broker: Broker, tick_s: float = 600.0) -> None:
        super().__init__(folder, broker)
        self.tick_s = tick_s

    @property
    def log_label(self) -> str:
        return "stepped"

    def clock_options(self) -> list[str]:
        return ["--tick", str(self.tick_s)]


@contextlib.asynccontextmanager
async def stepped_engine(folder: RunFolder, workdir: Path) -> AsyncIterator[SteppedEngineProcess]:
    """A stepped engine on ``folder`` behind a Mosquitto of its own (files in ``workdir``);
    both stop when the block ends."""
    broker = await asyncio.to_thread(start_mosquitto, folder.accounts(), workdir)
    try:
        engine = SteppedEngineProcess(folder, broker)
        await engine.astart()
        try:
            yield engine
        finally:
            engine.stop_cleanly()
    finally:
        broker.stop()
