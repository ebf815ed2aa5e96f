"""Configuration files for an external Mosquitto broker: config, password file, ACL file."""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import shutil
from pathlib import Path

from moltsim.wire.accounts import Accounts
from moltsim.wire.brokerprocess import BrokerProcess

PBKDF2_ITERATIONS = 101
"""What ``mosquitto_passwd`` uses for its ``$7$`` (PBKDF2-SHA512) hashes."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash: ``$7$ITERATIONS$SALT$HASH`` (PBKDF2-SHA512)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(digest).decode()}"
    )


def password_file(accounts: Accounts) -> str:
    return "".join(f"{user}:{password_hash(pw)}\n" for user, pw in accounts.passwords.items())


def acl_file(accounts: Accounts) -> str:
    lines = [f"# moltsim run {accounts.sim}: generated, do not edit by hand", ""]
    for user, rules in accounts.rules().items():
        lines.append(f"user {user}")
        both = set(rules.publish) & set(rules.subscribe)
        for topic in rules.publish:
            lines.append(f"topic {'readwrite' if topic in both else 'write'} {topic}")
        for topic in rules.subscribe:
            if topic not in both:
                lines.append(f"topic read {topic}")
        lines.append("")
    return "\n".join(lines)


def config_file(folder: Path, port: int, host: str = "127.0.0.1") -> str:
    return "\n".join(
        [
            "# moltsim: Mosquitto configuration for one run (generated)",
            "per_listener_settings false",
            # The password and ACL files are readable by their owner only; keep Mosquitto from
            # switching to its own 'mosquitto' user when started as root.
            f"user {getpass.getuser()}",
            f"listener {port} {host}",
            "allow_anonymous false",
            f"password_file {folder / 'passwd'}",
            f"acl_file {folder / 'acl'}",
            # The default queue of 1000 messages per client silently drops QoS 1 messages when a
            # fast publisher outruns a subscriber: no count limit, a byte limit instead.
            "max_queued_messages 0",
            "max_queued_bytes 268435456",
            "max_inflight_messages 0",
            "max_packet_size 16777216",
            # Small QoS 1 acknowledgements otherwise wait on Nagle's algorithm (+40 ms each).
            "set_tcp_nodelay true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]
    )


def write_mosquitto_files(accounts: Accounts, folder: Path, port: int) -> Path:
    """Write ``mosquitto.conf``, ``passwd`` and ``acl`` into ``folder``; returns the config."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in (("passwd", password_file(accounts)), ("acl", acl_file(accounts))):
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    config = folder / "mosquitto.conf"
    config.write_text(config_file(folder.resolve(), port))
    return config


class MosquittoProcess(BrokerProcess):
    """A Mosquitto broker started from generated files (for tests, benchmarks and the runner)."""

    name = "mosquitto"

    @classmethod
    def start(
        cls, accounts: Accounts, folder: Path, port: int, timeout: float = 10.0
    ) -> MosquittoProcess:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError("mosquitto is not installed (apt-get install -y mosquitto)")
        config = write_mosquitto_files(accounts, folder, port)
        return cls.launch([binary, "-c", str(config)], folder / "mosquitto.log", "127.0.0.1",
                          port, timeout)  # fmt: skip
