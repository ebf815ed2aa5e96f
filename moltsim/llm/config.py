"""``[llm]``: which model the LLM brains call, and how.

A scenario names either a local model (``local = "qwen2.5-coder-1.5b"``: ``moltsim run``
fetches it and serves it itself) or one or more OpenAI-compatible endpoints (``base_url`` or
``base_urls``). The defaults fit a small model on a laptop's CPU: a decision there takes up to
a minute and a half cold, so the timeout is long and a failed call is retried once, not four
times (each retry sends the whole prompt again).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:  # openai takes over half a second to import: only LLM processes do
    import openai

StructuredOutput = Literal["auto", "json_schema", "json_object", "text"]
Mode = Literal["json_schema", "json_object", "text"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "text")
"""Most constrained first: the order in which ``auto`` tries them."""
LOCAL_MODEL_NAME = "local-model"
"""The model name sent to the local server (llama.cpp ignores it)."""
DEFAULT_CONCURRENCY = 4
"""Calls in flight per pool when the server does not say how many slots it has."""


class LlmConfigError(Exception):
    """The ``[llm]`` settings cannot work (a missing key, no endpoint): one line for the user."""


def check_url(url: str) -> str:
    """An http(s) URL with a host, or a ``ValueError`` that says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{url!r} is not an http:// or https:// URL (like http://127.0.0.1:8080/v1)"
        )
    return url.rstrip("/")


class LlmConfig(BaseModel):
    """Where and how to call the model. The key is read from an environment variable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    local: Annotated[str, Field(min_length=1)] | None = None
    """A local model from moltsim's catalogue, served by ``moltsim run`` itself."""
    base_url: str | None = None
    base_urls: list[str] = []
    """Several endpoints serving the same model: each call goes to the least loaded one, and
    one that fails is rested while the others go on."""
    model: str = LOCAL_MODEL_NAME
    api_key_env: str | None = None
    """The *name* of the environment variable that holds the key, never the key. Unset:
    ``OPENAI_API_KEY`` when it is set, else no key (a local server needs none)."""
    max_tokens: int = Field(600, gt=0)
    temperature: float = Field(0.7, ge=0, le=2)
    timeout_s: float = Field(180.0, gt=0)
    """Per HTTP call; a cold decision on a busy 2-core CPU takes 55-75 s."""
    max_retries: int = Field(1, ge=0)
    """Retries of one HTTP call on 429, 5xx, timeouts and lost connections."""
    concurrency: Annotated[int, Field(gt=0)] | None = None
    """Calls in flight at once per pool; unset: the server's slots, or 4 when it does not say."""
    structured_output: StructuredOutput = "auto"
    """``auto`` tries json_schema, then json_object, then plain text with a repair pass, and
    keeps the first the endpoint accepts."""
    slots: Annotated[int, Field(ge=1, le=64)] | None = None
    """Local model: requests the server decodes at once (unset: sized to the machine)."""
    threads: Annotated[int, Field(ge=1, le=512)] | None = None
    """Local model: CPU threads (unset: the idle cores)."""
    step_timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Stepped clock: how long a tick waits for the LLM agents' decisions (unset: bounded by
    the timeout, the retries and the number of agents per slot)."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else check_url(url)

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        checked = [check_url(u) for u in urls]
        if len(set(checked)) != len(checked):
            raise ValueError("base_urls lists an endpoint twice")
        return checked

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [n for n in ("local", "base_url", "base_urls") if getattr(self, n)]
        if not given:
            raise ValueError(
                'name a model: local = "qwen2.5-coder-1.5b", or base_url = "http://..."'
            )
        if len(given) > 1:
            raise ValueError(f"give one of local, base_url or base_urls, not {' and '.join(given)}")
        return self

    @property
    def urls(self) -> list[str]:
        """The endpoints to call (empty for a local model not started yet)."""
        return self.base_urls or ([self.base_url] if self.base_url else [])

    def api_key(self) -> str:
        """The key from the environment; ``"none"`` for a keyless server."""
        if self.api_key_env is None:
            return os.environ.get("OPENAI_API_KEY") or "none"
        key = os.environ.get(self.api_key_env)
        if key is None:
            raise LlmConfigError(
                f"the environment variable {self.api_key_env} (the API key named by"
                " [llm] api_key_env) is not set"
            )
        return key or "none"

    def client(self, base_url: str) -> openai.AsyncOpenAI:
        """An openai client for one endpoint; retries are the client's, timeouts per call."""
        import openai

        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=self.api_key(),
            timeout=self.timeout_s,
            max_retries=self.max_retries,
        )

    def served_at(self, base_url: str, slots: int | None = None) -> LlmConfig:
        """This configuration pointed at the server ``moltsim run`` started for ``local``."""
        return self.model_copy(
            update={"local": None, "base_url": base_url, "concurrency": self.concurrency or slots}
        )
