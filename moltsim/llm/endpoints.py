"""The endpoints a pool's LLM brains call: the least loaded first, a failing one rested.

One :class:`Endpoints` per pool holds a client per base URL, the structured-output mode each
endpoint accepted (negotiated on its first call and kept for the run), and a shared limit on
calls in flight. Every call comes back as an :class:`Exchange` — never an exception — with the
answer or the kind of failure, and the time spent waiting for a slot apart from the time spent
in the server.

When an endpoint fails three times in a row it is rested, 5 s at first and doubling up to 60 s;
while every endpoint rests, calls wait for the first to come back. Each change is logged, so a
dead endpoint shows in the run's log and progress line within a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moltsim.llm.config import DEFAULT_CONCURRENCY, MODES, LlmConfig, Mode

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger("moltsim.llm")

FAILURES_BEFORE_REST = 3
FIRST_REST_S = 5.0
LONGEST_REST_S = 60.0


@dataclass(slots=True)
class Exchange:
    """One call's result: ``content`` or an ``error`` kind, tokens as the server reported them
    (or an estimate, ``estimated``), and where the time went."""

    content: str = ""
    error: str = ""
    detail: str = ""
    """What went wrong, in the server's words (for the log, not the record)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False
    queue_ms: float = 0.0
    server_ms: float = 0.0
    mode: Mode = "text"
    endpoint: str = ""


@dataclass
class Endpoint:
    url: str
    client: openai.AsyncOpenAI
    mode: Mode | None = None
    """The structured-output mode this endpoint accepted; ``None`` until negotiated."""
    in_flight: int = 0
    failures: int = 0
    rest_s: float = 0.0
    """The next rest; 0 until the endpoint has rested once."""
    resting_until: float = 0.0
    calls: int = 0
    last_error: str = ""
    """The last failure, in the server's words."""


def error_kind(exc: BaseException) -> str:
    """The record's name for what went wrong with a call."""
    import openai

    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError | ConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "http_429"
    if isinstance(exc, openai.APIStatusError):
        return "http_5xx" if exc.status_code >= 500 else "http_4xx"
    return "not_chat"


def estimate_tokens(text: str) -> int:
    """A labelled estimate (characters / 4) for when the server reports no usage."""
    return max(1, len(text) // 4)


def _rejects_format(exc: BaseException) -> bool:
    """Whether a 4xx answer means "I do not support this response_format" rather than a bad
    key or a missing model, which no other mode would mend."""
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422, 501):
        return False
    text = str(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "schema", "format"))


