"""MQTT topic names of one run (``sim`` is the run id)."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "moltsim"


@dataclass(frozen=True, slots=True)
class Topics:
    sim: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.sim}"

    def act(self, agent: str) -> str:
        """Where an agent's pool publishes its signed envelopes."""
        return f"{self.base}/act/{agent}"

    def act_batch(self, pool: str) -> str:
        """Where a pool may publish a JSON array of its own agents' envelopes."""
        return f"{self.base}/act-batch/{pool}"

    def reply(self, agent: str) -> str:
        return f"{self.base}/reply/{agent}"

    def reply_batch(self, pool: str) -> str:
        return f"{self.base}/reply-batch/{pool}"

    @property
    def tick(self) -> str:
        return f"{self.base}/tick"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def step(self, pool: str) -> str:
        """Where a pool says it finished a stepped tick (and how many writes it sent)."""
        return f"{self.base}/step/{pool}"

    @property
    def step_any(self) -> str:
        return f"{self.base}/step/+"

    @property
    def control(self) -> str:
        """The runner's commands to the engine (only the engine account may publish here)."""
        return f"{self.base}/control"

    @property
    def control_result(self) -> str:
        return f"{self.base}/control-result"

    @property
    def all(self) -> str:
        return f"{self.base}/#"

    @property
    def act_any(self) -> str:
        return f"{self.base}/act/+"

    @property
    def act_batch_any(self) -> str:
        return f"{self.base}/act-batch/+"
