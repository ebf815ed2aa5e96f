"""A pool: many agents in one process, one broker connection, each signing with its own key.

The pool follows the engine's clock from ``tick`` and wakes each agent when its heartbeat is
due. On stop, agents finish the turn they are in; nobody is cut off mid-action.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moltsim.agent.brains.base import Brain
from moltsim.agent.brains.llm import LlmBrain
from moltsim.agent.brains.offline import OfflineBrain
from moltsim.agent.persona import Persona
from moltsim.agent.runtime import HEARTBEAT_S, AgentRuntime
from moltsim.agent.skill import Skill, load_skill
from moltsim.llm.config import LlmConfig, LlmConfigError
from moltsim.llm.endpoints import Endpoints
from moltsim.llm.replay import Recordings
from moltsim.runfolder import RunFolder
from moltsim.store.runfile import RunFileError
from moltsim.wire.client import PoolClient, RequestTimeout
from moltsim.wire.connection import BrokerAddress

log = logging.getLogger("moltsim.pool")
POOL_CONNECT_TIMEOUT_S = 60.0
"""How long a starting pool waits for its broker (one that is restarting comes back)."""


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: str
    persona: Persona
    brain: Literal["offline", "openai"] = "offline"
    seed: int = 0
    heartbeat_s: Annotated[float, Field(gt=0)] | None = None
    """Its own heartbeat (agents of several scenario groups share a pool); else the pool's."""


class PoolManifest(BaseModel):
    """What a pool process hosts: written by the runner (or ``moltsim register``)."""

    model_config = ConfigDict(extra="forbid")

    pool: str
    agents: list[AgentSpec] = []
    heartbeat_s: Annotated[float, Field(gt=0)] = HEARTBEAT_S
    skill: str | None = None
    """Path of the skill file; the project's default skill when unset."""
    llm: LlmConfig | None = None
    """The endpoint of agents whose brain is ``openai``."""
    llm_replay: str | None = None
    """The file of recorded decisions to replay instead of calling the model
    (``--replay-llm``), relative to the run folder."""

    @staticmethod
    def path(folder: RunFolder, pool: str) -> Path:
        return folder.path / "pools" / f"{pool}.json"

    @classmethod
    def load(cls, folder: RunFolder, pool: str) -> PoolManifest:
        path = cls.path(folder, pool)
        if not path.exists():
            return cls(pool=pool)
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(map(str, problem["loc"])) or "the file"
            raise RunFileError(
                f"{path} is not a valid pool manifest ({where}: {problem['msg']})"
            ) from exc

    def save(self, folder: RunFolder) -> Path:
        path = self.path(folder, self.pool)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        return path


class BrainFactory:
    """Builds each agent's brain; LLM brains of one pool share its endpoints and their limit
    on calls in flight (or, replaying, the recorded decisions)."""

    def __init__(self, skill: Skill, llm: LlmConfig | None, replay: Recordings | None = None):
        self.skill = skill
        self.llm = llm
        self.replay = replay
        self._endpoints: Endpoints | None = None

    def __call__(self, spec: AgentSpec) -> Brain:
        if spec.brain == "offline":
            return OfflineBrain(spec.persona, spec.seed, spec.handle)
        if self.llm is None:
            raise LlmConfigError(f"@{spec.handle} uses the openai brain but no [llm] is set")
        if self.replay is None and self._endpoints is None:
            if not self.llm.urls:
                raise LlmConfigError(
                    f"@{spec.handle}: the local model {self.llm.local} has no server; start"
                    " the run with moltsim run, which serves it"
                )
            self._endpoints = Endpoints(self.llm)
        return LlmBrain(
            spec.persona, self.skill, self.llm, self._endpoints, spec.handle,
            seed=spec.seed, recordings=self.replay,
        )  # fmt: skip


