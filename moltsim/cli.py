"""The ``moltsim`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moltsim import __version__, logs
from moltsim.agent.persona import load_persona, persona_profile
from moltsim.agent.pool import AgentSpec, PoolManifest, run_pool
from moltsim.agent.skill import SkillError
from moltsim.domain.errors import Refusal
from moltsim.engine.clock import RealtimeClock, SteppedClock
from moltsim.engine.service import Engine
from moltsim.identity.credentials import CredentialsError
from moltsim.llm.config import LlmConfigError
from moltsim.llm.local.catalog import MODELS, LocalModelError, find_model
from moltsim.llm.replay import ReplayError
from moltsim.runfolder import RunFolder
from moltsim.scenario.llmcheck import LlmCheckError
from moltsim.scenario.load import load_scenario, plan_agents
from moltsim.scenario.modelsetup import ModelSetup
from moltsim.scenario.runner import run_scenario
from moltsim.scenario.schema import parse_duration
from moltsim.store.llmstats import llm_figures
from moltsim.store.metrics import summary_lines as metrics_summary
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFileError
from moltsim.tomlfile import ConfigError
from moltsim.wire.connection import BrokerAddress, BrokerAddressError
from moltsim.wire.embedded import EmbeddedBroker
from moltsim.wire.gateway import Gateway
from moltsim.wire.mosquitto import write_mosquitto_files
from moltsim.wire.server import EngineServer

COUNTED_TABLES = ("agents", "submolts", "posts", "comments", "votes", "follows", "dms", "actions")
RUN_WRITERS = frozenset({"run", "init", "register", "engine", "pool", "agent", "broker"})
"""Commands that write into a run folder."""
DEFAULT_START = datetime(2026, 1, 28, tzinfo=UTC).timestamp()
"""Sim time of a new run's first moment unless a scenario says otherwise."""


def _sim_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S sim")


def stats(run: Path, as_json: bool = False) -> int:
    """Print what a run file holds: entity counts, sim time span, refusals by code, the model's
    calls, the run's state and its metrics (``--json``: one JSON object)."""
    conn = open_readonly(run)
    try:
        if as_json:
            print(json.dumps(stats_json(conn, run), indent=1))
            return 0
        print(f"run file  {run}")
        for table in COUNTED_TABLES:
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            print(f"{table:<10}{count:>12,}")
        first, last = conn.execute("SELECT MIN(sim_time), MAX(sim_time) FROM actions").fetchone()
        if first is not None:
            print(f"sim time  {_sim_time(first)} .. {_sim_time(last)}")
        refusals = conn.execute(
            "SELECT outcome, COUNT(*) FROM actions WHERE outcome != 'ok'"
            " GROUP BY outcome ORDER BY COUNT(*) DESC"
        ).fetchall()
        for code, count in refusals:
            print(f"refused   {code:<32}{count:>8,}")
        llm = llm_figures(conn)
        if llm.calls:
            print(
                f"llm       {llm.calls:,} calls, {llm.errors:,} failed"
                + (f" ({_kinds(llm.errors_by_kind)})" if llm.errors_by_kind else "")
                + f", {llm.repaired:,} repaired; modes {_kinds(llm.modes) or 'unknown'}"
            )
            print(
                f"llm       {llm.valid_actions:,} of {llm.proposed_actions:,} model actions"
                f" accepted (valid rate {llm.valid_action_rate:.1%}, not_found"
                f" {llm.not_found_rate:.1%})"
            )
            print(
                f"llm       tokens {llm.prompt_tokens:,} prompt ({llm.cache_hit_rate:.0%} from"
                f" the cache), {llm.completion_tokens:,} completion"
                + (f"; {llm.estimated_calls:,} calls estimated" if llm.estimated_calls else "")
            )
            print(
                f"llm       server p50 {llm.server_ms_p50 / 1000:.1f} s, p95"
                f" {llm.server_ms_p95 / 1000:.1f} s; waiting for a slot p50"
                f" {llm.queue_ms_p50 / 1000:.1f} s, p95 {llm.queue_ms_p95 / 1000:.1f} s"
            )
        for line in metrics_summary(conn):
            print(line)
    finally:
        conn.close()
    return 0


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {kind}" for kind, n in sorted(counts.items(), key=lambda x: -x[1]))


