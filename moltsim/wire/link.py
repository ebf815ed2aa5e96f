"""A broker connection that comes back by itself, for the runner: it keeps its subscriptions
across broker restarts, and publishing waits for the connection instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

import aiomqtt

from moltsim.wire.connection import BrokerAddress, mqtt_client

log = logging.getLogger("moltsim.link")


class Link:
    """``async with Link(...) as link``: connected once the block starts (or a clear
    :class:`ConnectionError` after ``first_connect_s``); ``on_message`` sees every message."""

    def __init__(
        self,
        address: BrokerAddress,
        username: str,
        password: str,
        *,
        identifier: str,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[aiomqtt.Message], None],
        first_connect_s: float = 300.0,
    ) -> None:
        self.address = address
        self.username = username
        self.password = password
        self.identifier = identifier
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.first_connect_s = first_connect_s
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_error = ""
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Link:
        self._task = asyncio.create_task(self._run(), name="moltsim-link")
        try:
            await asyncio.wait_for(self.connected.wait(), self.first_connect_s)
        except TimeoutError:
            await self.close()
            raise ConnectionError(
                f"could not connect to the broker at {self.address.url} as {self.username!r}"
                f" in {self.first_connect_s:.0f} s: {self.last_error or 'no answer'}"
            ) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish once connected; a publish cut off by a lost connection is sent again."""
        while True:
            await self.connected.wait()
            client = self._client
            if client is None:
                continue
            try:
                await client.publish(topic, payload, qos=qos)
                return
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # the connection dropped: _run is reconnecting

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with mqtt_client(
                    self.address, self.username, self.password, identifier=self.identifier
                ) as client:
                    await client.subscribe(self.subscriptions)
                    self._client = client
                    self.connected.set()
                    if self.reconnects or self.last_error:
                        log.warning("connected to the broker at %s again", self.address.url)
                    backoff = 0.1
                    async for message in client.messages:
                        self.on_message(message)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                if not self.last_error or str(exc) != self.last_error:
                    log.warning("broker at %s: %s; reconnecting", self.address.url, exc)
                self.last_error = str(exc)
                self.reconnects += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
