"""Replaying a run's LLM decisions without the model.

Every decision an LLM brain made is in its run's ledger as a signed ``llm_call`` action: the
request, the raw answers, tokens and timings. ``moltsim run SCENARIO --replay-llm RUN`` gives
each agent its own recorded decisions in order; a stepped run then unfolds as the recorded one
did and exports identically. Each replayed request is compared with the recorded one, so a
replay that drifts (another scenario, another skill) is noticed instead of silently inventing
a different run.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("moltsim.llm")

REPLAY_FILE = "llm-replay.json"
"""In the new run's folder: each agent's recorded decisions, in the order they were made."""


class ReplayError(Exception):
    """The run to replay has no recordings that could be used: one line for the user."""


def write_replay(folder: Path, recordings: dict[str, list[dict[str, Any]]]) -> Path:
    path = folder / REPLAY_FILE
    path.write_text(json.dumps(recordings, ensure_ascii=False))
    return path


class Recordings:
    """The recorded decisions of a pool's agents, handed out one at a time."""

    def __init__(self, by_agent: dict[str, list[dict[str, Any]]]) -> None:
        self._left = {handle: deque(calls) for handle, calls in by_agent.items()}
        self.drifted = 0
        """Decisions whose request differed from the recorded one."""
        self.missing = 0
        """Decisions asked for after an agent's recordings ran out."""

    @classmethod
    def load(cls, path: Path) -> Recordings:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ReplayError(f"cannot read the recordings {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ReplayError(f"{path} does not hold recordings")
        return cls(data)

    def take(self, handle: str, request: str) -> dict[str, Any] | None:
        """The agent's next recorded ``llm_call``, or ``None`` when none is left."""
        left = self._left.get(handle)
        if not left:
            self.missing += 1
            log.warning("@%s: no recorded decision left to replay", handle)
            return None
        recorded = left.popleft()
        if recorded.get("request") and recorded["request"] != request:
            self.drifted += 1
            log.warning(
                "@%s: the replayed run asked something else than the recorded one"
                " (decision %d); its answer is used all the same",
                handle, self.drifted,
            )  # fmt: skip
        return recorded
