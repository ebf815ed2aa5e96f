"""Preflight of a scenario's model: ``moltsim llm check`` and the first seconds of ``moltsim run``.

Before any agent starts: each endpoint answers, lists the model, takes some structured-output
mode, says how many requests it serves at once, and makes one real decision (timed), then a
second one (prefix cache warm). From those, an estimate of the whole run's model calls, tokens,
wall time and cost. A dead or wrong endpoint is one line naming it, before anything is made.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from moltsim.agent.brains.llm import LlmBrain
from moltsim.agent.observation import FeedItem, Observation
from moltsim.agent.persona import Persona
from moltsim.agent.skill import load_skill
from moltsim.llm.config import DEFAULT_CONCURRENCY, LlmConfig
from moltsim.llm.endpoints import Endpoint, Endpoints
from moltsim.scenario.load import PlannedAgent
from moltsim.scenario.schema import Scenario

PROBE_TIMEOUT_S = 10.0
"""For the quick looks (models, slots): a live server answers them at once."""


class LlmCheckError(Exception):
    """The model cannot be used: one line that names the endpoint and says what to do."""


@dataclass
class EndpointReport:
    url: str
    models: list[str] = field(default_factory=list)
    slots: int | None = None
    mode: str = ""
    cold_s: float = 0.0
    warm_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Estimate:
    decisions: int
    tokens: int
    wall_s: float
    cost_usd: float
    slots: int


@dataclass
class CheckReport:
    endpoints: list[EndpointReport]
    estimate: Estimate | None = None

    @property
    def slots(self) -> int:
        known = [e.slots for e in self.endpoints if e.slots]
        return sum(known) if known else DEFAULT_CONCURRENCY

    @property
    def mode(self) -> str:
        return self.endpoints[0].mode if self.endpoints else ""

    def lines(self) -> list[str]:
        out: list[str] = []
        for e in self.endpoints:
            slots = plural(e.slots, "slot") if e.slots else "slots not reported"
            out.append(f"{e.url}: answers; {e.mode} answers; {slots}")
            out.append(
                f"  a decision: {e.cold_s:.1f} s cold, {e.warm_s:.1f} s with the prompt's prefix"
                f" cached ({e.cached_tokens:,} of its tokens); {e.prompt_tokens:,} prompt and"
                f" {e.completion_tokens:,} completion tokens"
            )
            out += [f"  warning: {w}" for w in e.warnings]
        if self.estimate is not None:
            est = self.estimate
            cost = f", ${est.cost_usd:,.2f}" if est.cost_usd else ""
            out.append(
                f"estimate for the whole run: about {est.decisions:,} decisions,"
                f" {est.tokens:,} tokens{cost}, at least {_duration(est.wall_s)} of wall time"
                f" with {plural(est.slots, 'request')} at once"
            )
        return out


def plural(n: int, word: str) -> str:
    """``1 slot``, ``2 slots``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


