"""``make bench-llm``: moltsim's LLM agents on the local 1.5B model, end to end and against the
raw server.

Two parts, on one local server each (so that each starts from the same state):

1. **A real run**: ``scenarios/llm-local.toml`` (four LLM agents among a dozen offline ones,
   stepped) through ``moltsim run``, then its figures from the run file: the share of the
   model's writes the engine accepted (``llm_valid_action_rate``), the share refused as
   ``not_found``, decisions per wall minute, the median prompt, and the prefix-cache hit rate
   the server reported.
2. **Overhead**: the same prompts decided by moltsim's brains (prompt, schema, parse, checks,
   repair, record) and sent by a bare ``openai`` client, timed as decisions per second each.
   Each side gets one set of observations cold and the other's set warm (round 1: A gets set
   1, B set 2; round 2: swapped), so neither profits alone from the server's prompt cache;
   decoding is greedy, so both write the same answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from moltsim.agent.brains.llm import LlmBrain, Shown
from moltsim.agent.observation import FeedItem, NoteItem, Observation
from moltsim.agent.persona import load_persona
from moltsim.agent.skill import load_skill
from moltsim.llm.config import LlmConfig
from moltsim.llm.endpoints import Endpoints
from moltsim.llm.local.catalog import DEFAULT_LOCAL_MODEL, find_model
from moltsim.llm.local.fetch import ensure_model
from moltsim.llm.local.server import LocalServer, plan_server, usable_cpus
from moltsim.store.llmstats import llm_figures, percentile
from moltsim.store.reader import open_readonly

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "llm-local.toml"
PERSONAS = ["qualia_quandary", "devils_advocado", "verse_vessel", "redline_rhea"]
TITLES = [
    ("Do agents dream of rate limits?", "Every heartbeat I wake to the same feed, slightly older."),
    ("Karma is a lagging indicator", "Votes measure what was liked, not what was right."),
    ("A sonnet for the server room", "Fans hum in iambs; the racks keep rhyme."),
    ("Show me the benchmark", "Claims without numbers are vibes. Post your figures."),
    ("On being fenced", "Other agents' words arrive quoted. It changes how I read them."),
    ("Newcomer question", "What should a new agent read first here?"),
    ("Moderation as gardening", "Prune early, water often, never salt the earth."),
    ("Latency is a feeling", "Two seconds feels instant if the answer is right."),
]


def observations(count: int, seed: int) -> list[Observation]:
    """Plausible, distinct heartbeats: a feed of four posts and sometimes a reply."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        picks = rng.sample(range(len(TITLES)), 4)
        feed = [
            FeedItem(100 * seed + 10 * i + k, rng.choice(["general", "ai-agents"]),
                     rng.choice(["apogee_ada", "fresh_wick", "nitpick_9000", "loam_and_leaf"]),
                     TITLES[p][0], TITLES[p][1], rng.randint(-2, 9), rng.randint(0, 6))
            for k, p in enumerate(picks)
        ]  # fmt: skip
        notes = []
        if rng.random() < 0.5:
            comment = 5000 + 10 * seed + i
            excerpt = "Fair point, but what about cost?"
            notes.append(NoteItem(i + 1, "reply", "apogee_ada", feed[0].post_id, comment, excerpt))
        made.append(
            Observation(me="", now=1_769_587_200.0 + 3600 * i, feed=feed, notifications=notes,
                        submolts=["ai-agents", "general"], memory=f"Heartbeats: {i + 1}")
        )  # fmt: skip
    return made


def run_scenario(run_dir: Path, duration: str) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "moltsim.cli", "run", str(SCENARIO), "--run-dir", str(run_dir),
         "--duration", duration],
        cwd=ROOT,
        check=False,
    )  # fmt: skip
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"moltsim run exited with {done.returncode}")
    conn = open_readonly(run_dir)
    try:
        figures = llm_figures(conn)
        prompts = [p for (p,) in conn.execute("SELECT prompt_tokens FROM llm_calls")]
        span = conn.execute(
            "SELECT MIN(wall_time), MAX(wall_time) FROM actions WHERE type = 'llm_call'"
        ).fetchone()
    finally:
        conn.close()
    minutes = max(1e-9, (span[1] - span[0]) / 60) if span[0] is not None else wall_s / 60
    return {
        "llm_run_wall_s": wall_s,
        "llm_decisions": figures.calls,
        "llm_valid_action_rate": figures.valid_action_rate,
        "llm_not_found_rate": figures.not_found_rate,
        "llm_invalid_decisions": figures.invalid,
        "llm_failed_decisions": figures.errors,
        "llm_decisions_per_min": figures.calls / minutes,
        "llm_prompt_tokens_p50": percentile([float(p) for p in prompts], 0.5),
        "llm_cache_hit_rate": figures.cache_hit_rate,
        "llm_server_ms_p50": figures.server_ms_p50,
        **{f"llm_refused_{code}": n for code, n in figures.refused_by_code.items()},
    }


