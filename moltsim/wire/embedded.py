"""The embedded broker: amqtt in its own process on a free loopback port.

It enforces the same accounts and topic rules as the generated Mosquitto configuration
(``accounts.py``). amqtt speaks MQTT 3.1.1 only; so does everything in moltsim.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from moltsim.wire.accounts import Accounts
from moltsim.wire.brokerprocess import BrokerProcess

PASSWORD_FILE = "amqtt-passwd"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def amqtt_config(
    accounts: Accounts, folder: Path, port: int, host: str = "127.0.0.1"
) -> dict[str, Any]:
    """An amqtt ``BrokerConfig`` dict: password file auth, per-account publish/subscribe ACLs."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(),))
    path = folder / PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        for user, password in accounts.passwords.items():
            out.write(f"{user}:{hasher.hash(password)}\n")
    rules = accounts.rules()
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(path)},
            "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
                "publish_acl": {user: list(r.publish) for user, r in rules.items()},
                "acl": {user: list(r.subscribe) for user, r in rules.items()},
            },
            # amqtt delivers wills without the ACL above: a will must pass it at CONNECT.
            "moltsim.wire.willacl.WillAclPlugin": {
                "publish_acl": {user: list(r.publish) for user, r in rules.items()},
            },
        },
    }


async def _serve(config: dict[str, Any]) -> None:
    import warnings

    from amqtt.broker import Broker

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """``python -m moltsim.wire.embedded FOLDER PORT``: serve the accounts in FOLDER."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s broker %(message)s")
    accounts = Accounts.load(args.folder)
    config = amqtt_config(accounts, args.folder, args.port, args.host)
    asyncio.run(_serve(config))
    return 0


class EmbeddedBroker(BrokerProcess):
    """A running embedded broker process."""

    name = "the embedded broker"

    @classmethod
    def start(
        cls, folder: Path, port: int | None = None, host: str = "127.0.0.1", timeout: float = 20.0
    ) -> EmbeddedBroker:
        """Start a broker for the accounts saved in ``folder``; returns once it accepts."""
        broker = cls.begin(folder, port, host)
        broker.wait_ready(timeout)
        return broker

    @classmethod
    def begin(
        cls, folder: Path, port: int | None = None, host: str = "127.0.0.1"
    ) -> EmbeddedBroker:
        """Start a broker and return at once: others can start while it loads (it takes a
        second), then :meth:`wait_ready`."""
        port = port or free_port(host)
        args = [sys.executable, "-m", "moltsim.wire.embedded", str(folder), str(port),
                "--host", host]  # fmt: skip
        return cls.spawn(args, folder / "broker.log", host, port)


if __name__ == "__main__":
    sys.exit(main())
