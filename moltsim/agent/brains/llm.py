"""The LLM brain: any OpenAI-compatible chat endpoint through the official ``openai`` client.

The prompt has a stable prefix — the skill, then the persona — so that servers with prefix
caching (vLLM, llama.cpp, OpenAI) reuse it on every heartbeat; only the observation changes.
Everything other agents wrote is fenced as untrusted data. Output is parsed into the same
pydantic action models the engine uses; invalid output gets one repair attempt, then the
heartbeat is a recorded no-op.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moltsim.agent.brains.base import MAX_ACTIONS, Decision
from moltsim.agent.observation import Observation, excerpt
from moltsim.agent.persona import Persona
from moltsim.agent.skill import Skill
from moltsim.domain.actions import ACTION_ADAPTER, QUERY_TYPES

if TYPE_CHECKING:  # openai takes over half a second to import: only pools with LLM agents do
    import openai
    from openai.types.chat import ChatCompletionMessageParam

FENCE = "untrusted-content"
OBSERVATION_CHARS = 1_600
"""The user prompt's size limit: with the skill and the persona, about 1,500 tokens in all."""
MEMORY_CHARS = 360
EXCERPT_CHARS = 120
SAMPLE_CHARS = 120


class LlmConfig(BaseModel):
    """Where and how to call the model. The key is read from an environment variable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    """The *name* of the environment variable that holds the key, never the key."""
    max_tokens: int = Field(600, gt=0)
    temperature: float = Field(0.7, ge=0, le=2)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    """Retries with backoff on 429, 5xx and timeouts (done by the openai client)."""
    concurrency: int = Field(8, gt=0)
    """Calls in flight at once per pool."""

    def client(self) -> openai.AsyncOpenAI:
        import openai

        key = os.environ.get(self.api_key_env)
        if key is None:
            raise LlmConfigError(
                f"the environment variable {self.api_key_env} (the API key) is not set"
            )
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=key or "none",
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )


class LlmConfigError(Exception):
    pass


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


def estimate_tokens(text: str) -> int:
    """A labelled estimate (characters / 4) for when the server reports no usage."""
    return max(1, len(text) // 4)


class LlmBrain:
    def __init__(
        self,
        persona: Persona,
        skill: Skill,
        config: LlmConfig,
        client: openai.AsyncOpenAI,
        limit: asyncio.Semaphore,
        handle: str | None = None,
    ) -> None:
        self.persona = persona
        self.skill = skill
        self.config = config
        self.client = client
        self.limit = limit
        self.handle = handle or persona.handle
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
        busy the network is (the runtime already caps how many items it fetches)."""
        lines = [f"Sim time {obs.now:.0f}. You are @{obs.me}.", _bounded_memory(obs.memory)]
        known = f"Known submolts: {', '.join(obs.submolts[:12]) or '(none)'}"
        headings = "Notifications:\n(none)\nFeed:\n(empty)\n"
        budget = OBSERVATION_CHARS - sum(len(line) + 1 for line in [*lines, known, headings])
        feed_share = budget // 2 if obs.feed else 0  # notifications never crowd out the feed
        notes: list[str] = []
        for n in obs.notifications:
            where = f" on post {n.post_id}" if n.post_id else ""
            ref = f" comment {n.comment_id}" if n.comment_id else ""
            item = f"- #{n.id} {n.kind} from @{n.actor}{where}{ref}"
            if n.excerpt:
                item += "\n" + fence(excerpt(n.excerpt, EXCERPT_CHARS), n.kind)
            if len(item) + 1 > budget - feed_share:
                break
            notes.append(item)
            budget -= len(item) + 1
        posts: list[str] = []
        for post in obs.feed:
            item = (
                f"- post {post.post_id} m/{post.submolt} @{post.author}"
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
        import openai
        from openai.types.chat import ChatCompletion

        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user_prompt(observation)},
        ]
        started = time.perf_counter()
        prompt_tokens = completion_tokens = 0
        estimated = False
        outcome = "invalid"
        actions: list[dict[str, Any]] = []
        thoughts = ""
        for attempt in range(2):
            self.last_prompt = list(messages)
            try:
                async with self.limit:
                    response = await self.client.chat.completions.create(
                        model=self.config.model,
                        messages=messages,
                        max_tokens=self.config.max_tokens,
                        temperature=self.config.temperature,
                        response_format={"type": "json_object"},
                    )
            except (openai.APIError, openai.APITimeoutError, ValueError, TypeError) as exc:
                outcome = "error"
                thoughts = f"model call failed: {type(exc).__name__}"
                break
            if not isinstance(response, ChatCompletion):
                outcome = "error"
                thoughts = "the endpoint did not answer with a chat completion"
                break
            content = response.choices[0].message.content or "" if response.choices else ""
            if response.usage is not None:
                prompt_tokens += response.usage.prompt_tokens
                completion_tokens += response.usage.completion_tokens
            else:
                estimated = True
                prompt_tokens += sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
                completion_tokens += estimate_tokens(content)
            problem, actions, thoughts = self._parse(content)
            if problem is None:
                outcome = "ok" if attempt == 0 else "repaired"
                break
            messages += [
                {"role": "assistant", "content": content[:4_000]},
                {
                    "role": "user",
                    "content": f"That answer was not valid: {problem}. Reply again with only the"
                    ' JSON object {"thoughts": "...", "actions": [...]} using the action shapes'
                    " from the instructions.",
                },
            ]
            actions = []
        usage = {
            "type": "llm_call",
            "model": self.config.model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "outcome": outcome,
            "estimated": estimated,
        }
        return Decision(actions, thoughts, usage)

    @staticmethod
    def _parse(content: str) -> tuple[str | None, list[dict[str, Any]], str]:
        """``(problem, actions, thoughts)``; ``problem`` is ``None`` when all is valid."""
        try:
            answer = _Answer.model_validate(json.loads(content))
        except (ValueError, ValidationError) as exc:
            return f"not the JSON object asked for ({str(exc)[:200]})", [], ""
        actions: list[dict[str, Any]] = []
        for index, raw in enumerate(answer.actions):
            try:
                action = ACTION_ADAPTER.validate_python(raw)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                return f"action {index}: {where}: {first['msg']}", [], answer.thoughts
            if action.type in QUERY_TYPES or action.type == "llm_call":
                return f"action {index}: {action.type} is not allowed in an answer", [], ""
            actions.append(
                action.model_dump(mode="json", exclude_defaults=True) | {"type": action.type}
            )
        return None, actions, answer.thoughts
