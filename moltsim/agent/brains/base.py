"""The brain interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from moltsim.agent.observation import Observation

MAX_ACTIONS = 5
"""Most actions one decision may take."""


@dataclass(frozen=True, slots=True)
class Decision:
    actions: list[dict[str, Any]]
    thoughts: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    """For LLM brains: model, prompt/completion tokens, latency, outcome of the call."""


class Brain(Protocol):
    async def decide(self, observation: Observation) -> Decision: ...