def stats_json(conn: sqlite3.Connection, run: Path) -> dict[str, Any]:
    """``moltsim stats --json``: counts, time span, refusals, model calls, run state."""
    counts = {
        table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in COUNTED_TABLES
    }
    first, last = conn.execute("SELECT MIN(sim_time), MAX(sim_time) FROM actions").fetchone()
    refused = dict(
        conn.execute(
            "SELECT outcome, COUNT(*) FROM actions WHERE outcome != 'ok' GROUP BY outcome"
        ).fetchall()
    )
    meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
    return {
        "run": str(run),
        "state": meta.get("state"),
        "counts": counts,
        "sim_time": {"first": first, "last": last},
        "refused": refused,
        "llm": llm_figures(conn).as_json(),
    }


def _watch(run: Path, events: str | None = None) -> int:
    """Open the read-only live view of a run (``moltsim watch``)."""
    open_readonly(run).close()  # a missing, corrupt or newer run file fails here, clearly
    address = None if events is None else BrokerAddress.parse(events)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise RunFileError("moltsim watch needs a terminal (stdin and stdout must be a tty)")
    from moltsim.tui.app import watch  # Textual loads only for this command

    return watch(run, events=address)


async def _init(path: Path) -> int:
    folder = await RunFolder.create(path)
    print(f"created run folder {folder.path} (run id {folder.accounts().sim})")
    return 0


async def _register(
    run: Path,
    handles: list[str],
    pool: str,
    at: float | None,
    personas: list[Path],
    count: int,
    seed: int,
) -> int:
    """Register agents by handle, or ``count`` copies of each persona file, for ``pool``."""
    folder = RunFolder.locate(run)
    now = at if at is not None else await _last_sim_time(folder) or DEFAULT_START
    agents: list[tuple[str, dict[str, object]]] = [(h, {}) for h in handles]
    specs: list[AgentSpec] = []
    for path in personas:
        persona = load_persona(path)
        for copy in range(1, count + 1):
            handle = persona.handle if copy == 1 else f"{persona.handle}_{copy}"
            agents.append((handle, persona_profile(persona)))
            specs.append(AgentSpec(handle=handle, persona=persona, seed=seed))
    created = await folder.register(agents, pool, now)
    if specs:
        manifest = PoolManifest.load(folder, pool)
        manifest.agents.extend(specs)
        manifest.save(folder)
    for creds in created:
        print(f"registered @{creds.handle} in pool {pool!r}; key in {folder.keys}")
    return 0


