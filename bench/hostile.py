"""Hostile input at volume, through Mosquitto (or the embedded broker where Mosquitto is not
installed) to a real engine process: hypothesis-generated envelopes of every kind, then a
forgery campaign.

Every envelope is checked as in ``tests/faults/`` (one ledger row each, with an outcome its
recipe allows; accepted writes in the forum exactly as sent; forgeries refused with their own
code), and the run file passes ``PRAGMA integrity_check`` and the forum invariants every few
thousand envelopes. A broken property stops the benchmark with its assertion, after the figures
so far are recorded.

Figures: ``fuzz_envelopes_total``, ``fuzz_envelopes_per_s`` (sent, answered and checked; the
generation is not timed), ``fuzz_accepted_fraction``, ``fuzz_engine_crashes`` (must be 0),
``forgery_envelopes_total``, ``forgery_accepted`` (must be 0), ``forgery_envelopes_per_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from moltsim.runfolder import RunFolder
from moltsim.wire.brokerprocess import BrokerProcess
from moltsim.wire.embedded import EmbeddedBroker, free_port
from moltsim.wire.mosquitto import MosquittoProcess
from tests.faults.hostile import (
    Attacker,
    Forger,
    Seeded,
    attack_clients,
    draw_cases,
    forgery_campaign,
    genuine_history,
    make_hostile_run,
)
from tests.wire.conftest import Broker, EngineProcess, forum_counts

CHUNK = 5_000
"""Envelopes generated at a time (then sent: half on an agent topic, half in pool batches)."""
TOPIC_ROUND = 200
"""Envelopes published on an agent topic before waiting for their replies."""
POOL_BATCH = 100
CHECK_EVERY = 20_000
"""Envelopes between two checks of the whole run file."""


@contextlib.contextmanager
def _broker(folder: RunFolder) -> Iterator[Broker]:
    process: BrokerProcess
    try:
        process = MosquittoProcess.start(folder.accounts(), folder.path / "mosq", free_port())
        kind = "mosquitto"
    except FileNotFoundError:
        process = EmbeddedBroker.start(folder.broker)
        kind = "embedded"
    try:
        yield Broker(kind, process.host, process.port, process.stop, folder.path / "broker.log")
    finally:
        process.stop()


async def _fuzz(attacker: Attacker, seeded: Seeded, total: int, seed: int) -> float:
    """Send ``total`` generated envelopes; returns the seconds spent sending and checking."""
    busy = 0.0
    checked_at = 0
    for start in range(0, total, CHUNK):
        cases = draw_cases(seeded, min(CHUNK, total - start), seed=seed + start)
        began = time.perf_counter()
        half = len(cases) // 2
        for n in range(0, half, TOPIC_ROUND):
            await attacker.send_on_topic(cases[n : min(n + TOPIC_ROUND, half)])
        for n in range(half, len(cases), POOL_BATCH):
            await attacker.send_batch(cases[n : n + POOL_BATCH])
        busy += time.perf_counter() - began
        if attacker.tally.sent - checked_at >= CHECK_EVERY:
            attacker.assert_healthy()
            checked_at = attacker.tally.sent
    attacker.assert_healthy()
    return busy


async def _run(fuzz: int, forgeries: int, seed: int, figures: dict[str, float]) -> None:
    with tempfile.TemporaryDirectory(prefix="moltsim-hostile-") as tmp:
        folder, seeded = await make_hostile_run(Path(tmp) / "run")
        with _broker(folder) as broker:
            engine = await EngineProcess(folder, broker).astart()
            try:
                async with attack_clients(folder, broker) as clients:
                    attacker = Attacker(folder, clients, engine)
                    try:
                        busy = await _fuzz(attacker, seeded, fuzz, seed)
                    finally:
                        figures["fuzz_engine_crashes"] = 0.0 if engine.running else 1.0
                    tally = attacker.tally
                    figures["fuzz_envelopes_total"] = float(tally.sent)
                    figures["fuzz_envelopes_per_s"] = tally.sent / busy
                    figures["fuzz_accepted_fraction"] = tally.outcomes["ok"] / tally.sent

                    genuine = await genuine_history(attacker)
                    counts = forum_counts(folder.db)
                    began = time.perf_counter()
                    accepted = await forgery_campaign(
                        attacker, Forger(attacker, genuine, seed), forgeries, batch=POOL_BATCH
                    )
                    elapsed = time.perf_counter() - began
                    figures["forgery_envelopes_total"] = float(forgeries)
                    figures["forgery_accepted"] = float(accepted)
                    figures["forgery_envelopes_per_s"] = forgeries / elapsed
                    assert accepted == 0, f"{accepted} forged envelopes were accepted"
                    assert forum_counts(folder.db) == counts, "a forgery changed the forum"
                    attacker.assert_healthy()
            finally:
                code = engine.stop()
                assert code == 0, f"the engine exited with {code}:\n{engine.log()[-3_000:]}"


def run(fuzz: int = 100_000, forgeries: int = 10_000, seed: int = 1) -> dict[str, float]:
    figures: dict[str, float] = {}
    try:
        asyncio.run(_run(fuzz, forgeries, seed, figures))
    finally:
        print(f"  hostile input: {figures}")
    return figures
