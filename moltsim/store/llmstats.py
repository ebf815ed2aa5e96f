"""The run's model calls in figures: for ``moltsim stats``, the watcher's header, the report
and the benchmarks, all from one reading of a run file.

Which writes the model made is told by the ledger: a pool sends each decision's ``llm_call``
record right before the actions that decision chose, so an LLM agent's writes after its first
record are the model's (the subscriptions its host makes at its first heartbeat come before).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from moltsim.domain.actions import QUERY_TYPES

_QUERIES = ", ".join(f"'{t}'" for t in sorted(QUERY_TYPES))
_MODEL_WRITES = f"""
WITH firsts AS (
    SELECT agent_id, MIN(seq) AS first FROM actions WHERE type = 'llm_call' GROUP BY agent_id
)
SELECT a.outcome, COUNT(*) FROM actions a JOIN firsts f ON f.agent_id = a.agent_id
WHERE a.seq > f.first AND a.type NOT IN ('llm_call', {_QUERIES}) AND a.outcome != 'replay'
GROUP BY a.outcome
"""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class LlmFigures:
    calls: int = 0
    """Decisions an LLM brain made (each may hold a repair attempt)."""
    ok: int = 0
    repaired: int = 0
    invalid: int = 0
    """Answers still invalid after the repair attempt."""
    errors: int = 0
    """Decisions that came to nothing: the call failed, or the answer stayed invalid."""
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    proposed_actions: int = 0
    valid_actions: int = 0
    """The model's writes that the engine accepted."""
    refused_by_code: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated_calls: int = 0
    server_ms_p50: float = 0.0
    server_ms_p95: float = 0.0
    queue_ms_p50: float = 0.0
    queue_ms_p95: float = 0.0
    modes: dict[str, int] = field(default_factory=dict)

    @property
    def valid_action_rate(self) -> float:
        """Accepted model writes over everything the model tried: its writes, and the
        decisions whose answer never became valid."""
        tried = self.proposed_actions + self.invalid
        return self.valid_actions / tried if tried else 0.0

    @property
    def not_found_rate(self) -> float:
        found = self.refused_by_code.get("not_found", 0)
        return found / self.proposed_actions if self.proposed_actions else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "valid_action_rate": round(self.valid_action_rate, 4),
            "not_found_rate": round(self.not_found_rate, 4),
            "cache_hit_rate": round(self.cache_hit_rate, 4),
        }


def llm_figures(conn: sqlite3.Connection) -> LlmFigures:
    """Everything about the run's model calls (zeros for a run without any)."""
    f = LlmFigures()
    columns = {row[1] for row in conn.execute("PRAGMA table_info(llm_calls)")}
    if not columns:
        return f
    recorded = "error" in columns  # run files from before the recordings lack the details
    rows = conn.execute(
        "SELECT outcome, prompt_tokens, completion_tokens, estimated"
        + (", error, cached_tokens, server_ms, queue_ms, mode" if recorded else
           ", '', 0, latency_ms, 0, ''")
        + " FROM llm_calls"
    ).fetchall()  # fmt: skip
    server: list[float] = []
    queue: list[float] = []
    for outcome, prompt, completion, estimated, error, cached, server_ms, queue_ms, mode in rows:
        f.calls += 1
        f.prompt_tokens += prompt
        f.completion_tokens += completion
        f.cached_tokens += cached
        f.estimated_calls += bool(estimated)
        if outcome == "ok":
            f.ok += 1
        elif outcome == "repaired":
            f.repaired += 1
        else:
            f.errors += 1
            f.invalid += outcome == "invalid"
            kind = error or ("unparsable" if outcome == "invalid" else "error")
            f.errors_by_kind[kind] = f.errors_by_kind.get(kind, 0) + 1
        if mode:
            f.modes[mode] = f.modes.get(mode, 0) + 1
        server.append(server_ms)
        queue.append(queue_ms)
    f.server_ms_p50, f.server_ms_p95 = percentile(server, 0.5), percentile(server, 0.95)
    f.queue_ms_p50, f.queue_ms_p95 = percentile(queue, 0.5), percentile(queue, 0.95)
    for outcome, count in conn.execute(_MODEL_WRITES):
        f.proposed_actions += count
        if outcome == "ok":
            f.valid_actions += count
        else:
            f.refused_by_code[outcome] = count
    return f


@dataclass(frozen=True, slots=True)
class CallRow:
    id: int
    outcome: str
    error: str
    server_ms: float
    queue_ms: float


def calls_since(conn: sqlite3.Connection, last_id: int) -> list[CallRow]:
    """The model calls recorded after ``last_id``, in order (for live views)."""
    try:
        rows = conn.execute(
            "SELECT id, outcome, error, server_ms, queue_ms FROM llm_calls WHERE id > ?"
            " ORDER BY id",
            (last_id,),
        ).fetchall()
    except sqlite3.Error:
        return []  # a run file from before the recordings
    return [CallRow(*row) for row in rows]


def recorded_decisions(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Each agent's accepted ``llm_call`` actions (what ``--replay-llm`` replays), in seq
    order, by handle."""
    rows = conn.execute(
        "SELECT g.handle, a.payload FROM actions a JOIN agents g ON g.id = a.agent_id"
        " WHERE a.type = 'llm_call' AND a.outcome = 'ok' ORDER BY a.agent_id, a.seq"
    ).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for handle, payload in rows:
        found.setdefault(handle, []).append(json.loads(payload))
    return found
