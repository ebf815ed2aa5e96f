"""The broker goes away in the middle of a real run: the embedded one is SIGKILLed (the runner
starts it again on the same port), a Mosquitto given with ``--broker`` is stopped and started
again on its port. The engine, the pools and the runner reconnect; the run reaches its end and
nothing acknowledged is lost or applied twice."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from moltsim.runfolder import RunFolder
from moltsim.wire.embedded import free_port
from moltsim.wire.mosquitto import MosquittoProcess
from tests.faults.faultrun import (
    accepted_since,
    ack_journal,
    children,
    one,
    replaced,
    two_pool_scenario,
    verdict,
)
from tests.scenario.conftest import running, wait_for
from tests.wire.conftest import mosquitto_binary

pytestmark = pytest.mark.slow

OUTAGES = 2


@dataclass(frozen=True)
class Outages:
    run_dir: Path
    journal: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def embedded_killed(tmp_path_factory: pytest.TempPathFactory) -> Outages:
    base = tmp_path_factory.mktemp("embedded-killed")
    run_dir = base / "run"
    scenario = two_pool_scenario(base, "amqtt", "30h")
    with ack_journal(base / "acks") as journal, running(scenario, run_dir) as run:
        wait_for(lambda: len(children(run, "pool")) == 2, 30, "two pools")
        accepted_since(run_dir, 0.0, 30, "the first action")
        for outage in range(OUTAGES):
            broker = one(run, "broker")
            broker.kill()
            replaced(run, "broker", broker)
            accepted_since(run_dir, time.time(), 40, f"an action after broker kill #{outage + 1}")
        code = run.wait(timeout=120)
        return Outages(run_dir, journal, code, run.text)


def test_the_runner_restarts_a_killed_embedded_broker(embedded_killed: Outages) -> None:
    out = embedded_killed.output
    assert embedded_killed.returncode == 0, out[-3000:]
    assert "duration was reached" in out, out[-3000:]
    restarts = [line for line in out.splitlines() if " run WARNING the embedded broker" in line]
    assert len(restarts) == OUTAGES, out[-3000:]
    assert all("restarted on port" in line for line in restarts)
    assert pools_never_quit(out), out[-3000:]


def test_an_embedded_broker_restart_loses_and_doubles_nothing(embedded_killed: Outages) -> None:
    assert verdict(embedded_killed.run_dir, embedded_killed.journal) == []


@pytest.fixture(scope="module")
def mosquitto_restarted(tmp_path_factory: pytest.TempPathFactory) -> Outages:
    """``moltsim run --broker`` waits for a Mosquitto that is configured once the run folder
    (and so its accounts) exists; that Mosquitto is then stopped (SIGTERM, then SIGKILL) and
    started again on the same port while the run goes on."""
    mosquitto_binary()  # installs it, or skips
    base = tmp_path_factory.mktemp("mosquitto-restarted")
    run_dir = base / "run"
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    with (
        ack_journal(base / "acks") as journal,
        running(two_pool_scenario(base, "mosquitto", "30h"), run_dir, "--broker", url) as run,
    ):
        wait_for(lambda: "using the broker at" in run.text, 30, "the run folder")
        accounts = RunFolder.locate(run_dir).accounts()
        broker = MosquittoProcess.start(accounts, base / "mosquitto", port)
        try:
            wait_for(lambda: len(children(run, "pool")) == 2, 60, "two pools")
            accepted_since(run_dir, 0.0, 30, "the first action")
            for outage in range(OUTAGES):
                if outage == 0:
                    broker.stop()
                else:
                    broker.process.kill()
                    broker.process.wait()
                time.sleep(1.0)
                broker = MosquittoProcess.start(accounts, base / "mosquitto", port)
                back = time.time()
                accepted_since(run_dir, back, 60, f"an action after Mosquitto restart #{outage}")
            code = run.wait(timeout=150)
        finally:
            broker.stop()
        return Outages(run_dir, journal, code, run.text)


def test_a_run_goes_on_through_mosquitto_restarts(mosquitto_restarted: Outages) -> None:
    out = mosquitto_restarted.output
    assert mosquitto_restarted.returncode == 0, out[-3000:]
    assert "duration was reached" in out, out[-3000:]
    assert pools_never_quit(out)


def pools_never_quit(output: str) -> bool:
    """No pool exited before the end: the engine, back on the broker, did not tell them the run
    had stopped (it once did after every lost connection)."""
    logged = [line for line in output.splitlines() if " run WARNING " in line]
    return not any("pool-" in line and "exited with" in line for line in logged)


def test_a_mosquitto_restart_loses_and_doubles_nothing(mosquitto_restarted: Outages) -> None:
    assert verdict(mosquitto_restarted.run_dir, mosquitto_restarted.journal) == []
