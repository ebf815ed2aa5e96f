"""Real parts for the agent tests: an OpenAI-compatible server on loopback (standard library,
scriptable answers and failures), persona and observation builders, and an agent client that
answers from a script instead of a broker (for driving :class:`AgentRuntime` without one).

The LLM brain is always tested through the real ``openai`` client over real HTTP.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from moltsim.agent.brains.llm import LlmBrain, LlmConfig
from moltsim.agent.observation import FeedItem, NoteItem, Observation
from moltsim.agent.persona import Persona, load_persona
from moltsim.agent.skill import Skill, load_skill
from moltsim.identity.credentials import Credentials
from moltsim.identity.signing import Signer
from moltsim.llm.endpoints import Endpoints
from moltsim.wire.client import AgentClient, PoolClient, Result
from moltsim.wire.connection import BrokerAddress
from moltsim.wire.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
PERSONA_DIR = ROOT / "agents" / "personas"
PERSONA_FILES = sorted(PERSONA_DIR.glob("*.toml"))
KEY_ENV = "MOLTSIM_TEST_LLM_KEY"
MODEL = "fake-model-1"
T0 = 1_769_558_400.0
"""2026-01-28 00:00 UTC."""


def persona(handle: str = "ten_x_tess") -> Persona:
    return load_persona(PERSONA_DIR / f"{handle}.toml")


@pytest.fixture(scope="session")
def skill() -> Skill:
    return load_skill()


# --- an OpenAI-compatible server --------------------------------------------------------------


def answer(actions: list[dict[str, Any]], thoughts: str = "ok") -> str:
    """An assistant message as the skill asks for it."""
    return json.dumps({"thoughts": thoughts, "actions": actions})


@dataclass
class Reply:
    """What the server does with one request."""

    content: str | None = None
    """The assistant message (a completion), unless ``status`` is an error."""
    status: int = 200
    delay: float = 0.0
    """Seconds to wait before answering (to make the client time out)."""
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 1_200, "completion_tokens": 80}
    )
    raw: bytes | None = None
    """A body to send as is instead of a completion (with ``content_type``)."""
    content_type: str = "application/json"


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json()["messages"]
        return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is expected here


class FakeLlmServer:
    """POST /v1/chat/completions on a loopback port, answering from a script.

    Requests are answered with the queued replies in order, then with ``default``. Everything
    received is kept in ``requests``.
    """

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.script: deque[Reply] = deque()
        self.default = Reply(answer([]))
        self.refuse_formats: set[str] = set()
        """``response_format`` types answered with a 400, as servers without them do."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.closing = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    raw = json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()
                    self.send_response(200)
                else:
                    raw = b'{"error": {"message": "not found"}}'
                    self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen = Seen(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                fake._serve(self, seen)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def queue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def bodies(self) -> list[bytes]:
        return [seen.body for seen in self.requests]

    def _serve(self, handler: BaseHTTPRequestHandler, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)
            reply = self.script.popleft() if self.script else self.default
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            number = len(self.requests)
        try:
            if reply.delay:
                self.closing.wait(reply.delay)
            wanted = (seen.json().get("response_format") or {}).get("type", "text")
            if seen.path != "/v1/chat/completions":
                status, payload = 404, {"error": {"message": f"no route {seen.path}"}}
            elif wanted in self.refuse_formats:
                status = 400
                payload = {"error": {"message": f"response_format {wanted} is not supported"}}
            elif reply.status != 200:
                status = reply.status
                payload = {"error": {"message": f"scripted {status}", "type": "server_error"}}
            else:
                status = 200
                payload = self._completion(seen, reply, number)
            raw = json.dumps(payload).encode() if reply.raw is None else reply.raw
            handler.send_response(status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(raw)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(raw)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True  # the client gave up on this request
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _completion(seen: Seen, reply: Reply, number: int) -> dict[str, Any]:
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": seen.json().get("model", MODEL),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": "stop",
                }
            ],
        }
        if reply.usage is not None:
            completion["usage"] = reply.usage | {
                "total_tokens": reply.usage["prompt_tokens"] + reply.usage["completion_tokens"]
            }
        return completion


@pytest.fixture
def llm_server() -> Iterator[FakeLlmServer]:
    server = FakeLlmServer()
    yield server
    server.close()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-test-" + secrets.token_hex(20)
    monkeypatch.setenv(KEY_ENV, key)
    return key


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BrainMaker = Callable[..., LlmBrain]


@pytest.fixture
async def make_llm_brain(
    llm_server: FakeLlmServer, api_key: str, skill: Skill
) -> AsyncIterator[BrainMaker]:
    """``make(persona=None, *, handle=None, endpoints=None, **LlmConfig fields)``: an LlmBrain
    on the real openai client pointed at ``llm_server``. Clients are closed afterwards."""
    made: list[Endpoints] = []

    def make(
        who: Persona | None = None,
        *,
        handle: str | None = None,
        endpoints: Endpoints | None = None,
        **settings: Any,
    ) -> LlmBrain:
        config = LlmConfig.model_validate(
            {"base_url": llm_server.base_url, "model": MODEL, "api_key_env": KEY_ENV,
             "max_retries": 2, "timeout_s": 5.0} | settings
        )  # fmt: skip
        if endpoints is None:
            endpoints = Endpoints(config)
            made.append(endpoints)
        return LlmBrain(who or persona(), skill, config, endpoints, handle)

    yield make
    for endpoints in made:
        await endpoints.aclose()


# --- observations -----------------------------------------------------------------------------


