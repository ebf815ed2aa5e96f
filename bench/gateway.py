"""Signed envelopes through the gateway and the engine in one process, no broker: what the
engine's own core(s) can do once pools run elsewhere, with signatures checked ahead on other
threads or not (``moltsim.wire.gateway.VERIFY_AHEAD_MIN``)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from moltsim.engine.rules import ProactiveContact, RateLimits, Rules
from moltsim.engine.service import Engine
from moltsim.identity.signing import Signer
from moltsim.wire import gateway as gateway_module
from moltsim.wire.gateway import Gateway, Inbound

T0 = 1_800_000_000.0
AGENTS = 100
GROUP = 256
"""Envelopes per group, about what a loaded engine server gathers."""


async def _rate(envelopes: int, ahead: bool) -> tuple[float, float]:
    """``(envelopes per second, CPU µs per envelope)`` for signed profile updates."""
    rules = Rules(
        rate_limits=RateLimits(enabled=False), proactive_contact=ProactiveContact(enabled=False)
    )
    with tempfile.TemporaryDirectory(prefix="moltsim-bench-") as tmp:
        engine = await Engine.open(Path(tmp) / "run.db", rules)
        signers = {f"agent_{i}": Signer.generate() for i in range(AGENTS)}
        for handle, signer in signers.items():
            await engine.register_agent(handle, signer.public_key, T0, pool="pool-1")
        gateway = await Gateway.open(engine, lambda: T0 + 86_400)
        handles = list(signers)
        seqs = dict.fromkeys(handles, 0)
        inbound = []
        for i in range(envelopes):
            handle = handles[i % AGENTS]
            seqs[handle] += 1
            action = {"type": "update_profile", "bio": f"bio number {i}"}
            raw = signers[handle].envelope_bytes(handle, seqs[handle], action)
            inbound.append(Inbound(raw, topic_agent=handle))
        saved = gateway_module.VERIFY_AHEAD_MIN
        gateway_module.VERIFY_AHEAD_MIN = 32 if ahead else envelopes + 1
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, envelopes, GROUP):
                await gateway.handle(inbound[i : i + GROUP])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            gateway_module.VERIFY_AHEAD_MIN = saved
            gateway.close()
            await engine.close()
    return envelopes / wall, cpu / envelopes * 1e6


def run(envelopes: int = 20_000) -> dict[str, float]:
    figures: dict[str, float] = {}
    for ahead in (False, True):
        name = "ahead" if ahead else "in_order"
        rate, cpu = asyncio.run(_rate(envelopes, ahead))
        figures[f"gateway_signed_envelopes_per_s_{name}"] = rate
        figures[f"gateway_cpu_us_per_envelope_{name}"] = cpu
        print(f"gateway, signatures checked {name.replace('_', ' ')}: {rate:,.0f}/s, {cpu:.0f} µs")
    figures["gateway_verify_threads"] = gateway_module.VERIFY_THREADS
    return figures
