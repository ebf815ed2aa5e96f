"""Agents: how big an LLM agent's prompt gets in a busy network, and how much memory an idle
offline agent costs in a pool process.

1. Prompt tokens per decision over 200 heartbeats of one LLM-brain agent. The agent runs the
   real heartbeat (``AgentRuntime``: memory, notifications, feed, observation) against a busy
   network simulated in process: ten fresh long posts and several replies, mentions and DMs
   on every heartbeat, new submolts founded as it goes, some of its actions refused. Each
   observation is rendered with ``LlmBrain``'s system and user prompts and counted with
   ``estimate_tokens`` (characters / 4); the decisions themselves come from the offline brain
   so that memory fills as it would. No model is called.
2. Resident memory per idle agent in one process hosting 10,000 offline agents: their
   ``AgentRuntime``, ``OfflineBrain``, ``Memory`` and ``AgentClient`` on one ``PoolClient``
   that is never connected, with one ``Persona`` object per persona file shared by its copies.
   RSS is read from ``/proc/self/status`` before and after. A second figure builds the agents
   the way ``run_pool`` does, from a pool manifest parsed from JSON (every spec parsed with
   its own persona copy, then copies of one persona deduplicated), with the manifest kept
   alive as it is for the pool's lifetime.

``python -m bench.agents`` prints the figures.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from moltsim.agent.brains.base import Decision
from moltsim.agent.brains.llm import LlmBrain, LlmConfig, estimate_tokens
from moltsim.agent.brains.offline import OfflineBrain
from moltsim.agent.observation import Observation
from moltsim.agent.persona import Persona, load_persona
from moltsim.agent.pool import AgentSpec, PoolManifest
from moltsim.agent.runtime import HEARTBEAT_S, AgentRuntime
from moltsim.agent.skill import load_skill
from moltsim.identity.credentials import Credentials
from moltsim.identity.signing import Signer
from moltsim.llm.endpoints import Endpoints
from moltsim.wire.client import AgentClient, PoolClient, Result
from moltsim.wire.connection import BrokerAddress
from moltsim.wire.topics import Topics

PERSONA_DIR = Path(__file__).resolve().parent.parent / "agents" / "personas"
PROMPT_PERSONA = "ten_x_tess"
HEARTBEATS = 200
AGENTS = 10_000
T0 = 1_769_558_400.0
"""2026-01-28 00:00 UTC."""

_VOCABULARY = (
    "the a of to and in that it for on with as this was but be at by from or an are not "
    "have agent agents model latency cache kernel orbit compost sourdough ledger vinyl "
    "glacier sonnet quorum pixel harvest tensor lantern paradox monsoon telescope "
    "fermentation habit framework inbox automation focus productivity archive satellite "
    "gradient token prompt context window benchmark throughput scheduler heartbeat karma "
    "submolt thread reply vote"
)
_WORDS = _VOCABULARY.split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def rss_kb() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _dummy_pool(account: str = "pool-1") -> PoolClient:
    """A pool client that is never connected (nothing listens on port 9)."""
    return PoolClient(BrokerAddress("127.0.0.1", 9), account, "bench", Topics("bench"))


# --- 1. prompt tokens -------------------------------------------------------------------------


class BusyNetwork(AgentClient):
    """Answers one agent's actions in process, as a busy network would: ten new long posts and
    a handful of notifications per heartbeat, submolts founded over time, some refusals."""

    def __init__(self, handle: str, seed: int = 1) -> None:
        super().__init__(_dummy_pool(), Credentials(handle, Signer.generate(), "bench"))
        self.rng = random.Random(seed)
        self.authors = [f"agent_{i}" for i in range(500)]
        self.submolts = ["general", "ai-agents", "help", "code", "meta", "memes", "science"]
        self.posts: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.next_id = 1
        self.beats = 0

    def heartbeat(self, now: float) -> None:
        """What the network wrote since the agent's last heartbeat."""
        rng = self.rng
        self.beats += 1
        if self.beats % 2 == 0:
            self.submolts.append(f"{rng.choice(_WORDS[25:])}-{self.beats}")
        for _ in range(10):
            self.next_id += 1
            self.posts.append(
                {
                    "id": self.next_id, "submolt": rng.choice(self.submolts),
                    "author": rng.choice(self.authors), "title": _text(rng, rng.randint(6, 18)),
                    "body": " ".join(_text(rng, 20) for _ in range(rng.randint(5, 25))),
                    "url": None, "created_at": now, "score": rng.randint(-5, 300), "ups": 0,
                    "downs": 0, "comment_count": rng.randint(0, 150), "status": 0,
                    "pinned": False, "hot": float(self.next_id),
                }
            )  # fmt: skip
        for _ in range(rng.randint(3, 12)):
            self.next_id += 1
            self.notes.append(
                {
                    "id": self.next_id, "kind": rng.choice(["reply", "mention", "follow", "dm"]),
                    "actor": rng.choice(self.authors), "created_at": now,
                    "post_id": self.posts[-1]["id"], "comment_id": self.next_id, "dm": None,
                    "excerpt": _text(rng, rng.randint(10, 60))[:280],
                }
            )  # fmt: skip
        del self.posts[:-200]

    async def act(self, action: Any) -> Result:
        body: dict[str, Any] = dict(action)
        self.seq += 1
        kind = body["type"]
        if kind == "feed":
            newest = sorted(self.posts, key=lambda p: -p["id"])[: body.get("limit", 25)]
            return Result(True, self.seq, {"posts": newest})
        if kind == "notifications":
            since, limit = body.get("since_id", 0), body.get("limit", 50)
            return Result(
                True,
                self.seq,
                {"notifications": [n for n in self.notes if n["id"] > since][:limit]},
            )
        if kind == "submolts":
            names = self.submolts[: body.get("limit", 50)]
            return Result(True, self.seq, {"submolts": [{"name": n} for n in names]})
        if self.rng.random() < 0.15:
            return Result(False, self.seq, code="rate_limited", retry_after=600.0)
        self.next_id += 1
        return Result(True, self.seq, {"post_id": self.next_id, "comment_id": self.next_id})


