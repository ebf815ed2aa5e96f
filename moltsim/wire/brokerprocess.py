"""A broker running as a child process: launch, wait until it listens, stop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from moltsim.wire.connection import mqtt_url


class BrokerProcess:
    """A broker child process listening on ``host:port``; its output goes to ``log``."""

    name = "the broker"

    def __init__(
        self, process: subprocess.Popen[bytes], host: str, port: int, log: Path | None = None
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return mqtt_url(self.host, self.port)

    @classmethod
    def launch(cls, args: list[str], log: Path, host: str, port: int, timeout: float) -> Self:
        """Start ``args`` and return once the broker accepts connections on ``host:port``."""
        broker = cls.spawn(args, log, host, port)
        broker.wait_ready(timeout)
        return broker

    @classmethod
    def spawn(cls, args: list[str], log: Path, host: str, port: int) -> Self:
        """Start ``args`` and return at once (see :meth:`wait_ready`)."""
        with open(log, "ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        return cls(process, host, port, log)

    def wait_ready(self, timeout: float) -> None:
        """Return once the broker accepts connections; stop it and raise if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log else ""
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not listen on {self.host}:{self.port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
