"""The engine's sim clock. The engine owns time; agents only read it from ``tick``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RealtimeClock:
    """Sim time = ``start`` + ``speed`` * wall seconds since the clock started.

    A resumed run passes the last sim time of its ledger as ``start``, so time continues
    where it stopped instead of jumping over the hours the engine was down.
    """

    start: float
    speed: float = 1.0
    until: float | None = None
    """The end of the run: time stops there."""
    _wall0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        now = self.start + self.speed * (time.monotonic() - self._wall0)
        return now if self.until is None else min(now, self.until)


@dataclass
class SteppedClock:
    """Sim time advances one tick at a time, when every pool has finished the current tick.

    Within a tick every write is applied at the tick's time, in a fixed order (agent, seq),
    after all of them arrived: with seeded offline brains a stepped run is reproducible.
    """

    start: float
    tick_s: float
    tick: int = 0
    speed: float = 0.0
    """Not a rate: stepped time moves as fast as the agents finish their ticks."""

    def now(self) -> float:
        return self.start + self.tick * self.tick_s

    def advance(self) -> None:
        self.tick += 1