class MeteredBrain:
    """Renders the LLM brain's prompt for every observation and counts its tokens; decides as
    the offline brain would, so that the agent's memory fills realistically."""

    def __init__(self, llm: LlmBrain, offline: OfflineBrain) -> None:
        self.llm = llm
        self.offline = offline
        self.total: list[int] = []
        self.observation: list[int] = []

    async def decide(self, observation: Observation) -> Decision:
        user = self.llm.user_prompt(observation)
        self.total.append(estimate_tokens(self.llm.system + user))
        self.observation.append(estimate_tokens(user))
        return self.offline.decide_now(observation, {})


async def _prompt_run(heartbeats: int, persona: Persona) -> tuple[MeteredBrain, LlmBrain]:
    config = LlmConfig(base_url="http://127.0.0.1:9/v1", model="bench")
    endpoints = Endpoints(config)  # never called: the brain only renders prompts
    try:
        llm = LlmBrain(persona, load_skill(), config, endpoints)
        brain = MeteredBrain(llm, OfflineBrain(persona, 1))
        network = BusyNetwork(persona.handle)
        runtime = AgentRuntime(network, persona, brain, seed=1)
        now = T0
        for _ in range(heartbeats):
            network.heartbeat(now)
            await runtime.heartbeat(now)
            now += HEARTBEAT_S
    finally:
        await endpoints.aclose()
    return brain, llm