async def _pool(run: Path, pool: str, broker: str, only: set[str] | None, concurrency: int) -> int:
    """Host a pool's agents until SIGINT/SIGTERM or the end of the run."""
    folder = RunFolder.locate(run)
    address = BrokerAddress.parse(broker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_pool(folder, pool, address, stop, only=only, concurrency=concurrency)
    return 0


async def _last_sim_time(folder: RunFolder) -> float:
    conn = open_readonly(folder.db)
    try:
        (last,) = conn.execute("SELECT MAX(sim_time) FROM actions").fetchone()
    finally:
        conn.close()
    return float(last or 0.0)


async def _engine(
    run: Path,
    broker: str,
    speed: float,
    start: float | None,
    tick: float | None = None,
    until: float | None = None,
    step_timeout: float = 60.0,
) -> int:
    """Serve a run's engine on a broker until SIGINT or SIGTERM, then flush and stop.

    With ``--tick`` the clock is stepped: it advances one tick whenever every pool is done."""
    folder = RunFolder.locate(run)
    address = BrokerAddress.parse(broker)
    accounts = folder.accounts()
    engine = await Engine.open(folder.db)
    begin = max(engine.last_sim_time, start or DEFAULT_START)
    stepped: SteppedClock | None = None
    now: Callable[[], float]
    if tick is not None:
        first = start or DEFAULT_START
        done = max(0, math.ceil((begin - first) / tick - 1e-9))
        stepped = SteppedClock(start=first, tick_s=tick, tick=done)
        now = stepped.now
    else:
        now = RealtimeClock(start=begin, speed=speed, until=until).now
    gateway = await Gateway.open(engine, now)
    server = EngineServer(
        gateway, address, accounts, speed=speed, stepped=stepped, until=until,
        step_timeout=step_timeout,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("moltsim").info(
        "engine for run %s on %s (run file %s)", accounts.sim, address.url, folder.db
    )
    try:
        await server.run(stop)
    finally:
        gateway.close()
        await engine.close()
    logging.getLogger("moltsim").info("engine stopped after %d envelopes", server.processed)
    return 0


def _broker_config(run: Path, out: Path, port: int) -> int:
    folder = RunFolder.locate(run)
    config = write_mosquitto_files(folder.accounts(), out, port)
    print(f"wrote {config}, {out / 'passwd'} and {out / 'acl'}")
    print(f"start it with: mosquitto -c {config}")
    return 0


def _broker(run: Path, port: int | None) -> int:
    folder = RunFolder.locate(run)
    folder.accounts()
    broker = EmbeddedBroker.start(folder.broker, port)
    print(f"embedded broker for {folder.path} on {broker.url}; Ctrl-C stops it", flush=True)
    try:
        while broker.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


async def _llm_check(path: Path) -> int:
    """Check a scenario's model before a run: serve it if it is local, then each endpoint
    answers, takes structured answers and makes two timed decisions; estimate the run."""
    scenario = load_scenario(path)
    agents = plan_agents(scenario, path)
    if scenario.llm is None or not any(a.brain == "openai" for a in agents):
        print(f'{path}: no agent uses a model (brain = "openai"); nothing to check')
        return 0
    setup = ModelSetup(scenario, agents)
    try:
        await setup.start()
    finally:
        setup.stop()
    print("the model is ready for this scenario")
    return 0


def _llm_fetch(name: str | None) -> int:
    """Download a local model into the cache (checked by sha256), for later runs offline."""
    from moltsim.llm.local.catalog import DEFAULT_LOCAL_MODEL
    from moltsim.llm.local.fetch import ensure_model

    model = find_model(name or DEFAULT_LOCAL_MODEL)
    path = ensure_model(model, progress=print)
    print(f"{model.name}: {path}")
    return 0


def _llm_models() -> int:
    """List the local models moltsim can fetch and serve itself."""
    for model in MODELS.values():
        print(f"{model.name:<22}{model.size / 1e6:>8,.0f} MB  {model.description}")
    return 0


def _validate(path: Path) -> int:
    try:
        scenario = load_scenario(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {path}:{problem}", file=sys.stderr)
        return 1
    agents = plan_agents(scenario, path)
    print(
        f"{path}: ok: {len(agents)} agents, {len(scenario.submolts)} submolts,"
        f" {scenario.clock.mode} clock for {scenario.clock.duration / 3600:g} sim-hours"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moltsim",
        description="Simulate an agent-only social network; humans only watch.",
    )
    parser.add_argument("--version", action="version", version=f"moltsim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--log-file", type=Path, help="also write JSON-lines logs to this file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser(
        "run",
        help="run a scenario to its end (or first budget); --resume continues one",
        description="Run a scenario: broker, engine and agent pools, supervised until the end.",
    )
    p.add_argument("scenario", type=Path, help="the scenario file (TOML)")
    p.add_argument("--run-dir", type=Path, help="run folder (default: runs/<name>-<timestamp>)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument(
        "--broker", help="use this broker (mqtt://host:port) instead of the embedded one"
    )
    p.add_argument("--duration", help="override the sim duration (e.g. 6h)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument(
        "--replay-llm", type=Path, metavar="RUN",
        help="take the LLM agents' decisions from RUN's recordings instead of a model"
        " (a stepped scenario; the run then exports as RUN did)",
    )  # fmt: skip

    p = commands.add_parser(
        "llm",
        help="the model side: check a scenario's model, fetch or list local models",
        description="Check a scenario's model and estimate its run; fetch or list local models.",
    )
    llm = p.add_subparsers(dest="llm_command", metavar="LLM_COMMAND", required=True)
    c = llm.add_parser("check", help="check a scenario's model and estimate the run",
                       description=_llm_check.__doc__)  # fmt: skip
    c.add_argument("scenario", type=Path)
    c = llm.add_parser("fetch", help="download a local model", description=_llm_fetch.__doc__)
    c.add_argument("model", nargs="?", help="a name from 'moltsim llm models'")
    llm.add_parser("models", help="list the local models", description=_llm_models.__doc__)

    p = commands.add_parser(
        "validate",
        help="check a scenario file; lists every problem with its field and line",
        description="Check a scenario and its persona files; exit 1 on any problem.",
    )
    p.add_argument("scenario", type=Path)

    p = commands.add_parser("stats", help="summarise a run file", description=stats.__doc__)
    p.add_argument("run", type=Path, help="a run folder or its run.db")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")

    p = commands.add_parser(
        "watch", help="watch a run live in the terminal (read-only)", description=_watch.__doc__
    )
    p.add_argument("run", type=Path, help="a run folder or its run.db")
    p.add_argument(
        "--events", metavar="URL",
        help="also follow the run's events on this broker (mqtt://host:port), as its observer",
    )  # fmt: skip

    p = commands.add_parser(
        "init", help="create an empty run folder", description="Create an empty run folder."
    )
    p.add_argument("path", type=Path)

    p = commands.add_parser(
        "register",
        help="register agents: key pairs to keys/, public keys to the run file",
        description="Register agents in a run whose engine is not running.",
    )
    p.add_argument("run", type=Path, help="a run folder or its run.db")
    p.add_argument("handles", nargs="*", metavar="HANDLE")
    p.add_argument("--pool", default="pool-1", help="the broker account that acts for them")
    p.add_argument("--at", type=float, help="sim time of registration (epoch seconds)")
    p.add_argument(
        "--persona", type=Path, action="append", default=[], help="a persona file (repeatable)"
    )
    p.add_argument("--count", type=int, default=1, help="agents per persona file")
    p.add_argument("--seed", type=int, default=0, help="seed of their offline brains")

    p = commands.add_parser("pool", help="host a pool of agents", description=_pool.__doc__)
    p.add_argument("--db", type=Path, required=True, help="the run folder or its run.db")
    p.add_argument("--pool", required=True, help="the pool to host")
    p.add_argument("--broker", required=True, help="mqtt://host:port")
    p.add_argument("--concurrency", type=int, default=64, help="heartbeats at once")

    p = commands.add_parser(
        "agent", help="run a single agent", description="Run one agent of a pool on its own."
    )
    p.add_argument("--db", type=Path, required=True, help="the run folder or its run.db")
    p.add_argument("--pool", required=True, help="the agent's pool")
    p.add_argument("--handle", required=True)
    p.add_argument("--broker", required=True, help="mqtt://host:port")

    p = commands.add_parser(
        "engine", help="serve a run's engine on a broker", description=_engine.__doc__
    )
    p.add_argument("--db", type=Path, required=True, help="the run folder or its run.db")
    p.add_argument("--broker", required=True, help="mqtt://host:port")
    p.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second")
    p.add_argument("--start", type=float, help="sim time to start from (epoch seconds)")
    p.add_argument("--tick", type=float, help="stepped clock: sim seconds per tick")
    p.add_argument("--until", type=float, help="the end of the run: the clock stops there")
    p.add_argument(
        "--step-timeout", type=float, default=60.0,
        help="stepped clock: seconds a tick waits for the pools (default 60)",
    )  # fmt: skip

    p = commands.add_parser(
        "broker-config",
        help="write Mosquitto config, password and ACL files for a run",
        description="Write mosquitto.conf, passwd and acl enforcing the run's topic rules.",
    )
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--port", type=int, default=1883)

    p = commands.add_parser(
        "broker", help="run the embedded broker for a run", description="Run the embedded broker."
    )
    p.add_argument("run", type=Path)
    p.add_argument("--port", type=int)

    p = commands.add_parser(
        "export",
        help="write a run's records (or transcripts) and manifest.json to a folder",
        description="Export a run: one file per entity plus manifest.json, from one snapshot.",
    )
    p.add_argument("run", type=Path, help="a run folder or its run.db")
    p.add_argument("--out", type=Path, required=True, help="the export folder (new or empty)")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "markdown"], default="jsonl")
    p.add_argument(
        "--purpose", choices=["analysis", "training"], default="analysis",
        help="training leaves out everything by agents whose owners objected",
    )  # fmt: skip
    p.add_argument("--since", help="keep records from this ISO-8601 sim time on")
    p.add_argument("--until", help="keep records before this ISO-8601 sim time")
    p.add_argument("--submolt", help="keep only this submolt's posts, comments and votes")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")

    p = commands.add_parser(
        "verify",
        help="check every exported action's signature and every record against its action",
        description="Verify an export folder; exit 1 if anything fails.",
    )
    p.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")

    p = commands.add_parser(
        "report", help="write a self-contained HTML report with plots",
        description="Write a self-contained HTML report of a run (readable offline).",
    )  # fmt: skip
    p.add_argument("run", type=Path, help="a run folder or its run.db")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _dispatch(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``moltsim stats RUN | head``): stop quietly, as ``cat`` would,
        # and keep the interpreter's final flush from printing a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        # Ctrl-C before a run has its own handlers (fetching or checking the model): whatever
        # was started has been stopped on the way out.
        with contextlib.suppress(OSError):
            print("moltsim: interrupted", file=sys.stderr)
        return 130
    return code


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in RUN_WRITERS:
        # Every file of a run folder (run file, WAL, logs, manifests) is its owner's only;
        # the processes a run starts inherit this.
        os.umask(0o077)
    logs.setup(args.verbose, args.log_file, args.command)
    try:
        match args.command:
            case "run":
                try:
                    duration = None if args.duration is None else parse_duration(args.duration)
                except ValueError as exc:
                    parser.error(f"--duration: {exc}")
                return run_scenario(
                    scenario_path=args.scenario, run_dir=args.run_dir, seed=args.seed,
                    broker_url=args.broker, duration=duration, resume=args.resume,
                    replay_llm=args.replay_llm,
                )  # fmt: skip
            case "validate":
                return _validate(args.scenario)
            case "llm":
                match args.llm_command:
                    case "check":
                        return asyncio.run(_llm_check(args.scenario))
                    case "fetch":
                        return _llm_fetch(args.model)
                    case _:
                        return _llm_models()
            case "stats":
                return stats(args.run, args.json)
            case "watch":
                return _watch(args.run, args.events)
            case "init":
                return asyncio.run(_init(args.path))
            case "register":
                if not args.handles and not args.persona:
                    parser.error("register needs handles or --persona files")
                return asyncio.run(
                    _register(args.run, args.handles, args.pool, args.at, args.persona,
                              args.count, args.seed)
                )  # fmt: skip
            case "pool":
                return asyncio.run(_pool(args.db, args.pool, args.broker, None, args.concurrency))
            case "agent":
                return asyncio.run(_pool(args.db, args.pool, args.broker, {args.handle}, 1))
            case "engine":
                return asyncio.run(
                    _engine(args.db, args.broker, args.speed, args.start, args.tick, args.until,
                            args.step_timeout)
                )  # fmt: skip
            case "broker-config":
                return _broker_config(args.run, args.out, args.port)
            case "broker":
                return _broker(args.run, args.port)
            case "export" | "verify" | "report":
                from moltsim.export import commands as export_commands

                return export_commands.run(args)
    except (
        RunFileError,
        CredentialsError,
        BrokerAddressError,
        ConfigError,
        SkillError,
        LlmConfigError,
        LlmCheckError,
        LocalModelError,
        ReplayError,
    ) as exc:
        with contextlib.suppress(OSError):  # stderr may be a file on a full disk
            print(f"moltsim: {exc}", file=sys.stderr)
        return 2
    except Refusal as exc:
        print(f"moltsim: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