class Pool:
    def __init__(self, client: PoolClient, runtimes: list[AgentRuntime], concurrency: int) -> None:
        self.client = client
        self.runtimes = runtimes
        self.concurrency = asyncio.Semaphore(concurrency)
        self.heartbeats = 0
        self.errors = 0
        self.llm_failures: dict[str, int] = {}
        """LLM decisions that came to nothing, by kind (timeout, connection, unparsable...)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Wake agents as the sim clock reaches their heartbeats, until ``stop`` or the engine
        says the run stopped."""
        client = self.client
        await client.tick_received.wait()
        if client.mode == "stepped":
            await self._run_stepped(stop)
            return
        await self._run_realtime(stop)

    async def _run_realtime(self, stop: asyncio.Event) -> None:
        client = self.client
        now = client.sim_now() or 0.0
        due: list[tuple[float, int]] = [(r.first_wake(now), i) for i, r in enumerate(self.runtimes)]
        heapq.heapify(due)
        busy: set[asyncio.Task[None]] = set()
        while not stop.is_set() and client.run_state not in ("stopped", "finished"):
            now = client.sim_now() or now
            while due and due[0][0] <= now:
                _, index = heapq.heappop(due)
                task = asyncio.create_task(self._beat(index, now, due))
                busy.add(task)
                task.add_done_callback(busy.discard)
            wait = 0.5
            if due:
                wait = min(wait, max(0.005, (due[0][0] - now) / max(client.speed, 1e-9)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        if busy:
            await asyncio.gather(*busy, return_exceptions=True)

    async def _run_stepped(self, stop: asyncio.Event) -> None:
        """Each tick: wait for last tick's results, run every agent due, send their writes,
        then tell the engine how many; it applies them all in a fixed order."""
        client = self.client
        due: list[tuple[float, int]] | None = None
        done_tick = -1
        restarts = client.engine_restarts
        while not stop.is_set() and client.run_state == "running":
            client.tick_changed.clear()
            tick, now = client.tick_number, client.sim_time
            if client.engine_restarts != restarts and tick == done_tick:
                # A restarted engine lost track of this tick: say again that we are done, with
                # the writes it has yet to answer (the client has just sent them again).
                restarts = client.engine_restarts
                unanswered = sum(1 for r in self.runtimes for t in r.pending if not t.done())
                await client.finish_step(tick, unanswered)
            if tick > done_tick and now is not None:
                outstanding = [t for r in self.runtimes for t in r.pending]
                for runtime in self.runtimes:
                    runtime.pending = []
                if outstanding:
                    await asyncio.gather(*outstanding, return_exceptions=True)
                if due is None:
                    due = [(r.first_wake(now), i) for i, r in enumerate(self.runtimes)]
                    heapq.heapify(due)
                ready = []
                while due and due[0][0] <= now:
                    ready.append(heapq.heappop(due)[1])
                await asyncio.gather(*(self._beat(i, now, due, hold=True) for i in ready))
                sent = sum(len(self.runtimes[i].pending) for i in ready)
                await client.finish_step(tick, sent)
                done_tick = tick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.tick_changed.wait(), 0.5)
        outstanding = [t for r in self.runtimes for t in r.pending]
        if outstanding:
            await asyncio.wait(outstanding, timeout=10)

    async def _beat(
        self, index: int, now: float, due: list[tuple[float, int]], hold: bool = False
    ) -> None:
        runtime = self.runtimes[index]
        async with self.concurrency:
            try:
                decision = await runtime.heartbeat(now, hold_writes=hold)
                self.heartbeats += 1
                if decision.usage and decision.usage.get("outcome") in ("error", "invalid"):
                    kind = str(decision.usage.get("error") or "unparsable")
                    self.llm_failures[kind] = self.llm_failures.get(kind, 0) + 1
            except (RequestTimeout, ConnectionError) as exc:
                self.errors += 1
                log.warning("@%s missed a heartbeat: %s", runtime.handle, exc)
            except Exception:
                self.errors += 1
                log.exception("@%s failed a heartbeat", runtime.handle)
        heapq.heappush(due, (runtime.next_wake(now), index))


async def run_pool(
    folder: RunFolder,
    pool: str,
    address: BrokerAddress,
    stop: asyncio.Event,
    *,
    only: set[str] | None = None,
    concurrency: int = 64,
) -> Pool:
    """Host the agents of ``pool`` (or just ``only``) until ``stop`` or the end of the run."""
    manifest = PoolManifest.load(folder, pool)
    skill = load_skill(Path(manifest.skill) if manifest.skill else None)
    specs = [s for s in manifest.agents if only is None or s.handle in only]
    if not specs:
        raise ValueError(f"pool {pool!r} hosts no agents in {PoolManifest.path(folder, pool)}")
    accounts = folder.accounts()
    client = PoolClient(
        address,
        pool,
        accounts.passwords[pool],
        accounts.topics,
        batch=len(specs) > 1,
        connect_timeout=POOL_CONNECT_TIMEOUT_S,
        identifier=f"moltsim-{accounts.sim}-{pool}"
        + ("" if only is None else "-" + "-".join(sorted(only))),
    )
    replay = Recordings.load(folder.path / manifest.llm_replay) if manifest.llm_replay else None
    brains = BrainFactory(skill, manifest.llm, replay)
    runtimes = []
    shared: dict[str, Persona] = {}
    for spec in specs:
        # Copies of one persona share one object (and the offline brain's voice model).
        spec.persona = shared.setdefault(spec.persona.model_dump_json(), spec.persona)
        agent = client.add(folder.credentials(spec.handle))
        runtimes.append(
            AgentRuntime(agent, spec.persona, brains(spec), seed=spec.seed,
                         heartbeat_s=spec.heartbeat_s or manifest.heartbeat_s)
        )  # fmt: skip
    host = Pool(client, runtimes, concurrency)
    async with client:
        log.info("pool %s: %d agents online (skill v%d)", pool, len(runtimes), skill.version)
        await host.run(stop)
    failed = ", ".join(f"{n} {kind}" for kind, n in sorted(host.llm_failures.items()))
    log.info(
        "pool %s: %d heartbeats, %d errors, %d LLM decisions failed%s", pool, host.heartbeats,
        host.errors, sum(host.llm_failures.values()), f" ({failed})" if failed else "",
    )  # fmt: skip
    if replay is not None and (replay.drifted or replay.missing):
        log.warning(
            "pool %s: the replay drifted from its recording (%d requests differed, %d"
            " decisions had no recording)", pool, replay.drifted, replay.missing,
        )  # fmt: skip
    return host