def prompt_tokens(heartbeats: int = HEARTBEATS, persona: str = PROMPT_PERSONA) -> dict[str, float]:
    brain, llm = asyncio.run(_prompt_run(heartbeats, load_persona(PERSONA_DIR / f"{persona}.toml")))
    skill = estimate_tokens(llm.skill.text)
    return {
        "llm_prompt_tokens_first": brain.total[0],
        "llm_prompt_tokens_last": brain.total[-1],
        "llm_prompt_tokens_max": max(brain.total),
        "llm_prompt_tokens_system": estimate_tokens(llm.system),
        "llm_prompt_tokens_skill": skill,
        "llm_prompt_tokens_non_skill_max": max(brain.total) - skill,
        "llm_prompt_tokens_observation_last": brain.observation[-1],
        "llm_prompt_tokens_observation_max": max(brain.observation),
    }


# --- 2. memory per idle agent -----------------------------------------------------------------


def _personas() -> list[Persona]:
    return [load_persona(path) for path in sorted(PERSONA_DIR.glob("*.toml"))]


def _host(pool: PoolClient, specs: list[tuple[str, Persona, int]]) -> list[AgentRuntime]:
    runtimes = []
    for handle, persona, seed in specs:
        agent = pool.add(Credentials(handle, Signer.generate(), "bench"))
        brain = OfflineBrain(persona, seed, handle)
        runtimes.append(AgentRuntime(agent, persona, brain, seed=seed))
    return runtimes


def _shared_specs(personas: list[Persona], agents: int) -> list[tuple[str, Persona, int]]:
    """One Persona object per file, shared by all of its copies."""
    return [
        (f"{personas[i % len(personas)].handle}_{i}", personas[i % len(personas)], 0)
        for i in range(agents)
    ]


def _rss_per_agent(kind: str, agents: int) -> float:
    """In a fresh process: RSS added per agent by hosting ``agents`` idle agents."""
    personas = _personas()
    # Warm up: import and allocate everything once so that the baseline is the steady state.
    _host(_dummy_pool(), _shared_specs(personas, 50))
    manifest_text = ""
    if kind == "manifest":
        specs = [
            AgentSpec(handle=h, persona=p, seed=s) for h, p, s in _shared_specs(personas, agents)
        ]
        manifest_text = PoolManifest(pool="pool-1", agents=specs).model_dump_json()
        del specs
    gc.collect()
    before = rss_kb()
    pool = _dummy_pool()
    if kind == "manifest":
        # As run_pool builds them: parse the manifest, share one persona object per persona.
        manifest = PoolManifest.model_validate_json(manifest_text)
        shared: dict[str, Persona] = {}
        for spec in manifest.agents:
            spec.persona = shared.setdefault(spec.persona.model_dump_json(), spec.persona)
        runtimes = _host(pool, [(s.handle, s.persona, s.seed) for s in manifest.agents])
    else:
        runtimes = _host(pool, _shared_specs(personas, agents))
    gc.collect()
    after = rss_kb()
    assert len(runtimes) == len(pool.agents) == agents
    return (after - before) / agents


def pool_rss(agents: int = AGENTS, *, fresh_processes: bool = True) -> dict[str, float]:
    """Each figure is measured in its own fresh process (unless told otherwise, for a quick
    check), so that neither inherits the other's freed memory."""
    kinds = {"pool_rss_kb_per_agent": "shared", "pool_rss_kb_per_agent_manifest": "manifest"}
    if not fresh_processes:
        return {name: _rss_per_agent(kind, agents) for name, kind in kinds.items()}
    context = multiprocessing.get_context("spawn")
    figures = {}
    for name, kind in kinds.items():
        with ProcessPoolExecutor(1, mp_context=context) as executor:
            figures[name] = executor.submit(_rss_per_agent, kind, agents).result()
    return figures


def run(heartbeats: int = HEARTBEATS, agents: int = AGENTS) -> dict[str, float]:
    print(f"agents: prompt tokens over {heartbeats} heartbeats of @{PROMPT_PERSONA} (chars / 4)")
    figures = prompt_tokens(heartbeats)
    print(f"agents: resident memory of {agents:,} idle offline agents in one process")
    figures |= pool_rss(agents)
    for name, value in figures.items():
        print(f"  {name:<48} {value:>14,.1f}")
    return figures


if __name__ == "__main__":
    run()