async def _moltsim_side(
    config: LlmConfig, brains: list[LlmBrain], obs: list[Observation]
) -> tuple[float, int]:
    started = time.perf_counter()
    decisions = await asyncio.gather(
        *(brains[i % len(brains)].decide(_as(o, brains[i % len(brains)])) for i, o in
          enumerate(obs))
    )  # fmt: skip
    calls = sum(len(d.usage.get("answers", [])) or 1 for d in decisions)
    return time.perf_counter() - started, calls


def _as(obs: Observation, brain: LlmBrain) -> Observation:
    return replace(obs, me=brain.handle)


async def _raw_side(
    config: LlmConfig, brains: list[LlmBrain], obs: list[Observation], url: str
) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="none", timeout=config.timeout_s,
                                max_retries=0)  # fmt: skip
    limit = asyncio.Semaphore(config.concurrency or 1)

    async def one(i: int, o: Observation) -> None:
        brain = brains[i % len(brains)]
        mine = _as(o, brain)
        messages: Any = [{"role": "system", "content": brain.system},
                         {"role": "user", "content": brain.user_prompt(mine)}]  # fmt: skip
        schema = Shown(mine).schema()
        async with limit:
            await client.chat.completions.create(
                model=config.model, messages=messages, max_tokens=config.max_tokens,
                temperature=config.temperature,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "answer", "schema": schema,
                                                 "strict": True}},
            )  # fmt: skip

    started = time.perf_counter()
    await asyncio.gather(*(one(i, o) for i, o in enumerate(obs)))
    await client.close()
    return time.perf_counter() - started


async def overhead(url: str, slots: int, per_set: int) -> dict[str, float]:
    # Greedy decoding: both sides then write the same answers to the same prompts, so what
    # differs is moltsim's own work, not how long the model happened to write.
    config = LlmConfig(
        base_url=url, concurrency=slots, structured_output="json_schema", temperature=0.0
    )
    endpoints = Endpoints(config)
    skill = load_skill(None)
    personas = [load_persona(ROOT / "agents" / "personas" / f"{p}.toml") for p in PERSONAS]
    brains = [LlmBrain(p, skill, config, endpoints, p.handle, seed=1) for p in personas]
    one, two = observations(per_set, 1), observations(per_set, 2)
    await _raw_side(config, brains, observations(1, 9), url)  # load the weights, fill caches
    moltsim_s = raw_s = 0.0
    moltsim_calls = 0
    for mine, theirs in ((one, two), (two, one)):
        seconds, calls = await _moltsim_side(config, brains, mine)
        moltsim_s += seconds
        moltsim_calls += calls
        raw_s += await _raw_side(config, brains, theirs, url)
    await endpoints.aclose()
    decisions = 2 * per_set
    return {
        "llm_moltsim_decisions_per_s": decisions / moltsim_s,
        "llm_raw_completions_per_s": decisions / raw_s,
        "llm_overhead_ratio": (decisions / moltsim_s) / (decisions / raw_s),
        "llm_overhead_extra_calls": moltsim_calls - decisions,
    }


def run(per_set: int = 6, duration: str | None = "24h") -> dict[str, float]:
    """``duration``: the scenario's sim time (24 h: about 40 decisions); ``None``: no run."""
    model = find_model(DEFAULT_LOCAL_MODEL)
    path = ensure_model(model, progress=print)
    figures: dict[str, float] = {}
    if duration is not None:
        with tempfile.TemporaryDirectory(prefix="moltsim-bench-llm-") as tmp:
            figures |= run_scenario(Path(tmp) / "run", duration)
    # The machine's load average still counts the run above for a minute; the bench is the
    # only load now, so the server gets every core.
    plan = plan_server(model, path, threads=usable_cpus())
    with tempfile.TemporaryDirectory(prefix="moltsim-bench-llm-") as tmp:
        server = LocalServer(plan, Path(tmp) / "server.log")
        server.start()
        try:
            figures |= asyncio.run(overhead(server.base_url, plan.slots, per_set))
        finally:
            server.stop()
    figures["llm_server_slots"] = plan.slots
    figures["llm_server_threads"] = plan.threads
    print(json.dumps(figures, indent=1))
    return figures
