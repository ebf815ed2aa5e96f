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
            port = DEFAULT_PORT if parts.port is None else parts.port
        except ValueError as exc:
            raise BrokerAddressError(f"{url!r}: bad port") from exc
        if not 0 < port < 65536:
            raise BrokerAddressError(f"{url!r}: port must be 1-65535")
        return cls(parts.hostname, port)

    @property
    def url(self) -> str:
        return mqtt_url(self.host, self.port)


def mqtt_url(host: str, port: int) -> str:
    """``mqtt://host:port``, with an IPv6 host in brackets."""
    return f"mqtt://[{host}]:{port}" if ":" in host else f"mqtt://{host}:{port}"


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