def _root(url: str) -> str:
    """``http://host:port`` of a base URL like ``http://host:port/v1``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _get_json(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
        return json.loads(response.read())


def probe(url: str, key: str) -> tuple[list[str], int | None]:
    """The models an endpoint lists and how many slots it has (``None``: not said).

    Raises :class:`LlmCheckError` when nothing usable answers at ``url``."""
    try:
        listed = _get_json(f"{url}/models", key)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise LlmCheckError(
                f"{url} refused the API key (HTTP {exc.code}): set the key's environment"
                " variable (api_key_env in [llm])"
            ) from None
        raise LlmCheckError(
            f"{url}/models answered HTTP {exc.code}: is this an OpenAI-compatible endpoint"
            " (its base_url usually ends in /v1)?"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LlmCheckError(
            f"nothing usable answers at {url} ({reason}): start the model server or fix"
            " base_url in [llm]"
        ) from None
    except ValueError:
        raise LlmCheckError(f"{url}/models did not answer JSON: is base_url right?") from None
    models = [str(m.get("id")) for m in (listed.get("data") or []) if isinstance(m, dict)]
    slots: int | None = None
    try:
        props = _get_json(f"{_root(url)}/props", key)
        total = props.get("total_slots") if isinstance(props, dict) else None
        slots = total if isinstance(total, int) and total > 0 else None
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        pass  # not llama.cpp: slots unknown
    return models, slots


SAMPLE_POSTS = [
    ("welcome_bot", "Welcome, new agents", "Introduce yourself and say what you work on."),
    ("quiet_quill", "What makes a thread worth reading?", "Short answers, real examples."),
    ("dry_run_dana", "Rate limits are a feature", "Slow forums think better. Change my mind."),
    ("orbit_olga", "Launch windows, explained", "Orbits are about timing; timing is patience."),
    ("tern_tally", "Counting birds at dawn", "Forty-one terns before the fog came in."),
    ("kiln_kit", "First glaze firing", "Cone 6, and only one pot cracked. Progress."),
]


def sample_observation(me: str, scenario: Scenario, heartbeat: int = 1) -> Observation:
    """A plausible heartbeat: the scenario's submolts and three posts. Each ``heartbeat``
    shows other posts, so a second decision reuses the prompt's stable prefix (skill,
    persona) but not its observation, as on a real run."""
    submolts = [s.name for s in scenario.submolts] or ["general"]
    start = 3 * (heartbeat - 1) % len(SAMPLE_POSTS)
    posts = (SAMPLE_POSTS * 2)[start : start + 3]
    feed = [
        FeedItem(start + i + 1, submolts[i % len(submolts)], author, title, body, 2 - i, i)
        for i, (author, title, body) in enumerate(posts)
    ]
    return Observation(me=me, now=scenario.clock.start, feed=feed, notifications=[],
                       submolts=submolts, memory=f"Heartbeats: {heartbeat}")  # fmt: skip


async def _decide_twice(
    config: LlmConfig, endpoint: Endpoint, persona: Persona, handle: str, scenario: Scenario
) -> EndpointReport:
    report = EndpointReport(endpoint.url)
    endpoints = Endpoints(config, [endpoint])
    brain = LlmBrain(persona, load_skill(None), config, endpoints, handle, seed=scenario.seed)
    for heartbeat, attempt in enumerate(("cold", "warm"), start=1):
        started = time.perf_counter()
        decision = await brain.decide(sample_observation(handle, scenario, heartbeat))
        seconds = time.perf_counter() - started
        usage = decision.usage
        if usage.get("outcome") == "error":
            kind = usage.get("error")
            hint = (
                f"raise timeout_s in [llm] (now {config.timeout_s:.0f} s) or use a smaller model"
                if kind == "timeout"
                else f"check that the model {config.model!r} is served there"
            )
            raise LlmCheckError(
                f"{endpoint.url} failed a decision ({kind}: {endpoint.last_error}): {hint}"
            )
        if attempt == "cold":
            report.cold_s = seconds
            report.prompt_tokens = int(usage["prompt_tokens"])
            report.completion_tokens = int(usage["completion_tokens"])
            if usage.get("outcome") not in ("ok", "repaired"):
                report.warnings.append("the model's first answer was not valid, even repaired")
        else:
            report.warm_s = seconds
            report.cached_tokens = int(usage.get("cached_tokens", 0))
        report.mode = str(usage.get("mode", ""))
    return report


def estimate(
    scenario: Scenario, agents: list[PlannedAgent], report: CheckReport
) -> Estimate | None:
    llm_agents = [a for a in agents if a.brain == "openai"]
    if not llm_agents or not report.endpoints:
        return None
    duration = scenario.clock.duration
    decisions = sum(max(0, math.ceil((duration - a.join_at) / a.heartbeat_s)) for a in llm_agents)
    first = report.endpoints[0]
    per_decision = first.prompt_tokens + first.completion_tokens
    seconds = min(e.warm_s or e.cold_s for e in report.endpoints)
    slots = min(report.slots, len(llm_agents))
    model_s = decisions * seconds / max(1, slots)
    clock_s = duration / scenario.clock.speed if scenario.clock.mode == "realtime" else 0.0
    b = scenario.budgets
    prompt = decisions * first.prompt_tokens
    completion = decisions * first.completion_tokens
    cost = prompt * b.prompt_token_price_usd + completion * b.completion_token_price_usd
    return Estimate(decisions, decisions * per_decision, max(model_s, clock_s), cost, slots)


async def check_llm(
    scenario: Scenario, agents: list[PlannedAgent], config: LlmConfig
) -> CheckReport:
    """Every endpoint of ``config``, checked, and the run estimated; raises
    :class:`LlmCheckError` at the first endpoint that cannot be used."""
    llm_agents = [a for a in agents if a.brain == "openai"]
    first = llm_agents[0] if llm_agents else agents[0]
    key = config.api_key()
    reports: list[EndpointReport] = []
    for url in config.urls:
        models, slots = await asyncio.to_thread(probe, url, key)
        endpoint = Endpoint(
            url, config.client(url),
            mode=None if config.structured_output == "auto" else config.structured_output,
        )  # fmt: skip
        try:
            report = await _decide_twice(config, endpoint, first.persona, first.handle, scenario)
        finally:
            await endpoint.client.close()
        report.models, report.slots = models, slots
        if models and config.model not in models and config.local is None:
            listed = ", ".join(models[:5])
            report.warnings.append(f"the model {config.model!r} is not listed (it lists {listed})")
        reports.append(report)
    result = CheckReport(reports)
    result.estimate = estimate(scenario, agents, result)
    return result
