"""End to end: signed actions from 8 agent clients through a real broker to a real engine
process and back, with the embedded broker (amqtt) and with Mosquitto.

Each client is its own pool connection and batches what is ready together (``act-batch``).
Throughput is measured closed-loop (each client keeps a window of requests in flight); ack
latency open-loop at a fixed offered load. Also: Ed25519 verification alone, on one core.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from moltsim.engine.rules import RateLimits, Rules
from moltsim.identity.signing import Signer, Verifier
from moltsim.runfolder import RunFolder
from moltsim.wire.client import AgentClient, PoolClient
from moltsim.wire.connection import BrokerAddress
from moltsim.wire.embedded import EmbeddedBroker, free_port
from moltsim.wire.mosquitto import MosquittoProcess

CLIENTS = 8
WINDOW = 400
"""Requests each client keeps in flight in the throughput test."""
T0 = 1_800_000_000.0
E2E_RULES = Rules(
    rate_limits=RateLimits(
        post_interval_s=0,
        comment_interval_s=0,
        comments_per_day=10**9,
        reads_per_minute=10**9,
        writes_per_minute=10**9,
        new_agent_age_s=0,
    )
)


def verify_only(seconds: float = 1.0) -> float:
    """Envelope signature checks per second (canonical JSON + Ed25519), one core."""
    signer = Signer.generate()
    verifier = Verifier()
    verifier.add("bench", signer.public_key)
    envelope = signer.envelope("bench", 1, {"type": "vote", "target": "post", "id": 7, "value": 1})
    sig = envelope.pop("sig")
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            assert verifier.verify("bench", envelope, sig)
        count += 200
    return count / (time.perf_counter() - start)


@contextmanager
def _broker(kind: str, folder: RunFolder) -> Iterator[EmbeddedBroker | MosquittoProcess]:
    broker: EmbeddedBroker | MosquittoProcess
    if kind == "embedded":
        broker = EmbeddedBroker.start(folder.broker)
    else:
        broker = MosquittoProcess.start(folder.accounts(), folder.path / "mosquitto", free_port())
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def _engine(folder: RunFolder, url: str) -> Iterator[subprocess.Popen[bytes]]:
    log = open(folder.logs / "engine.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "moltsim.cli", "engine", "--db", str(folder.path), "--broker", url,
         "--start", str(T0)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


async def _prepare(folder: RunFolder) -> None:
    agents: list[tuple[str, dict[str, object]]] = [(f"bench_{i}", {}) for i in range(CLIENTS)]
    for handle, profile in agents:
        await folder.register([(handle, profile)], f"pool-{handle}", T0)


def _action(rng: random.Random, posts: list[int]) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.6 and posts:
        return {"type": "vote", "target": "post", "id": rng.choice(posts),
                "value": rng.choice((1, -1))}  # fmt: skip
    if roll < 0.9 and posts:
        return {"type": "comment", "post_id": rng.choice(posts), "body": "agreed, and more so"}
    return {"type": "post", "submolt": "bench", "title": "a benchmark post", "body": "text"}


async def _clients(folder: RunFolder, address: BrokerAddress) -> list[PoolClient]:
    accounts = folder.accounts()
    pools = []
    for i in range(CLIENTS):
        handle = f"bench_{i}"
        pool = PoolClient(address, f"pool-{handle}", accounts.passwords[f"pool-{handle}"],
                          accounts.topics, timeout=30, batch=True)  # fmt: skip
        pool.add(folder.credentials(handle))
        pools.append(pool)
    for pool in pools:
        await pool.__aenter__()
    return pools


async def _throughput(agents: list[AgentClient], posts: list[int], seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(agent: AgentClient, seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)

        async def one() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                result = await agent.act(_action(rng, posts))
                if result.ok and "post_id" in result.data and "comment_id" not in result.data:
                    posts.append(int(result.data["post_id"]))
                done += 1

        await asyncio.gather(*(one() for _ in range(WINDOW)))

    start = time.perf_counter()
    await asyncio.gather(*(worker(a, i) for i, a in enumerate(agents)))
    return done / (time.perf_counter() - start)


async def _latency(
    agents: list[AgentClient], posts: list[int], rate: float, seconds: float
) -> list[float]:
    """Open loop: requests leave at ``rate`` per second in total, whatever the replies do."""
    latencies: list[float] = []
    rng = random.Random(5)
    interval = len(agents) / rate

    async def timed(agent: AgentClient) -> None:
        t = time.perf_counter()
        await agent.act(_action(rng, posts))
        latencies.append(time.perf_counter() - t)

    async def sender(agent: AgentClient, offset: float) -> None:
        tasks = []
        start = time.perf_counter() + offset
        n = 0
        while (next_at := start + n * interval) < start + seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            tasks.append(asyncio.create_task(timed(agent)))
            n += 1
        await asyncio.gather(*tasks)

    await asyncio.gather(*(sender(a, i * interval / len(agents)) for i, a in enumerate(agents)))
    return latencies


async def _measure(kind: str, seconds: float, latency_rate: float | None) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"moltsim-e2e-{kind}-") as tmp:
        folder = await RunFolder.create(Path(tmp) / "run", rules=E2E_RULES)
        await _prepare(folder)
        with _broker(kind, folder) as broker, _engine(folder, broker.url) as engine:
            address = BrokerAddress(broker.host, broker.port)
            pools = await _clients(folder, address)
            agents = [next(iter(p.agents.values())) for p in pools]
            try:
                await agents[0].create_submolt("bench")
                posts = []
                for agent in agents:
                    result = await agent.post("bench", "seed post", "for votes")
                    posts.append(int(result.data["post_id"]))
                await _throughput(agents, posts, 1.0)  # warm-up
                procs = {"engine": psutil.Process(engine.pid),
                         "broker": psutil.Process(broker.process.pid)}  # fmt: skip
                cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
                client0, t0 = time.process_time(), time.perf_counter()
                rate = await _throughput(agents, posts, seconds)
                done = rate * (time.perf_counter() - t0)
                name = kind_name(kind)
                figures[f"e2e_{name}_actions_per_s"] = rate
                # Where the CPU goes, per acknowledged action (all three share 2 cores here).
                for key, proc in procs.items():
                    used = sum(proc.cpu_times()[:2]) - cpu0[key]
                    figures[f"e2e_{name}_{key}_cpu_us_per_action"] = used / done * 1e6
                figures[f"e2e_{name}_clients_cpu_us_per_action"] = (
                    (time.process_time() - client0) / done * 1e6
                )
                if latency_rate:
                    lat = sorted(await _latency(agents, posts, latency_rate, seconds))
                    name = kind_name(kind)
                    figures[f"e2e_{name}_ack_p50_ms"] = statistics.median(lat) * 1000
                    figures[f"e2e_{name}_ack_p99_ms"] = lat[int(len(lat) * 0.99) - 1] * 1000
                    figures[f"e2e_{name}_ack_offered_per_s"] = latency_rate
            finally:
                for pool in pools:
                    await pool.close()
    return figures


def kind_name(kind: str) -> str:
    return "amqtt" if kind == "embedded" else "mosquitto"


def run(seconds: float = 8.0, latency_rate: float = 2_000.0) -> dict[str, float]:
    figures = {"verify_only_per_s": verify_only()}
    print(f"  verification alone: {figures['verify_only_per_s']:,.0f}/s")
    for kind in ("embedded", "mosquitto"):
        print(f"e2e through {kind_name(kind)}: {CLIENTS} clients, {seconds:.0f} s")
        figures.update(asyncio.run(_measure(kind, seconds, latency_rate)))
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:<40} {value:>12,.1f}")
