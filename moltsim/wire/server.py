"""The engine server: envelopes in from ``act/+`` and ``act-batch/+``, replies out after commit.

Messages are taken from the broker in groups (whatever arrived since the last group), checked
and applied in arrival order, committed together, then answered. Two groups may be in flight:
while one commits, the next is checked and applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections import defaultdict
from typing import Any

import aiomqtt
from pydantic_core import to_json

from moltsim.domain.actions import QUERY_TYPES, CreatePost
from moltsim.engine.clock import SteppedClock
from moltsim.engine.service import MetricSample
from moltsim.wire.accounts import ENGINE, Accounts
from moltsim.wire.connection import BrokerAddress, mqtt_client
from moltsim.wire.gateway import Gateway, Inbound

log = logging.getLogger("moltsim.engine")

MAX_GROUP = 4_000
"""Most envelopes taken into one group."""
IN_FLIGHT = 2
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""A pool batch larger than this is refused whole (``too_large``)."""


class EngineServer:
    def __init__(
        self,
        gateway: Gateway,
        address: BrokerAddress,
        accounts: Accounts,
        *,
        tick_interval: float = 1.0,
        speed: float = 1.0,
        stepped: SteppedClock | None = None,
        until: float | None = None,
        step_timeout: float = 60.0,
    ) -> None:
        """With ``stepped``, writes are held until every pool has finished the tick, then
        applied in (agent, seq) order; ``until`` ends a stepped run at that sim time."""
        self.gateway = gateway
        self.address = address
        self.accounts = accounts
        self.topics = accounts.topics
        self.tick_interval = tick_interval
        self.speed = speed
        self.state = "running"
        self.processed = 0
        self.stepped = stepped
        self.epoch = secrets.token_hex(4)
        """Changes whenever the engine restarts, so pools know to resend unanswered writes."""
        self.until = until
        self.step_timeout = step_timeout
        self._held: list[Inbound] = []
        self._held_keys: set[tuple[Any, ...]] = set()
        self._received: dict[str, int] = {}
        self._done: dict[str, tuple[int, int]] = {}
        self._step_news = asyncio.Event()
        self.failure: BaseException | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._inbox: list[Inbound] = []
        self._arrived = asyncio.Event()
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, reconnecting to the broker as needed; then drain."""
        backoff = 0.05  # short at first: at a run's start the broker is often still loading
        while not stop.is_set():
            try:
                async with mqtt_client(
                    self.address,
                    ENGINE,
                    self.accounts.passwords[ENGINE],
                    identifier=f"moltsim-{self.topics.sim}-engine",
                    clean_session=False,  # messages wait for the engine across its restarts
                ) as mqtt:
                    backoff = 0.05
                    await mqtt.subscribe(self.topics.act_any, qos=1)
                    await mqtt.subscribe(self.topics.act_batch_any, qos=1)
                    await mqtt.subscribe(self.topics.control, qos=1)
                    if self.stepped is not None:
                        await mqtt.subscribe(self.topics.step_any, qos=1)
                    self.connected.set()
                    log.info("engine connected to %s", self.address.url)
                    await self._serve(mqtt, stop)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("broker connection lost (%s); retrying in %.1f s", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 1.5, 5.0)
        self.connected.clear()

    async def _serve(self, mqtt: aiomqtt.Client, stop: asyncio.Event) -> None:
        reader = asyncio.create_task(self._read(mqtt))
        ticker = asyncio.create_task(
            self._tick(mqtt) if self.stepped is None else self._step_loop(mqtt)
        )
        in_flight: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                arrived = asyncio.create_task(self._arrived.wait())
                await asyncio.wait({arrived, stopping, reader}, return_when=asyncio.FIRST_COMPLETED)
                arrived.cancel()
                if reader.done() and not self._inbox:
                    reader.result()  # the connection failed: raise it
                if stop.is_set():
                    break
                await self._dispatch(mqtt, in_flight)
        finally:
            reader.cancel()
            ticker.cancel()
            stopping.cancel()
            # Messages already taken from the broker were acknowledged to it: finish them.
            while self._inbox:
                await self._dispatch(mqtt, in_flight)
            in_flight = {t for t in in_flight if not t.done()}
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            if stop.is_set():
                # Only a real stop: after a lost connection the engine reconnects and goes on,
                # and a lasting "stopped" would make every pool quit.
                self.state = "stopped"
                with contextlib.suppress(aiomqtt.MqttError):
                    await self._publish_tick(mqtt)

    async def _dispatch(self, mqtt: aiomqtt.Client, in_flight: set[asyncio.Task[None]]) -> None:
        self._arrived.clear()
        if not self._inbox:
            return
        group, self._inbox = self._inbox[:MAX_GROUP], self._inbox[MAX_GROUP:]
        if self._inbox:
            self._arrived.set()
        while len(in_flight) >= IN_FLIGHT:
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.difference_update(done)
        if self.failure is not None:
            raise self.failure
        task = asyncio.create_task(self._process(mqtt, group))
        in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            # EngineFailed (a failed commit) must stop the server: the supervisor restarts it.
            log.error("processing a group failed: %r", exc, exc_info=exc)
            self.failure = exc

    async def _read(self, mqtt: aiomqtt.Client) -> None:
        act_prefix = f"{self.topics.base}/act/"
        batch_prefix = f"{self.topics.base}/act-batch/"
        step_prefix = f"{self.topics.base}/step/"
        async for message in mqtt.messages:
            topic = message.topic.value
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload).encode()
            if topic == self.topics.control:
                task = asyncio.create_task(self._control(mqtt, raw))
                self._commands.add(task)
                task.add_done_callback(self._commands.discard)
                continue
            if topic.startswith(step_prefix):
                self._step_done(topic[len(step_prefix) :], raw)
                continue
            if topic.startswith(act_prefix):
                items = [Inbound(raw, topic_agent=topic[len(act_prefix) :])]
            elif topic.startswith(batch_prefix):
                items = self._unbatch(raw, topic[len(batch_prefix) :])
            else:
                continue
            if self.stepped is None:
                self._inbox.extend(items)
            else:
                self._hold_writes(items)
            self._arrived.set()

    @staticmethod
    def _unbatch(raw: bytes, pool: str) -> list[Inbound]:
        """A pool batch is a JSON array of envelopes; each is checked on its own."""
        if len(raw) > MAX_BATCH_BYTES:
            return [Inbound(raw, pool=pool)]  # refused whole as too large
        try:
            items = json.loads(raw)
        except (ValueError, RecursionError):
            return [Inbound(raw, pool=pool)]  # refused whole as malformed
        if not isinstance(items, list):
            return [Inbound(raw, pool=pool)]
        return [Inbound(b"", pool=pool, parsed=item) for item in items]

    async def _process(self, mqtt: aiomqtt.Client, group: list[Inbound]) -> None:
        replies = await self.gateway.handle(group)
        self.processed += len(group)
        batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        sends = []
        events = []
        for inbound, reply in zip(group, replies, strict=True):
            if reply.event is not None:
                events.append(reply.event)
            if inbound.pool is not None:
                batches[inbound.pool].append(reply.body)
            elif reply.agent is not None and inbound.topic_agent == reply.agent:
                sends.append(mqtt.publish(self.topics.reply(reply.agent), reply.payload(), qos=1))
            elif inbound.topic_agent is not None:
                # A refused envelope on someone's topic: tell that topic's agent, nobody else.
                sends.append(
                    mqtt.publish(self.topics.reply(inbound.topic_agent), reply.payload(), qos=1)
                )
        for pool, bodies in batches.items():
            sends.append(mqtt.publish(self.topics.reply_batch(pool), to_json(bodies), qos=1))
        if events:
            sends.append(mqtt.publish(self.topics.events, to_json(events), qos=0))
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("a reply could not be published: %s", result)

    # --- stepped time -------------------------------------------------------------------------

    def _hold_writes(self, items: list[Inbound]) -> None:
        """Queries are answered at once (from the state at the start of the tick); writes wait
        for the end of the tick."""
        agents = self.gateway.engine.forum.state
        for item in items:
            body = item.parsed if item.parsed is not None else _loads(item.raw)
            fields = body if isinstance(body, dict) else {}
            action, agent, seq = fields.get("action"), fields.get("agent"), fields.get("seq")
            kind = action.get("type") if isinstance(action, dict) else None
            if (
                not isinstance(kind, str) or kind in QUERY_TYPES or kind == "hello"
                or not isinstance(agent, str) or not isinstance(seq, int)
            ):  # fmt: skip
                # Queries, and what cannot be a write (the gateway refuses it): answered at once.
                self._inbox.append(item)
                continue
            item.parsed = body
            pool = item.pool
            if pool is None and item.topic_agent is not None:
                agent_id = agents.handles.get(item.topic_agent.lower())
                pool = agents.agents[agent_id].pool if agent_id is not None else None
            # A resend is the same envelope from the same pool: another pool's envelope that
            # names the same agent and seq must not make the real one look like a resend.
            sig = fields.get("sig")
            key = (pool, agent, seq, sig if isinstance(sig, str) else None)
            if key in self._held_keys:
                continue  # a resend of a write already waiting for the end of the tick
            self._held_keys.add(key)
            self._held.append(item)
            if pool is not None:
                self._received[pool] = self._received.get(pool, 0) + 1
                self._step_news.set()

    def _step_done(self, pool: str, raw: bytes) -> None:
        body = _loads(raw)
        fields = body if isinstance(body, dict) else {}
        tick, sent = fields.get("tick"), fields.get("sent", 0)
        if not isinstance(tick, int) or not isinstance(sent, int):
            log.warning("pool %s sent an unreadable step report; ignored", pool)
            return
        self._done[pool] = (tick, sent)
        self._step_news.set()

    def _tick_complete(self, tick: int) -> bool:
        state = self.gateway.engine.forum.state
        pools = {agent.pool for agent in state.agents.values() if agent.pool}
        for pool in pools:
            done = self._done.get(pool)
            if done is None or done[0] < tick or self._received.get(pool, 0) < done[1]:
                return False
        return True

    async def _step_loop(self, mqtt: aiomqtt.Client) -> None:
        clock = self.stepped
        assert clock is not None
        while True:
            await self._publish_tick(mqtt)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.step_timeout
            republish = loop.time() + 2.0
            while not self._tick_complete(clock.tick):
                self._step_news.clear()
                if loop.time() >= deadline:
                    log.warning("tick %d: not every pool finished in time; moving on", clock.tick)
                    break
                if loop.time() >= republish:
                    # Ticks are QoS 0: repeat the current one for pools that (re)connected late.
                    await self._publish_tick(mqtt)
                    republish = loop.time() + 2.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._step_news.wait(), 0.5)
            held, self._held = self._held, []
            self._held_keys.clear()
            for pool in self._received:
                self._received[pool] = 0
            held.sort(key=_order)
            if held:
                await self._process(mqtt, held)
            if self.until is not None and clock.now() + clock.tick_s > self.until:
                self.state = "finished"
                await self._publish_tick(mqtt)
                return
            clock.advance()

    async def _control(self, mqtt: aiomqtt.Client, raw: bytes) -> None:
        """Carry out a runner command (scheduled events, late joins); publish the result.
        Any payload may arrive here, JSON or not: each is answered, none stops the engine."""
        command: Any = None
        try:
            command = json.loads(raw)
            result = await run_control(self.gateway, command)
        except Exception as exc:  # a bad command must not stop the engine
            log.warning("control command failed: %r", exc)
            result = {"ok": False, "error": repr(exc)}
        body = {"id": command.get("id") if isinstance(command, dict) else None, **result}
        with contextlib.suppress(aiomqtt.MqttError):
            await mqtt.publish(self.topics.control_result, to_json(body), qos=1)

    async def _tick(self, mqtt: aiomqtt.Client) -> None:
        while True:
            if self.until is not None and self.gateway.now() >= self.until:
                self.state = "finished"  # pools stop; the runner stops everything
            await self._publish_tick(mqtt)
            await asyncio.sleep(self.tick_interval)

    async def _publish_tick(self, mqtt: aiomqtt.Client) -> None:
        payload: dict[str, Any] = {
            "sim_time": self.gateway.now(), "state": self.state, "speed": self.speed,
            "epoch": self.epoch,
        }  # fmt: skip
        if self.stepped is not None:
            payload |= {"mode": "stepped", "tick": self.stepped.tick, "speed": 0.0}
        await mqtt.publish(self.topics.tick, to_json(payload), qos=0)


async def run_control(gateway: Gateway, command: dict[str, Any]) -> dict[str, Any]:
    """One runner command, applied by the engine (the run file's only writer)."""
    engine = gateway.engine
    now = gateway.now()
    kind = command.get("kind")
    handles = engine.forum.state.handles
    if kind == "register":
        agent_id = await engine.register_agent(
            command["handle"],
            bytes.fromhex(command["public_key"]),
            now,
            **command.get("profile", {}),
        )
        return {"ok": True, "agent_id": agent_id}
    if kind == "objection":
        await engine.record_objection(handles[command["agent"].lower()], now)
        return {"ok": True}
    if kind == "create_submolt":
        sub_id = await engine.seed_submolt(
            command["submolt"], now, command.get("title", ""), command.get("description", "")
        )
        return {"ok": True, "submolt_id": sub_id}
    if kind == "metrics":
        await engine.record_metrics([_metric_sample(row) for row in command["samples"]])
        return {"ok": True, "samples": len(command["samples"])}
    if kind == "state":
        await engine.record_state(str(command["state"]), command.get("at"))
        return {"ok": True}
    if kind == "seed_post":
        action = CreatePost(
            submolt=command["submolt"], title=command["title"], body=command.get("body", "")
        )
        outcome = await engine.submit(handles[command["agent"].lower()], action, now, kind="post")
        return outcome.to_json_dict()
    return {"ok": False, "error": f"unknown control command {kind!r}"}


def _metric_sample(row: Any) -> MetricSample:
    """A ``metrics`` row from a command: ``[wall_time, sim_time, process, name, value]``."""
    if not isinstance(row, list | tuple) or len(row) != 5:
        raise ValueError(f"a metric sample is [wall_time, sim_time, process, name, value]: {row!r}")
    wall, sim, process, name, value = row
    numbers = (wall, sim, value)
    if not all(_finite(n) for n in numbers):
        # A NaN would reach a NOT NULL column as NULL and fail the whole commit.
        raise ValueError(f"a metric sample's times and value are finite numbers: {row!r}")
    if not isinstance(process, str) or not isinstance(name, str) or not name:
        raise ValueError(f"a metric sample names its process and metric: {row!r}")
    return (float(wall), float(sim), process, name, float(value))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _order(item: Inbound) -> tuple[str, int]:
    """The fixed order of a tick's writes: by agent handle, then seq."""
    body = item.parsed
    if isinstance(body, dict):
        agent, seq = body.get("agent"), body.get("seq")
        if isinstance(agent, str) and isinstance(seq, int):
            return (agent, seq)
    return ("\uffff", 0)
