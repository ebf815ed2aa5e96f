"""The embedded broker: amqtt in its own process on a free loopback port.

It enforces the same accounts and topic rules as the generated Mosquitto configuration
(``accounts.py``). amqtt speaks MQTT 3.1.1 only; so does everything in moltsim.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltsim.wire.accounts import Accounts
from moltsim.wire.connection import mqtt_url

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


@dataclass
class EmbeddedBroker:
    """A running embedded broker process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def url(self) -> str:
        return mqtt_url(self.host, self.port)

    @classmethod
    def start(
        cls, folder: Path, port: int | None = None, host: str = "127.0.0.1", timeout: float = 20.0
    ) -> EmbeddedBroker:
        """Start a broker for the accounts saved in ``folder``; returns once it accepts."""
        port = port or free_port(host)
        log = open(folder / "broker.log", "ab")  # noqa: SIM115 - handed to the child process
        process = subprocess.Popen(
            [sys.executable, "-m", "moltsim.wire.embedded", str(folder), str(port), "--host", host],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        broker = cls(process, host, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = (folder / "broker.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the embedded broker exited ({process.returncode}):\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                return broker
            time.sleep(0.05)
        broker.stop()
        raise TimeoutError(f"the embedded broker did not listen on {host}:{port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    sys.exit(main())
