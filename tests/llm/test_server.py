"""The local model server: sizing, and llama.cpp really serving the 0.5B model in a child
process that stops cleanly and never outlives its parent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import psutil
import pytest

from moltsim.llm.local import MODELS, LocalModelError, LocalServer, idle_cores, plan_server
from moltsim.llm.local.serve import parse_args
from moltsim.llm.local.server import usable_cpus

SMALL = MODELS["qwen2.5-0.5b"]


def gone(pid: int, within_s: float) -> bool:
    """The process has exited (a zombie counts: only its parent can reap it)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_idle_cores_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = usable_cpus()
    assert 1 <= idle_cores() <= cpus
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert idle_cores() == cpus
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus + 40.0, 0.0, 0.0))
    assert idle_cores() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 0.6, 0.0, 0.0))
    assert idle_cores() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (-5.0, 0.0, 0.0))
    assert idle_cores() == cpus


def test_plan_sizes_to_the_machine(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    plan = plan_server(SMALL, gguf)
    assert 1 <= plan.threads <= usable_cpus()
    assert 1 <= plan.slots <= min(2, plan.threads)
    assert plan.ctx_per_slot == SMALL.ctx_per_slot == 4096
    assert plan.n_ctx == plan.slots * 4096
    assert plan.host == "127.0.0.1" and 0 < plan.port < 65536
    assert plan.base_url == f"http://127.0.0.1:{plan.port}/v1"
    assert plan.alias == "qwen2.5-0.5b"
    assert plan.cache_ram_mib is not None and 256 <= plan.cache_ram_mib <= 8192
    with socket.socket() as s:
        s.bind(("127.0.0.1", plan.port))  # it was free

    assert plan_server(SMALL, gguf, threads=1).slots == 1
    assert plan_server(SMALL, gguf, threads=16).slots == 2
    assert plan_server(SMALL, gguf, threads=1, slots=6).slots == 6
    big = plan_server(SMALL, gguf, threads=3, slots=4, port=18123, ctx_per_slot=2048)
    assert (big.threads, big.slots, big.port, big.n_ctx) == (3, 4, 18123, 8192)
    for bad in ({"threads": 0}, {"slots": 0}, {"slots": 65}, {"ctx_per_slot": 100}):
        with pytest.raises(ValueError):
            plan_server(SMALL, gguf, **bad)

    args = parse_args(big.args())
    assert (args.model, args.port, args.slots, args.ctx, args.threads, args.alias) == (
        gguf, 18123, 4, 2048, 3, "qwen2.5-0.5b",
    )  # fmt: skip


@pytest.mark.slow
def test_serves_the_small_model_and_stops_clean(small_model: Path, tmp_path: Path) -> None:
    plan = plan_server(SMALL, small_model)
    log = tmp_path / "server.log"
    with LocalServer(plan, log) as server:
        assert server.running() and server.pid is not None
        pid = server.pid
        assert server.base_url == plan.base_url
        assert server.started_in_s is not None and server.started_in_s < 60
        with openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0) as client:
            assert [m.id for m in client.models.list()] == ["qwen2.5-0.5b"]
            reply = client.chat.completions.create(
                model="qwen2.5-0.5b",
                messages=[
                    {"role": "system", "content": "Answer in JSON."},
                    {"role": "user", "content": 'Give {"colour": <a colour>} for the sky.'},
                ],
                response_format={"type": "json_object"},
                max_tokens=30,
                temperature=0,
                timeout=120,
            )
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    assert server.process is not None and server.process.returncode == 0
    assert not psutil.pid_exists(pid)
    assert pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    assert server.stop() == 0  # twice is fine
    text = log.read_text()
    assert f"listening http://127.0.0.1:{plan.port}" in text
    assert "stopping on SIGTERM" in text and "Traceback" not in text


@pytest.mark.slow
def test_sigint_stops_the_server_with_status_0(small_model: Path, tmp_path: Path) -> None:
    server = LocalServer(plan_server(SMALL, small_model, threads=1), tmp_path / "log")
    with server:
        assert server.process is not None
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(10) == 0
    assert "stopping on SIGINT" in (tmp_path / "log").read_text()


@pytest.mark.slow
def test_stop_does_not_wait_for_a_request_in_flight(small_model: Path, tmp_path: Path) -> None:
    """llama.cpp's destructor waits for requests in flight; a stop must not."""
    server = LocalServer(plan_server(SMALL, small_model, threads=1), tmp_path / "log")
    errors: list[BaseException] = []

    def generate() -> None:
        body = {"messages": [{"role": "user", "content": "Tell a very long story."}],
                "max_tokens": 2000, "temperature": 1.0}  # fmt: skip
        request = urllib.request.Request(
            server.base_url + "/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=60).close()
        except (urllib.error.URLError, OSError) as e:
            errors.append(e)

    with server:
        caller = threading.Thread(target=generate)
        caller.start()
        deadline = time.monotonic() + 10
        while "processing task" not in (tmp_path / "log").read_text():
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
        began = time.monotonic()
        assert server.stop(timeout_s=10) == 0
        assert time.monotonic() - began < 5
    caller.join(10)
    assert not caller.is_alive() and errors, "the request was cut off"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_the_server_dies_with_its_parent(small_model: Path, tmp_path: Path, where: str) -> None:
    script = textwrap.dedent(f"""
        import sys, threading, time
        from pathlib import Path
        from moltsim.llm.local import MODELS, LocalServer, plan_server
        server = LocalServer(plan_server(MODELS["qwen2.5-0.5b"], Path({str(small_model)!r}),
                             threads=1), Path({str(tmp_path / "log")!r}))
        if {where!r} == "main thread":
            server.start()
        else:  # the starting thread ends: the server must live on
            t = threading.Thread(target=server.start)
            t.start()
            t.join()
            time.sleep(1.5)
        print(server.pid if server.running() else "dead", flush=True)
        time.sleep(600)
    """)
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            line = parent.stdout.readline().strip()
            assert line.isdigit(), f"the server did not stay up: {line!r}"
            child = int(line)
            assert psutil.Process(child).ppid() == parent.pid
        finally:
            parent.kill()
    assert gone(child, within_s=5), "the server outlived its parent"
    assert "stopping on SIGTERM" in (tmp_path / "log").read_text()


def test_a_server_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    not_gguf = tmp_path / "m.gguf"
    not_gguf.write_bytes(b"<html>proxy error</html>")
    server = LocalServer(plan_server(SMALL, not_gguf), tmp_path / "log")
    with pytest.raises(LocalModelError) as caught:
        server.start()
    message = str(caught.value)
    assert "exited with status 2 while starting" in message
    assert "is not a GGUF model file" in message
    assert not server.running()


def test_a_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = LocalServer(plan_server(SMALL, tmp_path / "m.gguf", port=port), tmp_path / "l")
        with pytest.raises(LocalModelError, match=f"port {port} on 127.0.0.1 is in use"):
            server.start()
    assert server.process is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no model file at"), (b"PK\x03\x04 a wheel", "is not a GGUF model file")],
)
def test_serve_refuses_a_bad_model_file_in_one_line(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    model = tmp_path / "model.gguf"
    if content is not None:
        model.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "moltsim.llm.local.serve", "--model", str(model), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


def test_serve_without_xllamacpp_says_how_to_get_it(small_model: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "xllamacpp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('xllamacpp is not installed')\n")
    done = subprocess.run(
        [sys.executable, "-m", "moltsim.llm.local.serve", "--model", str(small_model),
         "--port", "0"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(shadow.parent)},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "moltsim serve: the local model server needs xllamacpp: pip install 'moltsim[local]'"
    ]