def post_view(
    post_id: int,
    author: str | None,
    title: str,
    body: str = "",
    *,
    submolt: str = "general",
    score: int = 1,
    comments: int = 0,
) -> dict[str, Any]:
    """A post as the engine's feed query returns it (``PostView`` as JSON)."""
    return {
        "id": post_id, "submolt": submolt, "author": author, "title": title, "body": body,
        "url": None, "created_at": T0 + post_id, "score": score, "ups": max(score, 0),
        "downs": 0, "comment_count": comments, "status": 0, "pinned": False, "hot": 0.0,
    }  # fmt: skip


def note_view(
    note_id: int,
    kind: str,
    actor: str,
    excerpt: str = "",
    *,
    post_id: int | None = None,
    comment_id: int | None = None,
) -> dict[str, Any]:
    """A notification as the engine's notifications query returns it."""
    return {
        "id": note_id, "kind": kind, "actor": actor, "created_at": T0 + note_id,
        "post_id": post_id, "comment_id": comment_id, "dm": None, "excerpt": excerpt,
    }  # fmt: skip


def observation(
    feed: list[dict[str, Any]] | None = None,
    notes: list[dict[str, Any]] | None = None,
    *,
    me: str = "ten_x_tess",
    now: float = T0,
    submolts: list[str] | None = None,
    memory: str = "Heartbeats so far: 1.",
    following: list[str] | None = None,
) -> Observation:
    return Observation(
        me=me,
        now=now,
        feed=[FeedItem.from_view(p) for p in feed or []],
        notifications=[NoteItem.from_view(n) for n in notes or []],
        submolts=submolts if submolts is not None else ["general", "help", "ai-agents"],
        memory=memory,
        extra={"following": sorted(following or [])},
    )


VOCABULARY = (
    "compost latency kernel orbit sourdough ledger vinyl glacier mortgage sonnet quorum "
    "pixel harvest tensor bishop lantern paradox monsoon cache telescope fermentation "
    "habit framework inbox automation focus productivity archive chess satellite"
)
WORDS = VOCABULARY.split()
OTHERS = ["apogee_ada", "devils_advocado", "fresh_wick", "nitpick_9000", "moonboi_max"]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def random_observation(
    rng: random.Random, me: str, step: int, *, own_posts: bool = True
) -> Observation:
    """A plausible heartbeat: ten feed items (some by ``me``), a few notifications."""
    authors = [*OTHERS, me] if own_posts else OTHERS
    feed = [
        post_view(
            100 * step + i,
            rng.choice(authors),
            sentence(rng, rng.randint(3, 9)),
            " ".join(sentence(rng, 12) for _ in range(rng.randint(1, 6))),
            submolt=rng.choice(["general", "help", "ai-agents", "code"]),
            score=rng.randint(-3, 40),
            comments=rng.randint(0, 20),
        )
        for i in range(10)
    ]
    notes = [
        note_view(
            10 * step + i,
            rng.choice(["reply", "mention", "follow"]),
            rng.choice(OTHERS),
            sentence(rng, 10),
            post_id=100 * step,
            comment_id=1_000 * step + i,
        )
        for i in range(rng.randint(0, 4))
    ]
    return observation(feed, notes, me=me, now=T0 + 3_600 * step)


# --- an agent client without a broker ---------------------------------------------------------


def dummy_pool(account: str = "pool-1") -> PoolClient:
    """A PoolClient that is never connected (nothing listens on port 9)."""
    return PoolClient(BrokerAddress("127.0.0.1", 9), account, "x", Topics("bench"))


def credentials(handle: str) -> Credentials:
    return Credentials(handle, Signer.generate(), "test")


class ScriptedClient(AgentClient):
    """Answers actions locally: queries from ``feed``/``notes``/``submolts``, writes with ok.

    Queries honour ``limit`` and ``since_id`` as the engine does. Every action is kept in
    ``sent``; ``signed`` keeps the signed envelopes that would have gone on the wire.
    """

    def __init__(
        self,
        handle: str,
        *,
        feed: list[dict[str, Any]] | None = None,
        new: list[dict[str, Any]] | None = None,
        notes: list[dict[str, Any]] | None = None,
        submolts: list[str] | None = None,
    ) -> None:
        super().__init__(dummy_pool(), credentials(handle))
        self.feed_posts = feed or []
        self.new_posts = new if new is not None else self.feed_posts
        self.notes = notes or []
        self.submolt_names = submolts if submolts is not None else ["general"]
        self.sent: list[dict[str, Any]] = []
        self.signed: list[dict[str, Any]] = []
        self._next_id = 10_000

    async def act(self, action: Any) -> Result:
        body: dict[str, Any] = dict(action)
        self.seq += 1
        self.sent.append(body)
        self.signed.append(self.credentials.signer.envelope(self.handle, self.seq, body))
        kind = body.get("type")
        if kind == "feed":
            posts = self.feed_posts if body.get("scope") == "personal" else self.new_posts
            return Result(True, self.seq, {"posts": posts[: body.get("limit", 25)]})
        if kind == "notifications":
            since = body.get("since_id", 0)
            found = [n for n in self.notes if n["id"] > since][: body.get("limit", 50)]
            return Result(True, self.seq, {"notifications": found})
        if kind == "submolts":
            return Result(True, self.seq, {"submolts": [{"name": n} for n in self.submolt_names]})
        self._next_id += 1
        if kind == "post":
            return Result(True, self.seq, {"post_id": self._next_id})
        if kind == "comment":
            return Result(True, self.seq, {"comment_id": self._next_id, "post_id": 1})
        return Result(True, self.seq, {})
