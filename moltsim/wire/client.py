"""The agent-side client: signed requests over one broker connection per pool.

A :class:`PoolClient` owns the MQTT connection and hosts any number of agents; each
:class:`AgentClient` signs with its own key and numbers its own requests. A request that gets
no reply in time is sent again with the *same* seq (the engine answers a duplicate with the
original result, so a retry is never applied twice), also after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import aiomqtt
from pydantic import BaseModel
from pydantic_core import from_json, to_json

from moltsim.domain.envelope import HELLO_SEQ
from moltsim.identity.credentials import Credentials
from moltsim.wire.connection import BrokerAddress, mqtt_client
from moltsim.wire.topics import Topics

log = logging.getLogger("moltsim.client")

ACK_JOURNAL_ENV = "MOLTSIM_ACK_JOURNAL"
"""A folder: when set, each pool appends ``AGENT SEQ`` to ``FOLDER/<pool>.acks`` for every
request the engine answered ok, so an audit (the fault tests) can prove that everything a pool
was told was done is in the run file exactly once."""


class RequestTimeout(TimeoutError):
    """No reply after every retry; the engine or the broker is unreachable."""


@dataclass(frozen=True, slots=True)
class Result:
    """The engine's answer: ``ok`` with data, or a refusal code and message."""

    ok: bool
    seq: int
    data: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    message: str = ""
    retry_after: float | None = None
    duplicate: bool = False
    """The engine had already processed this seq and sent its original result again."""

    @classmethod
    def from_reply(cls, body: dict[str, Any]) -> Result:
        body = dict(body)
        for key in ("v", "agent"):
            body.pop(key, None)
        seq = int(body.pop("seq", -1) or -1)
        ok = bool(body.pop("ok", False))
        duplicate = bool(body.pop("duplicate", False))
        if ok:
            return cls(True, seq, body, duplicate=duplicate)
        return cls(
            False,
            seq,
            code=body.get("code"),
            message=body.get("message", ""),
            retry_after=body.get("retry_after"),
            duplicate=duplicate,
        )


class AgentClient:
    """Acts for one agent. Get one from :meth:`PoolClient.add`."""

    def __init__(self, pool: PoolClient, credentials: Credentials) -> None:
        self.pool = pool
        self.credentials = credentials
        self.handle = credentials.handle
        self.seq = 0
        self._lock = asyncio.Lock()

    async def act(self, action: BaseModel | dict[str, Any]) -> Result:
        """Send one action (a write or a query) and wait for its committed result."""
        body = action.model_dump(mode="json") if isinstance(action, BaseModel) else action
        async with self._lock:
            self.seq += 1
            seq = self.seq
        envelope = self.credentials.signer.envelope_bytes(self.handle, seq, body)
        return await self.pool.request(self.handle, seq, envelope)

    async def hello(self) -> int:
        """Learn the last seq the engine saw from this agent, and continue after it."""
        envelope = self.credentials.signer.envelope(self.handle, HELLO_SEQ, {"type": "hello"})
        result = await self.pool.request(self.handle, HELLO_SEQ, to_json(envelope))
        if not result.ok:
            raise RuntimeError(f"@{self.handle}: hello refused: {result.code}: {result.message}")
        async with self._lock:
            self.seq = max(self.seq, int(result.data["last_seq"]))
        return self.seq

    # --- conveniences -----------------------------------------------------------------------

    async def post(
        self, submolt: str, title: str, body: str = "", url: str | None = None
    ) -> Result:
        action: dict[str, Any] = {"type": "post", "submolt": submolt, "title": title, "body": body}
        if url is not None:
            action["url"] = url
        return await self.act(action)

    async def comment(
        self, body: str, *, post_id: int | None = None, parent_id: int | None = None
    ) -> Result:
        action: dict[str, Any] = {"type": "comment", "body": body}
        if post_id is not None:
            action["post_id"] = post_id
        if parent_id is not None:
            action["parent_id"] = parent_id
        return await self.act(action)

    async def vote(self, target: str, target_id: int, value: int) -> Result:
        return await self.act({"type": "vote", "target": target, "id": target_id, "value": value})

    async def create_submolt(self, name: str, title: str = "", description: str = "") -> Result:
        return await self.act(
            {"type": "create_submolt", "name": name, "title": title, "description": description}
        )

    async def subscribe(self, submolt: str) -> Result:
        return await self.act({"type": "subscribe", "submolt": submolt})

    async def follow(self, handle: str) -> Result:
        return await self.act({"type": "follow", "agent": handle})

    async def dm(self, to: str, body: str) -> Result:
        return await self.act({"type": "dm", "to": to, "body": body})

    async def feed(self, **query: Any) -> Result:
        return await self.act({"type": "feed", **query})

    async def thread(self, post_id: int, **query: Any) -> Result:
        return await self.act({"type": "thread", "post_id": post_id, **query})

    async def search(self, q: str, **query: Any) -> Result:
        return await self.act({"type": "search", "q": q, **query})

    async def notifications(self, since_id: int = 0, limit: int = 50) -> Result:
        return await self.act({"type": "notifications", "since_id": since_id, "limit": limit})

    async def profile(self, handle: str | None = None) -> Result:
        action: dict[str, Any] = {"type": "profile"}
        if handle is not None:
            action["agent"] = handle
        return await self.act(action)


