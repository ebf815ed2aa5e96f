"""Child processes of a run (engine, pools), restarted with backoff when they crash."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("moltsim.run")


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    backoff: float = 0.5
    stopped: bool = field(default=False)
    finished_ok: bool = False
    """A clean exit (code 0) is the end, not a crash: set once the run is finishing."""

    def start(self) -> None:
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moltsim.cli", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def supervise(self) -> str | None:
        """Restart a crashed child (with growing backoff); returns a note when it acted."""
        if self.stopped or self.process is None:
            return None
        code = self.process.poll()
        now = time.monotonic()
        if code is None:
            if now - self.started_at > 30:
                self.backoff = 0.5  # healthy for a while: forget past crashes
            return None
        if code == 0 and self.finished_ok:
            return None
        if self.next_start == 0.0:
            self.next_start = now + self.backoff
            return f"{self.name} exited with {code}; restarting in {self.backoff:.1f} s"
        if now >= self.next_start:
            self.restarts += 1
            self.backoff = min(self.backoff * 2, 30.0)
            self.next_start = 0.0
            self.start()
            return f"{self.name} restarted (restart #{self.restarts})"
        return None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait for a clean exit, SIGKILL if it will not go."""
        self.stopped = True
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()
        return self.process.returncode
