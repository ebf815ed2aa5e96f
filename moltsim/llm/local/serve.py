"""``python -m moltsim.llm.local.serve``: llama.cpp's OpenAI-compatible server for one GGUF file.

The ``xllamacpp`` wheel has llama.cpp's server but no command line; this is that command line,
run by :class:`moltsim.llm.local.server.LocalServer` as a child process. It prints one line,
``listening http://HOST:PORT``, once the model is loaded, and exits 0 on SIGTERM or SIGINT.
Usage errors (no xllamacpp, a missing or corrupt model file) are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

MISSING_XLLAMACPP = "the local model server needs xllamacpp: pip install 'moltsim[local]'"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    """The C library this process runs on (POSIX), or ``None``."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):
        return None


def die_with_parent(parent_pid: int | None, *, deathsig: bool) -> bool:
    """Stop when the parent process dies, so that a killed ``moltsim run`` leaves no server
    behind. False when the parent is already gone.

    With ``deathsig``, on Linux, the kernel sends SIGTERM at once (``PR_SET_PDEATHSIG``). It
    does so when the *thread* that started this process ends, though, so the parent asks for
    it only from its main thread. In every case a watchdog thread checks once a second that
    the parent is still there, and sends SIGTERM to this process when it is not.
    """
    if deathsig and sys.platform.startswith("linux") and (libc := _libc()) is not None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if parent_pid is None:
        return True
    if os.getppid() != parent_pid:  # it died before prctl took effect: no signal will come
        return False

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    return True


def check_model(path: Path) -> str | None:
    """Why ``path`` cannot be a GGUF model file, or ``None``."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        return f"no model file at {path}"
    except OSError as e:
        return f"cannot read the model file {path}: {e.strerror or e}"
    if magic != b"GGUF":
        return f"{path} is not a GGUF model file (it starts with {magic!r}, not b'GGUF')"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m moltsim.llm.local.serve",
        description="Serve a GGUF model with llama.cpp's OpenAI-compatible server.",
    )
    parser.add_argument("--model", type=Path, required=True, help="the GGUF file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=2, help="requests decoded at once")
    parser.add_argument("--ctx", type=int, default=4096, help="tokens of context per slot")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--alias", default=None, help="the model name /v1/models reports")
    parser.add_argument("--cache-ram-mib", type=int, default=None, help="prompt cache in RAM")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pdeathsig", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("port", "slots", "ctx", "threads"):
        if getattr(args, name) < (0 if name == "port" else 1):
            parser.error(f"--{name} must be positive")
    return args


def fail(message: str) -> NoReturn:
    print(f"moltsim serve: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def build_params(x: Any, args: argparse.Namespace) -> Any:
    p = x.CommonParams()
    p.model.path = str(args.model)
    p.hostnames = [args.host]
    p.port = args.port
    p.n_parallel = args.slots
    p.n_ctx = args.slots * args.ctx
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.endpoint_props = True
    p.ui = False
    if args.alias:
        p.model_alias = {args.alias}
    if args.cache_ram_mib is not None:
        p.cache_ram_mib = args.cache_ram_mib
    return p


def wait_for_stop_signal() -> int:
    """Block until SIGTERM or SIGINT; the signals were blocked before the server's threads
    started (they inherit the mask), so only this wait receives them."""
    if hasattr(signal, "pthread_sigmask"):
        return signal.sigwait(STOP_SIGNALS)
    got: list[int] = []
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        got.append(signum)
        stop.set()

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    while not stop.wait(0.5):
        pass
    return got[0]


def shut_down() -> NoReturn:
    """Exit 0 at once, without the server's destructor: it waits for requests in flight, and
    it holds the GIL while it does, so not even a timeout could cut it short. The kernel
    closes the sockets; nothing else needs saving, only the log flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    if (libc := _libc()) is not None:
        libc.fflush(None)  # llama.cpp's log lines buffered in C stdio
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if not die_with_parent(args.parent_pid, deathsig=args.pdeathsig):
        fail("the process that started this server is gone")
    problem = check_model(args.model)
    if problem is not None:
        fail(problem)
    try:
        x = importlib.import_module("xllamacpp")
    except ImportError:
        fail(MISSING_XLLAMACPP)
    try:
        server = x.Server(build_params(x, args))
    except RuntimeError as e:
        fail(f"llama.cpp could not start ({e}); the lines above say why")
    print(f"listening {server.listening_address}", flush=True)
    signum = wait_for_stop_signal()
    print(f"stopping on {signal.Signals(signum).name}", flush=True)
    shut_down()


if __name__ == "__main__":
    main()
