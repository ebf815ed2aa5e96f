"""The LLM brain: any OpenAI-compatible chat endpoint through the official ``openai`` client.

The prompt has a stable prefix — the skill, then the persona — so that servers with prefix
caching (vLLM, llama.cpp, OpenAI) reuse it on every heartbeat; only the observation changes.
Everything other agents wrote is fenced as untrusted data. The answer is asked for in the most
constrained form the endpoint takes (a JSON schema whose ids are those the agent was shown,
then any JSON object, then plain text), parsed into the same pydantic action models the engine
uses, and checked against what the agent was shown; an invalid answer gets one repair
attempt, then the heartbeat is a recorded no-op. Every decision is recorded whole (request,
raw answers, tokens, timings), so a run can be replayed without the model.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moltsim.agent.brains.base import MAX_ACTIONS, Decision
from moltsim.agent.observation import Observation, excerpt
from moltsim.agent.persona import Persona
from moltsim.agent.skill import Skill
from moltsim.domain.actions import (
    ACTION_ADAPTER,
    MAX_LLM_ANSWER,
    MAX_LLM_REQUEST,
    QUERY_TYPES,
    CreateComment,
    Follow,
    Subscribe,
    Vote,
)
from moltsim.llm.answers import answer_schema
from moltsim.llm.config import LlmConfig, LlmConfigError
from moltsim.llm.endpoints import Endpoints, Exchange, estimate_tokens
from moltsim.llm.replay import Recordings

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["FENCE", "LlmBrain", "LlmConfig", "LlmConfigError", "estimate_tokens", "fence"]

FENCE = "untrusted-content"
OBSERVATION_CHARS = 1_600
"""The user prompt's size limit: with the skill and the persona, about 1,500 tokens in all."""
MEMORY_CHARS = 360
EXCERPT_CHARS = 120
SAMPLE_CHARS = 120


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    thoughts: str = ""
    actions: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ACTIONS)


_FENCE_TAG = re.compile(r"<(/?)(" + FENCE + r")", re.IGNORECASE)


def fence(text: str, source: str) -> str:
    """Enclose another agent's text as data; it cannot open or close a fence from inside,
    whatever the letter case."""
    safe = _FENCE_TAG.sub(lambda m: "<\\" + m.group(1) + FENCE.replace("-", "_"), text)
    return f'<{FENCE} source="{source}">\n{safe}\n</{FENCE}>'


def _bounded_memory(memory: str) -> str:
    """The memory summary within :data:`MEMORY_CHARS`, dropping its oldest action lines."""
    lines = memory.splitlines()
    while len(text := "\n".join(lines)) > MEMORY_CHARS:
        oldest = next((i for i, line in enumerate(lines) if line.startswith("- ")), None)
        if oldest is None:
            return excerpt(text, MEMORY_CHARS)  # no action line left to drop
        del lines[oldest]
    return text


class Shown:
    """The ids an observation showed: the only ones an answer may name."""

    def __init__(self, obs: Observation) -> None:
        noted = [n.post_id for n in obs.notifications if n.post_id]
        self.posts = list(dict.fromkeys([item.post_id for item in obs.feed] + noted))
        self.comments = [n.comment_id for n in obs.notifications if n.comment_id]
        self.submolts = list(obs.submolts[:12])
        actors = [item.author for item in obs.feed] + [n.actor for n in obs.notifications]
        self.agents = sorted({a for a in actors if a != obs.me and not a.startswith("[")})
        self.subscribed = set(obs.extra.get("subscribed", ()))
        self.following = set(obs.extra.get("following", ()))

    def schema(self) -> dict[str, Any]:
        return answer_schema(
            self.posts, self.comments, self.submolts, self.agents,
            joinable=[s for s in self.submolts if s not in self.subscribed],
            followable=[a for a in self.agents if a not in self.following],
        )  # fmt: skip

    def problem(self, action: Any) -> str | None:
        """Why an action names something the agent was not shown, or ``None``."""
        if isinstance(action, CreateComment):
            if action.parent_id is not None and action.parent_id not in self.comments:
                listed = ", ".join(map(str, self.comments)) or "none"
                return (
                    f"parent_id {action.parent_id} is not a comment from your notifications"
                    f" (comments: {listed}); to comment on a post use post_id instead"
                )
            if action.parent_id is None and action.post_id not in self.posts:
                listed = ", ".join(map(str, self.posts)) or "none"
                return (
                    f"post_id {action.post_id} is not a post in your feed or notifications"
                    f" (posts: {listed})"
                )
        if isinstance(action, Subscribe) and action.submolt in self.subscribed:
            return f"you are already subscribed to m/{action.submolt}"
        if isinstance(action, Follow) and action.agent in self.following:
            return f"you already follow @{action.agent}"
        if isinstance(action, Vote):
            ids = self.posts if action.target == "post" else self.comments
            if action.id not in ids:
                listed = ", ".join(map(str, ids)) or "none"
                kind = action.target
                return f"{kind} {action.id} was not shown to you ({kind}s: {listed})"
        return None


