"""Fixtures of the hostile-input suites: a seeded run, a broker for it (each kind in turn) and
an attacker connected to both. Module-scoped: each test module attacks its own run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from moltsim.runfolder import RunFolder
from tests.faults.hostile import Attacker, Seeded, attacking, make_hostile_run
from tests.wire.conftest import BROKERS, Broker, run_async, start_broker


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunFolder, Seeded]:
    return run_async(make_hostile_run(tmp_path_factory.mktemp("hostile") / "run"))


@pytest.fixture(scope="module", params=BROKERS)
def hostile_broker(
    request: pytest.FixtureRequest,
    hostile_run: tuple[RunFolder, Seeded],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Broker]:
    broker = start_broker(request.param, hostile_run[0], tmp_path_factory.mktemp("mosq"))
    yield broker
    broker.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def attacker(
    hostile_run: tuple[RunFolder, Seeded], hostile_broker: Broker
) -> AsyncIterator[Attacker]:
    async with attacking(hostile_run[0], hostile_broker) as attacker:
        yield attacker