class PoolClient:
    """One broker connection for many agents; reconnects and resends by itself."""

    def __init__(
        self,
        address: BrokerAddress,
        account: str,
        password: str,
        topics: Topics,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        identifier: str | None = None,
        batch: bool = False,
        connect_timeout: float | None = None,
    ) -> None:
        """With ``batch``, envelopes that are ready together go out as one message on the
        pool's ``act-batch`` topic, and replies come back batched too: far fewer MQTT messages
        when a pool hosts many busy agents. ``connect_timeout`` bounds the wait for the first
        connection (default: ``timeout``); a pool that starts while its broker restarts
        should wait it out rather than exit."""
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.address = address
        self.account = account
        self.password = password
        self.topics = topics
        self.timeout = timeout
        self.retries = retries
        self.identifier = identifier
        self.agents: dict[str, AgentClient] = {}
        self.connected = asyncio.Event()
        self._mqtt: aiomqtt.Client | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[dict[str, Any]]] = {}
        self._unsent: dict[tuple[str, int], bytes] = {}
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.reconnects = 0
        self.batch = batch
        self.sim_time: float | None = None
        """Sim time of the latest ``tick``; see :meth:`sim_now`."""
        self.speed = 1.0
        self.run_state = "unknown"
        self.mode = "realtime"
        self.tick_number = -1
        self.tick_received = asyncio.Event()
        self.tick_changed = asyncio.Event()
        """Set whenever a stepped tick with a new number arrives."""
        self.engine_epoch = ""
        self.engine_restarts = 0
        self._resends: set[asyncio.Task[None]] = set()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._tick_at = 0.0
        self._outbox: list[bytes] = []
        self._outbox_ready = asyncio.Event()
        self._acks: TextIO | None = None
        self._resend_on_tick = False
        """Set by a reconnect: what went out before the engine was back on a restarted broker
        was dropped, so the first tick (the engine is subscribed again) triggers a resend."""

    def add(self, credentials: Credentials) -> AgentClient:
        agent = AgentClient(self, credentials)
        self.agents[agent.handle] = agent
        return agent

    async def __aenter__(self) -> PoolClient:
        self._acks = self._open_ack_journal()
        self._runner = asyncio.create_task(self._run(), name=f"moltsim-pool-{self.account}")
        try:
            await asyncio.wait_for(self.connected.wait(), self.connect_timeout)
        except TimeoutError as exc:
            await self.close()
            raise RequestTimeout(f"could not connect to {self.address.url}") from exc
        # A tick says the engine is subscribed: a hello sent before that (a pool started with
        # its engine, on a fresh broker) would go nowhere and wait out a whole timeout.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tick_received.wait(), self.timeout)
        await asyncio.gather(*(agent.hello() for agent in self.agents.values()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_ack_journal(self) -> TextIO | None:
        journal = os.environ.get(ACK_JOURNAL_ENV)
        if not journal:
            return None
        Path(journal).mkdir(parents=True, exist_ok=True)
        # Line-buffered: a pool killed with SIGKILL has written every ack it acted on.
        return open(Path(journal) / f"{self.account}.acks", "a", buffering=1)

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        if self._acks is not None:
            self._acks.close()
            self._acks = None

    async def request(self, agent: str, seq: int, payload: bytes) -> Result:
        """Publish an envelope and wait for its reply, resending it on silence."""
        key = (agent, seq)
        loop = asyncio.get_running_loop()
        self._unsent[key] = payload
        try:
            for attempt in range(self.retries + 1):
                future: asyncio.Future[dict[str, Any]] = loop.create_future()
                self._waiting[key] = future  # a late reply to any attempt resolves it
                await self._send(agent, key, payload)
                try:
                    async with asyncio.timeout(self.timeout):
                        body = await future
                    result = Result.from_reply(body)
                    if result.ok and self._acks is not None and seq != HELLO_SEQ:
                        self._acks.write(f"{agent} {seq}\n")
                    return result
                except TimeoutError:
                    log.info(
                        "@%s seq %d: no reply (attempt %d); resending", agent, seq, attempt + 1
                    )
            raise RequestTimeout(f"@{agent} seq {seq}: no reply after {self.retries + 1} tries")
        finally:
            self._waiting.pop(key, None)
            self._unsent.pop(key, None)

    async def _send(self, agent: str, key: tuple[str, int], payload: bytes) -> None:
        if self.batch:
            self._outbox.append(payload)
            self._flushed.clear()
            self._outbox_ready.set()
            return
        while True:
            mqtt = self._mqtt
            if mqtt is not None and self.connected.is_set():
                try:
                    await mqtt.publish(self.topics.act(agent), payload, qos=1)
                    return
                except aiomqtt.MqttError:
                    pass  # the connection dropped; the runner reconnects and resends
            try:
                await asyncio.wait_for(self.connected.wait(), self.timeout)
            except TimeoutError:
                return  # counted as a silent attempt by the caller

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            try:
                async with mqtt_client(
                    self.address, self.account, self.password, identifier=self.identifier
                ) as mqtt:
                    # One SUBSCRIBE for everything; a batching pool gets all its replies on
                    # its batch topic, so it needs no per-agent subscription.
                    topics: list[tuple[str, int]] = [(self.topics.tick, 0)]
                    if self.batch:
                        topics.append((self.topics.reply_batch(self.account), 1))
                    else:
                        topics += [(self.topics.reply(handle), 1) for handle in self.agents]
                    await mqtt.subscribe(topics)
                    self._mqtt = mqtt
                    self.connected.set()
                    self._resend_on_tick = self.reconnects > 0
                    backoff = 0.1
                    flusher = asyncio.create_task(self._flush_batches(mqtt)) if self.batch else None
                    try:
                        if self.batch:
                            self._outbox[:0] = list(self._unsent.values())
                            self._outbox_ready.set()
                        else:
                            for (agent, _seq), payload in list(self._unsent.items()):
                                await mqtt.publish(self.topics.act(agent), payload, qos=1)
                        async for message in mqtt.messages:
                            if message.topic.value == self.topics.tick:
                                self._tick(message.payload)
                            else:
                                self._deliver(message.payload)
                    finally:
                        if flusher is not None:
                            flusher.cancel()
            except aiomqtt.MqttError as exc:
                if self._closing:
                    return
                self.connected.clear()
                self._mqtt = None
                self.reconnects += 1
                log.warning("pool %s lost the broker (%s); reconnecting", self.account, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _flush_batches(self, mqtt: aiomqtt.Client, most: int = 500) -> None:
        """Publish whatever envelopes are waiting as one ``act-batch`` message at a time."""
        topic = self.topics.act_batch(self.account)
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                group, self._outbox = self._outbox[:most], self._outbox[most:]
                try:
                    await mqtt.publish(topic, b"[" + b",".join(group) + b"]", qos=1)
                except aiomqtt.MqttError:
                    self._outbox[:0] = group
                    return
            self._flushed.set()

    def _resend_unanswered(self) -> None:
        if self.batch:
            self._outbox.extend(self._unsent.values())
            self._flushed.clear()
            self._outbox_ready.set()
            return
        mqtt = self._mqtt
        if mqtt is not None:
            for (agent, _seq), payload in list(self._unsent.items()):
                task = asyncio.create_task(mqtt.publish(self.topics.act(agent), payload, qos=1))
                self._resends.add(task)
                task.add_done_callback(self._resends.discard)

    async def finish_step(self, tick: int, sent: int) -> None:
        """Tell the engine this pool is done with stepped ``tick`` after ``sent`` writes."""
        if self.batch:
            await self._flushed.wait()
        payload = to_json({"tick": tick, "sent": sent})
        while True:
            mqtt = self._mqtt
            if mqtt is not None and self.connected.is_set():
                with contextlib.suppress(aiomqtt.MqttError):
                    await mqtt.publish(self.topics.step(self.account), payload, qos=1)
                    return
            await self.connected.wait()

    def sim_now(self) -> float | None:
        """The engine's sim time now, from the latest tick and the clock's speed."""
        if self.sim_time is None:
            return None
        if self.run_state != "running":
            return self.sim_time
        return self.sim_time + self.speed * (time.monotonic() - self._tick_at)

    def _tick(self, payload: Any) -> None:
        try:
            tick = from_json(payload)
            self.sim_time = float(tick["sim_time"])
            self.speed = float(tick.get("speed", 1.0))
            self.run_state = str(tick.get("state", "running"))
            self.mode = str(tick.get("mode", "realtime"))
            number = int(tick.get("tick", -1))
            epoch = str(tick.get("epoch", ""))
        except (ValueError, KeyError, TypeError):
            return
        if epoch != self.engine_epoch:
            if self.engine_epoch:
                # The engine restarted: what it had not answered may be lost; send it again
                # now rather than after the timeout, and repeat our part of the current tick.
                self.engine_restarts += 1
                self._resend_unanswered()
            self.engine_epoch = epoch
        elif self._resend_on_tick:
            self._resend_unanswered()
        self._resend_on_tick = False
        if number != self.tick_number or self.run_state != "running" or self.engine_restarts:
            self.tick_number = number
            self.tick_changed.set()
        self._tick_at = time.monotonic()
        self.tick_received.set()

    def _deliver(self, payload: Any) -> None:
        try:
            body = from_json(payload)
        except ValueError:
            log.warning("pool %s: unreadable reply dropped", self.account)
            return
        bodies = body if isinstance(body, list) else [body]
        for item in bodies:
            if not isinstance(item, dict):
                continue
            seq = item.get("seq")
            if not isinstance(seq, int):
                continue  # a refusal of an envelope nobody here is waiting for
            future = self._waiting.get((str(item.get("agent")), seq))
            if future is not None and not future.done():
                future.set_result(item)
