"""``--events``: with the observer account on the run's broker, the watcher reads the run file
as soon as the engine announces a commit, not at its next poll."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from moltsim.runfolder import RunFolder
from moltsim.tui.app import WatchApp
from moltsim.tui.screens.feed import FeedScreen
from moltsim.wire.accounts import ENGINE
from moltsim.wire.connection import BrokerAddress, mqtt_client
from moltsim.wire.embedded import EmbeddedBroker
from tests.tui.conftest import SIZE, settle
from tests.tui.runs import build_fixture_run
from tests.tui.test_live import Writer, banner, wait_for


@pytest.mark.slow
async def test_an_event_makes_the_watcher_read_at_once(tmp_path: Path) -> None:
    folder = await RunFolder.create(tmp_path / "run")
    await build_fixture_run(folder.path)
    accounts = folder.accounts()
    broker = await asyncio.to_thread(EmbeddedBroker.start, folder.broker)
    try:
        address = BrokerAddress(broker.host, broker.port)
        app = WatchApp(folder.path, poll_s=60.0, events=address)  # no second poll in the test
        try:
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot, app)
                await wait_for(pilot, lambda: app._broker_up is True, within=10.0)
                assert isinstance(app.screen, FeedScreen) and app.polls == 1
                writer = Writer(folder.path, "--posts", "1", "--interval", "0")
                try:
                    await writer.finish()
                finally:
                    writer.kill()
                await pilot.pause(0.3)
                assert banner(app) == "" and app.polls == 1  # nothing read yet
                event = [{"type": "post", "agent": "alice", "post_id": 13}]
                async with mqtt_client(address, ENGINE, accounts.passwords[ENGINE]) as engine:
                    await engine.publish(accounts.topics.events, json.dumps(event), qos=1)
                await wait_for(pilot, lambda: "1 new post" in banner(app), within=2.0)
                assert app.events_seen == 1
        finally:
            app.close()
    finally:
        await asyncio.to_thread(broker.stop)


def test_events_need_the_run_folders_broker_accounts(fixture_run: Path) -> None:
    from moltsim.store.runfile import RunFileError

    with pytest.raises(RunFileError, match="has no broker accounts"):
        WatchApp(fixture_run, events=BrokerAddress("127.0.0.1", 1883))
