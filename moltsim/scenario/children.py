"""Child processes of a run (engine, pools), restarted with backoff when they crash."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("moltsim.run")

BAD_INPUT = 2
"""The exit status of ``moltsim`` for an input it cannot use (a broken manifest, key file or
run file, a full disk): starting it again cannot help, so the run stops instead."""
LOW_DISK_BYTES = 1 << 20
"""A child that crashes while the run folder's disk has less room than this is not restarted:
it would only crash again (and the message it tried to write may not have fitted)."""


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
    failure: str = ""
    """Why it exited with :data:`BAD_INPUT` (the last line it wrote); it is not restarted."""

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
        if self.failure:
            return None
        if code == BAD_INPUT or (code != 0 and self._disk_full()):
            self.failure = self._last_line() or f"exit status {code}"
            if self._disk_full():
                self.failure = (
                    f"no space left on the disk of {self.log_path.parent} ({self.failure})"
                )
            return f"{self.name} cannot go on: {self.failure}"
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

    def _disk_full(self) -> bool:
        try:
            return shutil.disk_usage(self.log_path.parent).free < LOW_DISK_BYTES
        except OSError:
            return False

    def _last_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting; :meth:`stop` then waits."""
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

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
