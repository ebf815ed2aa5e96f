"""Connecting to a broker: ``mqtt://host:port`` addresses and client settings used everywhere."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt

DEFAULT_PORT = 1883


class BrokerAddressError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://host[:port]``; TLS (``mqtts://``) and websockets are not supported yet."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme != "mqtt":
            raise BrokerAddressError(f"{url!r}: only mqtt://host:port brokers are supported")
        if not parts.hostname:
            raise BrokerAddressError(f"{url!r} names no host")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise BrokerAddressError(f"{url!r}: bad port") from exc
        return cls(parts.hostname, port)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def mqtt_client(
    address: BrokerAddress,
    username: str,
    password: str,
    *,
    identifier: str | None = None,
    clean_session: bool = True,
    timeout: float = 10.0,
) -> aiomqtt.Client:
    """An MQTT 3.1.1 client (the embedded broker speaks nothing newer)."""
    client = aiomqtt.Client(
        address.host,
        address.port,
        username=username,
        password=password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=clean_session,
        timeout=timeout,
        keepalive=30,
        max_queued_incoming_messages=0,
        # Without it every QoS 1 acknowledgement waits ~40 ms on Nagle's algorithm.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    # aiomqtt warns on every publish beyond this many pending calls; we pipeline on purpose.
    client.pending_calls_threshold = 100_000
    return client
