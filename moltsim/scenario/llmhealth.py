"""How the run's model calls are going, read from the run file as they land.

The runner reads only the ``llm_calls`` rows added since its last look (twice a second), keeps
totals, failures by kind and the recent outcomes, and says so on the progress line: a dead
endpoint shows within a minute, and a run whose every call failed does not pass for a good one.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, deque
from dataclasses import dataclass, field

from moltsim.store.llmstats import calls_since, percentile

SUMMARY_EVERY_S = 60.0
"""How often the runner prints the model's summary while it is used."""
RECENT = 3
"""Calls in a row that must all have failed before the progress line says the model is down
(as many as make an endpoint rest)."""


@dataclass
class LlmHealth:
    calls: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    server_ms: list[float] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The error kind ('' for a good answer) of the latest calls."""
    _last_id: int = 0

    def read(self, conn: sqlite3.Connection) -> None:
        """Take in the calls recorded since the last read."""
        for call in calls_since(conn, self._last_id):
            self._last_id = call.id
            self.calls += 1
            if call.outcome in ("ok", "repaired"):
                self.ok += 1
                self.recent.append("")
            else:
                kind = call.error or "unparsable"
                self.failures[kind] += 1
                self.recent.append(kind)
            self.server_ms.append(call.server_ms)
            self.queue_ms.append(call.queue_ms)

    @property
    def failing(self) -> str:
        """The kind of failure when the latest calls all failed, else ``''``."""
        if len(self.recent) < RECENT or not all(self.recent):
            return ""
        return Counter(self.recent).most_common(1)[0][0]

    @property
    def all_failed(self) -> bool:
        return self.calls > 0 and self.ok == 0

    def failure_text(self) -> str:
        return ", ".join(f"{n:,} {kind}" for kind, n in self.failures.most_common())

    def status(self) -> str:
        """For the progress line: short, it shares the line with the run's figures."""
        if not self.calls:
            return ""
        failed = sum(self.failures.values())
        text = f"LLM {self.ok:,} ok" + (f", {failed:,} failed" if failed else "")
        if self.failing:
            text += f" [bold red]({self.failing}: backing off)[/bold red]"
        return text

    def summary(self) -> str:
        """A line for the console and the log, once a minute while the model is used."""
        failed = sum(self.failures.values())
        return (
            f"model: {self.calls:,} decisions, {failed:,} failed"
            + (f" ({self.failure_text()})" if failed else "")
            + f"; server p50 {percentile(self.server_ms, 0.5) / 1000:.1f} s,"
            f" p95 {percentile(self.server_ms, 0.95) / 1000:.1f} s;"
            f" waiting for a slot p50 {percentile(self.queue_ms, 0.5) / 1000:.1f} s"
        )