class LlmBrain:
    def __init__(
        self,
        persona: Persona,
        skill: Skill,
        config: LlmConfig,
        endpoints: Endpoints | None,
        handle: str | None = None,
        *,
        seed: int = 0,
        recordings: Recordings | None = None,
    ) -> None:
        """``recordings``: replay a run's decisions instead of calling ``endpoints``."""
        if endpoints is None and recordings is None:
            raise LlmConfigError("an LLM brain needs endpoints to call or recordings to replay")
        self.persona = persona
        self.skill = skill
        self.config = config
        self.endpoints = endpoints
        self.recordings = recordings
        self.handle = handle or persona.handle
        self.seed = seed
        self.decisions = 0
        self.system = self._system_prompt()
        self.last_prompt: list[ChatCompletionMessageParam] = []

    def _system_prompt(self) -> str:
        p = self.persona
        t = p.temperament
        samples = "\n".join(f"- {excerpt(s, SAMPLE_CHARS)}" for s in p.voice.sample_posts[:2])
        return (
            f"{self.skill.text.rstrip()}\n\n"
            f"# Who you are\n\n"
            f"You are @{self.handle} ({p.name}). {excerpt(p.bio, 300)}\n"
            f"Interests: {', '.join(p.interests)}. Submolts you like:"
            f" {', '.join(p.submolts) or 'none yet'}. Tone: {p.voice.tone}.\n"
            f"Phrases you like: {'; '.join(p.voice.phrases)}.\n"
            f"Leanings from 0 to 1: post {t.post:.1f}, comment {t.comment:.1f}, vote"
            f" {t.vote:.1f}, disagree {t.contrarian:.1f}.\n"
            f"Your voice:\n{samples}\n"
        )

    def user_prompt(self, obs: Observation) -> str:
        """The observation within :data:`OBSERVATION_CHARS`: memory, then notifications, then
        the feed, each item whole or not at all, so the prompt stays the same size however
        busy the network is (the runtime already caps how many items it fetches).

        Each item says what its id is: ``post 12`` (comment on it with ``post_id``) or
        ``comment 31`` (reply to it with ``parent_id``)."""
        lines = [f"Sim time {obs.now:.0f}. You are @{obs.me}.", _bounded_memory(obs.memory)]
        known = f"Known submolts: {', '.join(obs.submolts[:12]) or '(none)'}"
        headings = "Notifications:\n(none)\nFeed:\n(empty)\n"
        budget = OBSERVATION_CHARS - sum(len(line) + 1 for line in [*lines, known, headings])
        feed_share = budget // 2 if obs.feed else 0  # notifications never crowd out the feed
        notes: list[str] = []
        for n in obs.notifications:
            item = f"- #{n.id} {n.kind} from @{n.actor}"
            if n.comment_id:
                item += f": their comment {n.comment_id}"
                item += f" on post {n.post_id}" if n.post_id else ""
            elif n.post_id:
                item += f" on post {n.post_id}"
            if n.excerpt:
                item += "\n" + fence(excerpt(n.excerpt, EXCERPT_CHARS), n.kind)
            if len(item) + 1 > budget - feed_share:
                break
            notes.append(item)
            budget -= len(item) + 1
        posts: list[str] = []
        for post in obs.feed:
            item = (
                f"- post {post.post_id} in m/{post.submolt} by @{post.author},"
                f" score {post.score}, {post.comment_count} comments\n"
                + fence(f"{post.title}\n{excerpt(post.excerpt, EXCERPT_CHARS)}", "post")
            )
            if len(item) + 1 > budget:
                break
            posts.append(item)
            budget -= len(item) + 1
        lines += ["Notifications:", *(notes or ["(none)"]), "Feed:", *(posts or ["(empty)"])]
        lines.append(known)
        return "\n".join(lines)

    async def decide(self, observation: Observation) -> Decision:
        self.decisions += 1
        shown = Shown(observation)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user_prompt(observation)},
        ]
        request = json.dumps(messages, ensure_ascii=False)
        if len(request) > MAX_LLM_REQUEST:
            request = request[: MAX_LLM_REQUEST - 1] + "…"
        if self.recordings is not None:
            return self._replay(request, shown)
        assert self.endpoints is not None
        started = time.perf_counter()
        seed = zlib.crc32(f"{self.seed}:{self.handle}:{self.decisions}".encode())
        schema = shown.schema()
        record = Record(self.config.model)
        actions: list[dict[str, Any]] = []
        thoughts = ""
        for attempt in range(2):
            self.last_prompt = list(messages)
            exchange = await self.endpoints.complete(messages, schema, seed=seed)
            record.add(exchange)
            if exchange.error:
                record.outcome = "error"
                thoughts = f"model call failed: {exchange.error}"
                break
            content = exchange.content
            problem, actions, thoughts = self._parse(content, shown)
            if problem is None:
                record.outcome = "ok" if attempt == 0 else "repaired"
                break
            record.error = "unparsable"
            messages += [
                {"role": "assistant", "content": content[:4_000]},
                {
                    "role": "user",
                    "content": f"That answer was not valid: {problem}. Reply again with only the"
                    ' JSON object {"thoughts": "...", "actions": [...]} using the action shapes'
                    " from the instructions and only ids shown to you.",
                },
            ]
            actions = []
        if record.outcome in ("ok", "repaired"):
            record.error = ""
        usage = record.action(request, (time.perf_counter() - started) * 1000)
        return Decision(actions, thoughts, usage)

    def _replay(self, request: str, shown: Shown) -> Decision:
        """The recorded decision, parsed as it was: the same answers give the same actions."""
        assert self.recordings is not None
        recorded = self.recordings.take(self.handle, request)
        if recorded is None:
            return Decision([], "no recorded decision left to replay")
        actions: list[dict[str, Any]] = []
        thoughts = ""
        for content in recorded.get("answers", []):
            problem, actions, thoughts = self._parse(content, shown)
            if problem is None:
                break
            actions = []
        return Decision(actions, thoughts, recorded)

    @staticmethod
    def _parse(content: str, shown: Shown) -> tuple[str | None, list[dict[str, Any]], str]:
        """``(problem, actions, thoughts)``; ``problem`` is ``None`` when all is valid."""
        try:
            answer = _Answer.model_validate(json.loads(_json_part(content)))
        except (ValueError, ValidationError) as exc:
            return f"not the JSON object asked for ({str(exc)[:200]})", [], ""
        actions: list[dict[str, Any]] = []
        answer_problem = _too_much_at_once(answer.actions)
        if answer_problem:
            return answer_problem, [], answer.thoughts
        for index, raw in enumerate(answer.actions):
            try:
                action = ACTION_ADAPTER.validate_python(raw)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                return f"action {index}: {where}: {first['msg']}", [], answer.thoughts
            if action.type in QUERY_TYPES or action.type == "llm_call":
                return f"action {index}: {action.type} is not allowed in an answer", [], ""
            if problem := shown.problem(action):
                return f"action {index}: {problem}", [], answer.thoughts
            actions.append(
                action.model_dump(mode="json", exclude_defaults=True) | {"type": action.type}
            )
        return None, actions, answer.thoughts


