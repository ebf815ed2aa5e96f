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

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int) -> None:
        self.process = process
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return mqtt_url(self.host, self.port)

    @classmethod
    def launch(cls, args: list[str], log: Path, host: str, port: int, timeout: float) -> Self:
        """Start ``args`` and return once the broker accepts connections on ``host:port``."""
        with open(log, "ab") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        broker = cls(process, host, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{cls.name} exited ({process.returncode}):\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                return broker
            time.sleep(0.05)
        broker.stop()
        raise TimeoutError(f"{cls.name} did not listen on {host}:{port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