@dataclass
class Endpoints:
    config: LlmConfig
    endpoints: list[Endpoint] = field(default_factory=list)
    limit: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            fixed: Mode | None = (
                None if self.config.structured_output == "auto" else self.config.structured_output
            )
            self.endpoints = [
                Endpoint(url, self.config.client(url), mode=fixed) for url in self.config.urls
            ]
        if not self.endpoints:
            raise ValueError("no endpoint to call: the local model was not started")
        self.limit = asyncio.Semaphore(self.config.concurrency or DEFAULT_CONCURRENCY)

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.client.close()

    def _pick(self, now: float) -> Endpoint | None:
        ready = [e for e in self.endpoints if e.resting_until <= now]
        if not ready:
            return None
        return min(ready, key=lambda e: (e.in_flight, e.calls))

    async def _endpoint(self) -> Endpoint:
        while (endpoint := self._pick(time.monotonic())) is None:
            wake = min(e.resting_until for e in self.endpoints)
            await asyncio.sleep(max(0.05, wake - time.monotonic()))
        return endpoint

    async def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        schema: dict[str, Any] | None = None,
        *,
        seed: int | None = None,
    ) -> Exchange:
        """Ask for one chat completion in the most constrained mode the endpoint accepts.

        ``schema`` is the JSON schema of a valid answer, used where the endpoint takes
        ``json_schema``."""
        queued = time.perf_counter()
        async with self.limit:
            endpoint = await self._endpoint()
            queue_ms = (time.perf_counter() - queued) * 1000
            endpoint.in_flight += 1
            endpoint.calls += 1
            try:
                exchange = await self._call(endpoint, messages, schema, seed)
            finally:
                endpoint.in_flight -= 1
        exchange.queue_ms = queue_ms
        exchange.endpoint = endpoint.url
        self._note(endpoint, exchange)
        return exchange

    async def _call(
        self,
        endpoint: Endpoint,
        messages: list[ChatCompletionMessageParam],
        schema: dict[str, Any] | None,
        seed: int | None,
    ) -> Exchange:
        import openai
        from openai.types.chat import ChatCompletion

        modes = [endpoint.mode] if endpoint.mode else list(MODES)
        if schema is None:
            modes = [m for m in modes if m != "json_schema"] or ["json_object"]
        started = time.perf_counter()
        for mode in modes:
            extra: dict[str, Any] = {}
            if mode == "json_schema":
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                }
            elif mode == "json_object":
                extra["response_format"] = {"type": "json_object"}
            if seed is not None:
                extra["seed"] = seed
            try:
                response = await endpoint.client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    max_tokens=self.config.max_tokens,
                    temperature=self.config.temperature,
                    **extra,
                )
            except (openai.APIError, ValueError, TypeError) as exc:
                if endpoint.mode is None and mode != modes[-1] and _rejects_format(exc):
                    log.info("%s does not take %s answers: %s", endpoint.url, mode, exc)
                    continue
                return Exchange(
                    error=error_kind(exc),
                    detail=str(exc)[:300],
                    server_ms=(time.perf_counter() - started) * 1000,
                    mode=mode,
                )
            server_ms = (time.perf_counter() - started) * 1000
            if not isinstance(response, ChatCompletion) or not response.choices:
                return Exchange(
                    error="not_chat",
                    detail="the endpoint did not answer with a chat completion",
                    server_ms=server_ms,
                    mode=mode,
                )
            if endpoint.mode is None:
                endpoint.mode = mode
                log.info("%s answers in %s mode", endpoint.url, mode)
            content = response.choices[0].message.content or ""
            exchange = Exchange(content=content, server_ms=server_ms, mode=mode)
            usage = response.usage
            if usage is None:
                exchange.estimated = True
                exchange.prompt_tokens = sum(
                    estimate_tokens(str(m.get("content", ""))) for m in messages
                )
                exchange.completion_tokens = estimate_tokens(content)
            else:
                exchange.prompt_tokens = usage.prompt_tokens
                exchange.completion_tokens = usage.completion_tokens
                details = usage.prompt_tokens_details
                if details is not None and details.cached_tokens:
                    exchange.cached_tokens = details.cached_tokens
                else:
                    exchange.cached_tokens = _llamacpp_cached(response)
            return exchange
        raise AssertionError("unreachable: the last mode always returns")

    def _note(self, endpoint: Endpoint, exchange: Exchange) -> None:
        """Count failures in a row; rest an endpoint that keeps failing, and say so."""
        if exchange.error:
            endpoint.last_error = exchange.detail
        if not exchange.error or exchange.error == "http_4xx":
            # A 4xx is this request's fault (or the key's), not the endpoint's health.
            if endpoint.failures >= FAILURES_BEFORE_REST:
                log.warning("%s answers again", endpoint.url)
            endpoint.failures = 0
            endpoint.rest_s = 0.0
            if exchange.error:
                log.warning("%s refused a call: %s", endpoint.url, exchange.detail)
            return
        endpoint.failures += 1
        log.warning(
            "%s failed (%s, %d in a row): %s",
            endpoint.url, exchange.error, endpoint.failures, exchange.detail,
        )  # fmt: skip
        if endpoint.failures >= FAILURES_BEFORE_REST:
            rest = endpoint.rest_s or FIRST_REST_S
            endpoint.resting_until = time.monotonic() + rest
            log.warning(
                "%s keeps failing (%s); backing off %.0f s", endpoint.url, exchange.error, rest
            )
            endpoint.rest_s = min(LONGEST_REST_S, rest * 2)


def _llamacpp_cached(response: Any) -> int:
    """llama.cpp reports the prompt tokens it reused in ``timings.cache_n``."""
    timings = getattr(response, "timings", None) or (response.model_extra or {}).get("timings")
    if isinstance(timings, dict):
        cached = timings.get("cache_n")
        if isinstance(cached, int) and cached >= 0:
            return cached
    return 0