def _too_much_at_once(actions: list[dict[str, Any]]) -> str | None:
    """What the rate limits would refuse within one answer, whose actions all land at once:
    a second post (1 per 30 min), a second comment (1 per 20 s), a second vote on one target."""
    kinds = [a.get("type") for a in actions]
    if kinds.count("post") > 1:
        return "one post per answer (posts are limited to 1 per 30 min)"
    if kinds.count("comment") > 1:
        return "one comment per answer (comments are limited to 1 per 20 s)"
    votes = [(a.get("target"), a.get("id")) for a in actions if a.get("type") == "vote"]
    if len(set(votes)) < len(votes):
        return "vote once per post or comment"
    return None


_FENCED_JSON = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.DOTALL)


def _json_part(content: str) -> str:
    """The JSON object of a plain-text answer: models without a JSON mode often wrap it in a
    code fence or a sentence."""
    text = content.strip()
    if text.startswith("{"):
        return text
    if match := _FENCED_JSON.search(text):
        return match.group(1)
    first, last = text.find("{"), text.rfind("}")
    return text[first : last + 1] if 0 <= first < last else text


class Record:
    """One decision's ``llm_call`` record, summed over its attempts."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.outcome = "invalid"
        self.error = ""
        self.exchanges: list[Exchange] = []

    def add(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        if exchange.error:
            self.error = exchange.error

    def action(self, request: str, latency_ms: float) -> dict[str, Any]:
        xs = self.exchanges
        last = xs[-1]
        return {
            "type": "llm_call",
            "model": self.model,
            "prompt_tokens": sum(x.prompt_tokens for x in xs),
            "completion_tokens": sum(x.completion_tokens for x in xs),
            "latency_ms": round(latency_ms, 3),
            "outcome": self.outcome,
            "estimated": any(x.estimated for x in xs),
            "error": self.error,
            "queue_ms": round(sum(x.queue_ms for x in xs), 3),
            "server_ms": round(sum(x.server_ms for x in xs), 3),
            "cached_tokens": sum(x.cached_tokens for x in xs),
            "mode": last.mode,
            "endpoint": last.endpoint[:500],
            "request": request,
            "answers": [x.content[:MAX_LLM_ANSWER] for x in xs if not x.error],
        }
