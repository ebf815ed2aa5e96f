"""``moltsim watch --events mqtt://host:port``: follow the run's ``events`` topic with the
observer account (which may subscribe to ``events`` and ``tick`` and publish nothing), so the
watcher reads the run file as soon as something was committed instead of at its next poll.

The events only say *that* something changed; what the screens show still comes from the
read-only run file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from moltsim.runfolder import RunFolder
from moltsim.wire.accounts import OBSERVER, Accounts
from moltsim.wire.connection import BrokerAddress, mqtt_client

RECONNECT_S = 2.0


def observer_accounts(run: str | Path) -> Accounts:
    """The run's broker accounts (``broker/accounts.json`` of its folder); raises
    :class:`~moltsim.store.runfile.RunFileError` when the folder has none."""
    return RunFolder.locate(run).accounts()


async def follow_events(
    address: BrokerAddress,
    accounts: Accounts,
    changed: Callable[[], None],
    connected: Callable[[bool], None] = lambda up: None,
) -> None:
    """Call ``changed()`` for each message on the run's ``events`` topic, until cancelled;
    reconnects after losing the broker. ``connected(up)`` reports the connection's state."""
    topic = accounts.topics.events
    while True:
        try:
            async with mqtt_client(address, OBSERVER, accounts.passwords[OBSERVER]) as client:
                await client.subscribe(topic, qos=0)
                connected(True)
                async for _ in client.messages:
                    changed()
        except aiomqtt.MqttError:
            connected(False)
            await asyncio.sleep(RECONNECT_S)
