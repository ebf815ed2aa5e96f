"""Run llama.cpp's server for a local model as a child process, sized to this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

from moltsim.llm.local.catalog import LocalModel, LocalModelError

HOST = "127.0.0.1"
DEFAULT_SLOTS = 2
MAX_SLOTS = 64
CACHE_RAM_CAP_MIB = 8192
"""llama.cpp's own default for its prompt cache in RAM; less when memory is short."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """CPUs minus the rounded 1-minute load average, from 1 to the CPU count.

    llama.cpp's threads spin while they wait for each other, so one that shares a busy core
    stalls them all: on 2 cores with one busy, 2 threads were 8 times slower than 1.
    """
    cpus = usable_cpus()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return min(cpus, max(1, cpus - round(load)))


def free_port(host: str = HOST) -> int:
    """A port nobody listens on now (the OS picks it when binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def prompt_cache_mib() -> int:
    """The RAM prompt cache: a quarter of the available memory, at most llama.cpp's 8 GiB."""
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unsupported here: keep llama.cpp's default
        return CACHE_RAM_CAP_MIB
    return max(256, min(CACHE_RAM_CAP_MIB, available // 4 // 2**20))


@dataclass(frozen=True, slots=True)
class ServerPlan:
    """How to run the server: what ``python -m moltsim.llm.local.serve`` is given."""

    model_path: Path
    port: int
    slots: int
    ctx_per_slot: int
    threads: int
    alias: str
    host: str = HOST
    cache_ram_mib: int | None = None

    @property
    def n_ctx(self) -> int:
        """The server's whole context, which llama.cpp divides evenly among the slots."""
        return self.slots * self.ctx_per_slot

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{self.host}:{self.port}/health"

    def args(self) -> list[str]:
        args = [
            "--model", str(self.model_path), "--host", self.host, "--port", str(self.port),
            "--slots", str(self.slots), "--ctx", str(self.ctx_per_slot),
            "--threads", str(self.threads), "--alias", self.alias,
        ]  # fmt: skip
        if self.cache_ram_mib is not None:
            args += ["--cache-ram-mib", str(self.cache_ram_mib)]
        return args


def plan_server(
    model: LocalModel,
    path: Path,
    *,
    slots: int | None = None,
    threads: int | None = None,
    port: int | None = None,
    ctx_per_slot: int | None = None,
) -> ServerPlan:
    """Size a server for ``model`` (its GGUF file at ``path``) to this machine.

    ``threads`` defaults to the idle cores. ``slots`` (requests decoded at once) defaults to
    2, but never more than the threads: a CPU spends most of a decision reading the prompt,
    which is compute-bound, so two slots on one core take twice as long per call and gain
    nothing, pushing calls towards their timeout; while generating, slots share one pass over
    the weights, which is where a second slot pays. An explicit value is taken as given
    (1 to 64). The port defaults to a free loopback port.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    if slots is not None and not 1 <= slots <= MAX_SLOTS:
        raise ValueError(f"slots must be 1 to {MAX_SLOTS}, not {slots}")
    ctx = model.ctx_per_slot if ctx_per_slot is None else ctx_per_slot
    if ctx < 256:
        raise ValueError(f"a slot needs at least 256 tokens of context, not {ctx}")
    threads = idle_cores() if threads is None else threads
    slots = min(DEFAULT_SLOTS, threads) if slots is None else slots
    return ServerPlan(
        model_path=path,
        port=free_port() if port is None else port,
        slots=slots,
        ctx_per_slot=ctx,
        threads=threads,
        alias=model.name,
        cache_ram_mib=prompt_cache_mib(),
    )


def tail_lines(path: Path, n: int = 12) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=n)]
    except OSError:
        return []


class LocalServer:
    """llama.cpp's server for one plan, as a child process logging to ``log_path``.

    ``with LocalServer(plan, log) as server:`` starts it, waits until it answers, and stops
    it on the way out. The child dies with this process (see ``serve.die_with_parent``): at
    once when started from the main thread, else within a second.
    """

    def __init__(self, plan: ServerPlan, log_path: Path, *, start_timeout_s: float = 180.0):
        self.plan = plan
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None
        """Seconds from launch to the first healthy answer."""

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint: ``http://127.0.0.1:PORT/v1``."""
        return self.plan.base_url

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Launch the server and wait until ``/health`` answers 200; ``LocalModelError`` if it
        exits first or does not answer within the timeout (then it is stopped)."""
        if self.process is not None:
            raise RuntimeError("this server was already started")
        if not port_is_free(self.plan.host, self.plan.port):
            raise LocalModelError(
                f"port {self.plan.port} on {self.plan.host} is in use: pick another or leave it"
                " unset"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "moltsim.llm.local.serve", *self.plan.args(),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if threading.current_thread() is threading.main_thread():
            command.append("--pdeathsig")  # tied to the starting thread: see serve.py
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=False,
            )
        try:
            self._wait_healthy(began)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began

    def _wait_healthy(self, began: float) -> None:
        assert self.process is not None
        deadline = began + self.start_timeout_s
        delay = 0.05
        while True:
            code = self.process.poll()
            if code is not None:
                self._failed(f"the local model server exited with status {code} while starting")
            if _healthy(self.plan.health_url):
                return
            if time.monotonic() > deadline:
                self._failed(
                    f"the local model server did not answer within {self.start_timeout_s:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _failed(self, what: str) -> NoReturn:
        self.stop()
        tail = "\n".join("  " + line for line in tail_lines(self.log_path))
        raise LocalModelError(f"{what}; the end of {self.log_path}:\n{tail}")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. The exit status, or ``None`` if it
        was never started. Safe to call twice."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                return process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
            except ProcessLookupError:
                pass
        return process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback requests must not go through an ``http_proxy`` from the environment."""


def _healthy(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


__all__ = [
    "LocalServer",
    "ServerPlan",
    "free_port",
    "idle_cores",
    "plan_server",
    "prompt_cache_mib",
]
