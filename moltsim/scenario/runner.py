"""``moltsim run``: set up a run folder, start the broker, the engine and the pools, supervise
them until the end of the scenario (or a budget, or Ctrl-C), and stop everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
from pydantic_core import to_json
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from moltsim.agent.persona import persona_profile
from moltsim.agent.pool import AgentSpec, PoolManifest
from moltsim.engine.service import Engine
from moltsim.identity.credentials import write_credentials
from moltsim.identity.signing import Signer
from moltsim.llm.config import LlmConfig
from moltsim.llm.replay import REPLAY_FILE, ReplayError, write_replay
from moltsim.logs import JsonFormatter
from moltsim.runfolder import RunFolder
from moltsim.scenario.children import Child
from moltsim.scenario.llmhealth import SUMMARY_EVERY_S, LlmHealth
from moltsim.scenario.load import PlannedAgent, load_scenario, plan_agents
from moltsim.scenario.metrics import Sampler, Watched, this_process
from moltsim.scenario.modelsetup import ModelSetup
from moltsim.scenario.schema import Event, Scenario
from moltsim.store.llmstats import recorded_decisions
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFile, RunFileError
from moltsim.wire.accounts import ENGINE
from moltsim.wire.connection import BrokerAddress
from moltsim.wire.embedded import EmbeddedBroker
from moltsim.wire.link import Link
from moltsim.wire.topics import Topics

log = logging.getLogger("moltsim.run")
STEP_TIMEOUT_S = 60.0
"""How long a stepped tick waits for pools without LLM agents."""


def sim_clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass
class Stats:
    actions: int = 0
    accepted: int = 0
    refused: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    posts: int = 0
    comments: int = 0


@dataclass
class PoolPlan:
    name: str
    agents: list[PlannedAgent]
    join_at: float

    @property
    def handles(self) -> list[str]:
        return [a.handle for a in self.agents]


@dataclass
class Runner:
    scenario_path: Path
    run_dir: Path | None = None
    seed: int | None = None
    broker_url: str | None = None
    duration: float | None = None
    resume: bool = False
    replay_llm: Path | None = None
    """A run whose recorded LLM decisions this run replays instead of calling the model."""
    console: Console = field(default_factory=lambda: Console(stderr=True))

    stop_reason: str = ""
    end_state: str = ""
    """What the run file's ``state`` says at the end: finished, stopped (a budget),
    interrupted (Ctrl-C, SIGTERM), failed (an error)."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _sim_now: float | None = None
    _run_state: str = ""
    _results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _topics: Topics = field(default_factory=lambda: Topics(""))
    _totals: Stats = field(default_factory=Stats)
    _seen_action: int = 0
    _seen_call: int = 0
    _online: int = 0
    _sends: set[asyncio.Task[None]] = field(default_factory=set)
    _llm: LlmHealth = field(default_factory=LlmHealth)
    _replay: dict[str, list[dict[str, Any]]] | None = None
    """The recorded decisions ``--replay-llm`` names, as the preflight read them."""

    # --- setup --------------------------------------------------------------------------------

    def _load(self) -> Scenario:
        scenario = load_scenario(self.scenario_path)
        clock = scenario.clock
        updates: dict[str, Any] = {}
        if self.seed is not None:
            updates["seed"] = self.seed
        if self.duration is not None:
            updates["clock"] = clock.model_copy(update={"duration": self.duration})
        return scenario.model_copy(update=updates) if updates else scenario

    def _preflight(self, scenario: Scenario) -> None:
        """Refuse to start what would fail later: an LLM run without its key in the env, a
        replay of a realtime scenario or of a run with no recordings."""
        if scenario.llm is not None and any(g.brain == "openai" for g in scenario.agents):
            scenario.llm.api_key()  # raises LlmConfigError naming the missing variable
        if self.replay_llm is not None:
            if scenario.clock.mode != "stepped":
                raise ReplayError(
                    '--replay-llm needs a stepped scenario ([clock] mode = "stepped"): only a'
                    " stepped run unfolds the same way twice"
                )
            self._replay = self._recordings(self.replay_llm)

    @staticmethod
    def _recordings(replay_llm: Path) -> dict[str, list[dict[str, Any]]]:
        """The recorded decisions of the run to replay, read once, before anything is made."""
        source = RunFolder.locate(replay_llm)
        conn = open_readonly(source.db)
        try:
            recordings = recorded_decisions(conn)
        except sqlite3.Error as exc:
            raise ReplayError(f"cannot read the recordings of {source.path}: {exc}") from exc
        finally:
            conn.close()
        if not recordings:
            raise ReplayError(f"{source.path} has no recorded LLM decisions to replay")
        return recordings

    def _pools(self, scenario: Scenario, planned: list[PlannedAgent]) -> list[PoolPlan]:
        plans: list[PoolPlan] = []
        by_join: dict[float, list[PlannedAgent]] = {}
        for agent in planned:
            by_join.setdefault(agent.join_at, []).append(agent)
        for join_at in sorted(by_join):
            agents = by_join[join_at]
            size = scenario.agents_per_pool
            for i in range(math.ceil(len(agents) / size)):
                label = "pool" if join_at == 0 else f"late{int(join_at)}"
                plans.append(
                    PoolPlan(f"{label}-{i + 1}", agents[i * size : (i + 1) * size], join_at)
                )
        return plans

    async def _create(
        self, scenario: Scenario, llm: LlmConfig | None
    ) -> tuple[RunFolder, list[PoolPlan]]:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = self.run_dir or Path("runs") / f"{scenario.name}-{stamp}"
        folder = await RunFolder.create(path, rules=scenario.rules)
        shutil.copyfile(self.scenario_path, folder.path / "scenario.toml")
        planned = plan_agents(scenario, self.scenario_path)
        pools = self._pools(scenario, planned)
        start = scenario.clock.start
        runfile = await RunFile.open(folder.db)
        try:
            await runfile.set_meta(
                scenario=self.scenario_path.read_text(),
                scenario_path=str(self.scenario_path.resolve()),
                scenario_name=scenario.name,
                seed=scenario.seed,
                clock=scenario.clock.model_dump(mode="json"),
                end=start + scenario.clock.duration,
            )
        finally:
            await runfile.close()
        engine = await Engine.open(folder.db)
        try:
            for sub in scenario.submolts:
                await engine.seed_submolt(sub.name, start, sub.title, sub.description)
        finally:
            await engine.close()
        accounts = folder.accounts()
        replay = None
        if self._replay is not None:
            replay = write_replay(folder.path, self._replay).name
        for plan in pools:
            specs = [
                AgentSpec(handle=a.handle, persona=a.persona, brain=a.brain,
                          seed=scenario.seed, heartbeat_s=a.heartbeat_s)
                for a in plan.agents
            ]  # fmt: skip
            heartbeat = plan.agents[0].heartbeat_s
            PoolManifest(pool=plan.name, agents=specs, heartbeat_s=heartbeat,
                         llm=llm or scenario.llm, llm_replay=replay).save(folder)  # fmt: skip
            if plan.join_at == 0:
                await folder.register(
                    [(a.handle, persona_profile(a.persona)) for a in plan.agents], plan.name, start
                )
            else:
                # Keys and broker rights now; the engine registers them when they join.
                for agent in plan.agents:
                    write_credentials(folder.keys, agent.handle, accounts.sim, Signer.generate())
                accounts = folder.accounts()
                accounts.add_pool(plan.name, plan.handles)
                accounts.save(folder.broker)
        return folder, pools

    def _reopen(self) -> tuple[RunFolder, list[PoolPlan], Scenario]:
        if self.run_dir is None:
            raise RunFileError("--resume needs --run-dir (the run folder to continue)")
        folder = RunFolder.locate(self.run_dir)
        conn = open_readonly(folder.db)
        try:
            meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
        finally:
            conn.close()
        original = Path(meta.get("scenario_path", folder.path / "scenario.toml"))
        self.scenario_path = original if original.exists() else folder.path / "scenario.toml"
        scenario = self._load()
        pools = self._pools(scenario, plan_agents(scenario, self.scenario_path))
        return folder, pools, scenario

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Check and serve the model first, so that a dead endpoint is one line and no run
        folder; then run; the local model server stops with the run, whatever ends it."""
        if self.resume:
            folder, pools, scenario = self._reopen()
        else:
            scenario = self._load()
            self._preflight(scenario)
            folder, pools = None, self._pools(scenario, plan_agents(scenario, self.scenario_path))
        agents = [a for p in pools for a in p.agents]
        models = ModelSetup(scenario, agents, say=self.console.print)
        llm_pools = sum(1 for p in pools if any(a.brain == "openai" for a in p.agents))
        llm = None
        if self.replay_llm is None and not self._replaying(folder):
            llm = await models.start(pools=llm_pools)
        try:
            if folder is None:
                folder, pools = await self._create(scenario, llm)
            elif llm is not None:
                self._point_pools(folder, pools, llm)
            return await self._run(folder, pools, scenario, llm)
        finally:
            models.stop()
            if folder is not None:
                models.keep_log(folder.logs)

    @staticmethod
    def _replaying(folder: RunFolder | None) -> bool:
        """Whether a run being resumed replays recordings (its pools need no model)."""
        return folder is not None and (folder.path / REPLAY_FILE).exists()

    @staticmethod
    def _point_pools(folder: RunFolder, pools: list[PoolPlan], llm: LlmConfig) -> None:
        """A resumed run's model may be served elsewhere now (a new local server's port)."""
        for plan in pools:
            path = PoolManifest.path(folder, plan.name)
            if path.exists():
                manifest = PoolManifest.load(folder, plan.name)
                if manifest.llm is not None:
                    manifest.model_copy(update={"llm": llm}).save(folder)

    async def _run(
        self, folder: RunFolder, pools: list[PoolPlan], scenario: Scenario, llm: LlmConfig | None
    ) -> int:
        self._topics = folder.accounts().topics
        handler = logging.FileHandler(folder.logs / "run.jsonl")
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)
        log.info("run %s in %s", scenario.name, folder.path)
        accounts = folder.accounts()
        broker: EmbeddedBroker | None = None
        if self.broker_url is None:
            broker = EmbeddedBroker.begin(folder.broker)  # loads while the engine starts
            address = BrokerAddress(broker.host, broker.port)
        else:
            address = BrokerAddress.parse(self.broker_url)
            self.console.print(
                f"using the broker at {address.url}; it must enforce this run's accounts:"
                f" moltsim broker-config {folder.path} --out DIR"
            )
        clock = scenario.clock
        end = clock.start + clock.duration
        engine = Child(
            "engine",
            ["--log-file", str(folder.logs / "engine.jsonl"),
             "engine", "--db", str(folder.path), "--broker", address.url,
             "--speed", str(clock.speed), "--start", str(clock.start),
             "--until", str(end),
             *(["--tick", str(clock.tick), "--step-timeout", str(self._step_timeout(pools, llm))]
               if clock.mode == "stepped" else [])],
            folder.logs / "engine.out",
        )  # fmt: skip
        children = [engine]
        engine.start()
        if broker is not None:
            try:
                broker.wait_ready(20.0)
            except BaseException:
                engine.stop(timeout=5)
                raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        registered = self._registered(folder)
        pool_children: dict[str, Child] = {}
        pending = [p for p in pools if p.join_at > 0 and not set(p.handles) <= registered]
        events = sorted(scenario.events, key=lambda e: e.at)
        started = time.monotonic()
        stats = Stats()
        sampler = Sampler(folder.db)
        interval = scenario.metrics.interval
        next_sample = 0.0
        broker_restarts = 0
        was_failing = ""
        summarised, next_summary = 0, time.monotonic() + SUMMARY_EVERY_S

        def watched() -> list[Watched]:
            procs = [this_process()]
            if broker is not None:
                pid = broker.process.pid if broker.process.poll() is None else None
                procs.append(Watched("broker", pid, broker_restarts))
            for child in children:
                pid = child.process.pid if child.process and child.running else None
                procs.append(Watched(child.name, pid, child.restarts))
            return procs

        try:
            async with Link(
                address, ENGINE, accounts.passwords[ENGINE],
                identifier=f"moltsim-{accounts.sim}-runner",
                subscriptions=[(accounts.topics.tick, 0), (accounts.topics.control_result, 1)],
                on_message=self._on_message,
            ) as mqtt:  # fmt: skip
                # Pools load while the engine does; they greet it once it ticks.
                for plan in pools:
                    if plan.join_at == 0 or set(plan.handles) <= registered:
                        pool_children[plan.name] = self._pool_child(folder, plan, address)
                for child in pool_children.values():
                    child.start()
                children += pool_children.values()
                await self._wait_for_engine(engine)
                await self._record_running(mqtt)
                self.console.print(f"watch it live: moltsim watch {folder.path}")
                last_done = self._sim_now or clock.start
                events = [e for e in events if clock.start + e.at >= last_done]
                with self._progress() as progress:
                    task = progress.add_task("sim", total=clock.duration)
                    while not self._stop.is_set():
                        now = self._sim_now or clock.start
                        if self._run_state == "finished":
                            for child in children:
                                child.finished_ok = True
                        notes = [note for child in children if (note := child.supervise())]
                        if broker is not None and broker.process.poll() is not None:
                            broker, note = self._restart_broker(broker, folder)
                            broker_restarts += 1
                            notes.append(note)
                        if (failing := self._llm.failing) != was_failing:
                            was_failing = failing
                            notes.append(
                                f"the model's last {len(self._llm.recent)} calls failed"
                                f" ({failing}); its pools back off and retry (logs/)"
                                if failing else "the model answers again"
                            )  # fmt: skip
                        for note in notes:
                            log.warning(note)
                            progress.console.print(f"[yellow]{note}[/yellow]")
                        if self._llm.calls > summarised and time.monotonic() >= next_summary:
                            summarised = self._llm.calls
                            next_summary = time.monotonic() + SUMMARY_EVERY_S
                            log.info(self._llm.summary())
                            progress.console.print(self._llm.summary())
                        for plan in [p for p in pending if clock.start + p.join_at <= now]:
                            pending.remove(plan)
                            await self._join(mqtt, folder, plan)
                            child = self._pool_child(folder, plan, address)
                            child.start()
                            pool_children[plan.name] = child
                            children.append(child)
                        while events and clock.start + events[0].at <= now:
                            await self._event(mqtt, events.pop(0))
                        stats = self._stats(folder, scenario)
                        online = self._online = sum(
                            len(p.agents) for p in pools
                            if p.name in pool_children and pool_children[p.name].running
                        )  # fmt: skip
                        if time.monotonic() >= next_sample:
                            next_sample = time.monotonic() + interval
                            self._send_metrics(mqtt, sampler, watched(), stats)
                        progress.update(
                            task, completed=min(now - clock.start, clock.duration),
                            description=self._status(now, stats, online),
                        )  # fmt: skip
                        if now >= end or self._run_state == "finished":
                            self.stop_reason = "the scenario's duration was reached"
                            self.end_state = "finished"
                        elif reason := self._budget(scenario, stats, started):
                            self.stop_reason = reason
                            self.end_state = "stopped"
                        elif failed := [c for c in children if c.failure]:
                            # Restarting cannot fix a bad input file: stop, so it can be mended.
                            self.stop_reason = f"{failed[0].name} cannot go on: {failed[0].failure}"
                            self.end_state = "failed"
                        if self.stop_reason:
                            break
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), 0.5)
                # A last sample, so that the metrics cover the whole run.
                self._send_metrics(mqtt, sampler, watched(), self._stats(folder, scenario))
                if self._sends:
                    await asyncio.wait(self._sends, timeout=5)
        except BaseException:
            self.end_state = "failed"
            raise
        finally:
            # All at once; without an engine, unanswered requests would hold a pool for a minute.
            for child in pool_children.values():
                child.terminate()
            for child in pool_children.values():
                child.stop(timeout=60 if engine.running else 5)
            engine.stop()
            if broker is not None:
                broker.stop()
            self._stats(folder, scenario)
            if self._llm.all_failed and self.end_state != "failed":
                # Nothing the model was asked came back: the run holds no LLM behaviour at all.
                self.stop_reason = (
                    f"{self.stop_reason or 'stopped'}, but every one of the {self._llm.calls:,}"
                    f" model calls failed ({self._llm.failure_text()}): see {folder.logs} and"
                    f" moltsim llm check {self.scenario_path}"
                )
                self.end_state = "failed"
            await self._record_end(folder)
        stats = self._stats(folder, scenario)
        log.info(
            "run stopped: %s",
            self.stop_reason or "stopped",
            extra={
                "posts": stats.posts,
                "comments": stats.comments,
                "actions": stats.actions,
                "refused": stats.refused,
                "tokens": stats.tokens,
                "cost_usd": stats.cost_usd,
            },
        )
        self._summary(folder, scenario, stats, started)
        logging.getLogger().removeHandler(handler)
        handler.close()
        return 1 if self.end_state == "failed" else 0

    @staticmethod
    def _step_timeout(pools: list[PoolPlan], llm: LlmConfig | None) -> float:
        """How long a stepped tick waits for the pools: long enough for every LLM decision of
        the busiest pool (each call may time out, be retried, and need a repair), so that a
        slow model slows the run down instead of leaving decisions out of their tick."""
        if llm is None:
            return STEP_TIMEOUT_S
        if llm.step_timeout_s is not None:
            return llm.step_timeout_s
        busiest = max(sum(a.brain == "openai" for a in p.agents) for p in pools)
        per_decision = llm.timeout_s * (llm.max_retries + 1) * 2
        rounds = math.ceil(busiest / (llm.concurrency or 1))
        return STEP_TIMEOUT_S + per_decision * rounds

    def _interrupt(self) -> None:
        self.stop_reason = self.stop_reason or "interrupted (Ctrl-C or SIGTERM)"
        self.end_state = self.end_state or "interrupted"
        self._stop.set()

    # --- run state and metrics (written by the engine, the run file's only writer) -------------

    async def _record_running(self, mqtt: Link) -> None:
        result = await self._command(mqtt, {"kind": "state", "state": "running"}, wait_s=10)
        if not result.get("ok"):
            log.warning("the run state could not be recorded: %s", result)

    def _send_metrics(
        self, mqtt: Link, sampler: Sampler, watched: list[Watched], stats: Stats
    ) -> None:
        """Sample now; the engine writes the rows in its next commit. Sent in the background:
        an engine that is restarting gets them when it is back (its session is kept)."""
        rows = sampler.sample(
            watched, sim_time=self._sim_now or 0.0, accepted=stats.accepted,
            refused=stats.refused, agents_online=self._online,
        )  # fmt: skip

        async def send() -> None:
            result = await self._command(mqtt, {"kind": "metrics", "samples": rows}, wait_s=10)
            if not result.get("ok"):
                log.warning("metrics not recorded: %s", result.get("error", result))

        task = asyncio.create_task(send())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _record_end(self, folder: RunFolder) -> None:
        """The final state, written once the engine has exited: the runner is then the only
        process with the run file open, as when it created it."""
        state = self.end_state or ("interrupted" if self._stop.is_set() else "stopped")
        try:
            runfile = await RunFile.open(folder.db, create=False)
            try:
                await runfile.set_meta(state=state, state_at=time.time())
            finally:
                await runfile.close()
        except (RunFileError, sqlite3.Error, OSError) as exc:
            log.warning("the final run state (%s) could not be recorded: %s", state, exc)

    def _pool_child(self, folder: RunFolder, plan: PoolPlan, address: BrokerAddress) -> Child:
        return Child(
            plan.name,
            ["--log-file", str(folder.logs / f"{plan.name}.jsonl"),
             "pool", "--db", str(folder.path), "--pool", plan.name, "--broker", address.url],
            folder.logs / f"{plan.name}.out",
        )  # fmt: skip

    async def _wait_for_engine(self, engine: Child, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while self._sim_now is None:
            if not engine.running:
                tail = engine.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the engine exited at start:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError("the engine did not start ticking in time")
            await asyncio.sleep(0.05)

    @staticmethod
    def _restart_broker(broker: EmbeddedBroker, folder: RunFolder) -> tuple[EmbeddedBroker, str]:
        """The embedded broker died: start it again on the same port, where the engine and the
        pools reconnect by themselves (and resend what went unanswered)."""
        code = broker.process.returncode
        try:
            again = EmbeddedBroker.start(folder.broker, broker.port, broker.host)
        except (RuntimeError, TimeoutError, OSError) as exc:
            return broker, f"the embedded broker exited with {code} and did not restart: {exc}"
        return again, f"the embedded broker exited with {code}; restarted on port {again.port}"

    def _on_message(self, message: aiomqtt.Message) -> None:
        try:
            body = json.loads(message.payload)
        except (ValueError, TypeError):
            return
        if message.topic.value == self._topics.tick:
            self._sim_now = float(body.get("sim_time", 0.0))
            self._run_state = str(body.get("state", ""))
        elif isinstance(body, dict) and body.get("id"):
            self._results[str(body["id"])] = body

    async def _command(
        self, mqtt: Link, command: dict[str, Any], wait_s: float = 30.0
    ) -> dict[str, Any]:
        command_id = f"c{len(self._results)}-{time.monotonic_ns()}"
        deadline = time.monotonic() + wait_s
        payload = to_json({"id": command_id, **command})
        try:  # the publish waits for the broker: bounded, the supervisor must not stall on it
            await asyncio.wait_for(mqtt.publish(self._topics.control, payload, qos=1), wait_s)
        except TimeoutError:
            return {"ok": False, "error": "not sent: no broker connection"}
        while command_id not in self._results:
            if time.monotonic() > deadline:
                return {"ok": False, "error": "no answer from the engine"}
            await asyncio.sleep(0.02)
        return self._results.pop(command_id)

    async def _join(self, mqtt: Link, folder: RunFolder, plan: PoolPlan) -> None:
        for agent in plan.agents:
            creds = folder.credentials(agent.handle)
            result = await self._command(
                mqtt,
                {"kind": "register", "handle": agent.handle, "public_key": creds.public_key.hex(),
                 "profile": {**persona_profile(agent.persona), "pool": plan.name}},
            )  # fmt: skip
            if not result.get("ok"):
                log.warning("@%s could not join: %s", agent.handle, result)
        log.info("%d agents joined (%s)", len(plan.agents), plan.name)

    async def _event(self, mqtt: Link, event: Event) -> None:
        command = event.model_dump(exclude={"at"}, exclude_none=True)
        result = await self._command(mqtt, command)
        log.info("event %s at +%.0f s: %s", event.kind, event.at, result)

    @staticmethod
    def _registered(folder: RunFolder) -> set[str]:
        conn = open_readonly(folder.db)
        try:
            return {row[0] for row in conn.execute("SELECT handle FROM agents")}
        finally:
            conn.close()

    def _stats(self, folder: RunFolder, scenario: Scenario) -> Stats:
        """Run totals, read incrementally: each call reads only the rows added since the last
        one, so the supervisor's twice-a-second look costs the same at a million actions."""
        try:
            conn = open_readonly(folder.db)
        except RunFileError:
            return self._totals
        t = self._totals
        try:
            actions, accepted, last = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(outcome = 'ok'), 0), MAX(id) FROM actions"
                " WHERE id > ?",
                (self._seen_action,),
            ).fetchone()
            prompt, completion, last_call = conn.execute(
                "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
                " MAX(id) FROM llm_calls WHERE id > ?",
                (self._seen_call,),
            ).fetchone()
            self._llm.read(conn)
            posts = conn.execute("SELECT COALESCE(MAX(id), 0) FROM posts").fetchone()[0]
            comments = conn.execute("SELECT COALESCE(MAX(id), 0) FROM comments").fetchone()[0]
        except sqlite3.Error:
            return t
        finally:
            conn.close()
        self._seen_action = last or self._seen_action
        self._seen_call = last_call or self._seen_call
        b = scenario.budgets
        cost = prompt * b.prompt_token_price_usd + completion * b.completion_token_price_usd
        self._totals = Stats(
            t.actions + actions, t.accepted + accepted, t.refused + actions - accepted,
            t.tokens + prompt + completion, t.cost_usd + cost, posts, comments,
        )  # fmt: skip
        return self._totals

    @staticmethod
    def _budget(scenario: Scenario, stats: Stats, started: float) -> str:
        b = scenario.budgets
        if b.max_wall_time and time.monotonic() - started >= b.max_wall_time:
            return f"the wall-time budget ({b.max_wall_time:.0f} s) was reached"
        if b.max_actions and stats.accepted >= b.max_actions:
            return f"the action budget ({b.max_actions:,}) was reached"
        if b.max_llm_tokens and stats.tokens >= b.max_llm_tokens:
            return f"the token budget ({b.max_llm_tokens:,}) was reached"
        if b.max_cost_usd and stats.cost_usd >= b.max_cost_usd:
            return f"the cost budget (${b.max_cost_usd:.2f}) was reached"
        return ""

    def _status(self, now: float, stats: Stats, online: int) -> str:
        llm = self._llm.status()
        return (
            f"{sim_clock(now)} | {stats.actions:,} actions ({stats.refused:,} refused)"
            f" | {online} agents online | {stats.tokens:,} tokens ${stats.cost_usd:.2f}"
            + (f" | {llm}" if llm else "")
        )

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% of sim time"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    def _summary(self, folder: RunFolder, scenario: Scenario, stats: Stats, started: float) -> None:
        reason = self.stop_reason or "stopped"
        c = self.console
        c.print(f"\n[bold]run {scenario.name} stopped:[/bold] {reason}")
        c.print(
            f"  {stats.posts:,} posts, {stats.comments:,} comments, {stats.actions:,} actions"
            f" ({stats.refused:,} refused), {stats.tokens:,} LLM tokens, ${stats.cost_usd:.2f},"
            f" {time.monotonic() - started:.0f} s of wall time"
        )
        if self._llm.calls:
            c.print(f"  {self._llm.summary()}")
        c.print(f"  run folder: {folder.path}")
        c.print("  next:")
        c.print(f"    moltsim watch {folder.path}")
        c.print(f"    moltsim export {folder.path} --out {folder.path / 'export'}")
        c.print(f"    moltsim report {folder.path} --out {folder.path / 'report.html'}")
        c.print(f"    moltsim stats {folder.path}")
        if self.end_state != "finished":
            c.print(f"    moltsim run {self.scenario_path} --run-dir {folder.path} --resume")


def run_scenario(**kwargs: Any) -> int:
    return asyncio.run(Runner(**kwargs).run())
