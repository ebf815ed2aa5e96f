"""``moltsim run`` with LLM agents, its doors and its failures: a dead endpoint, an endpoint
that dies after the check, the preflight and estimate, ``stats --json``, and replaying a run's
recordings to identical exports. The endpoint is a scripted OpenAI-compatible server on
loopback, here to inject faults; tests/llm runs the same paths through a real model.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltsim.llm.config import LlmConfig
from moltsim.scenario.runner import STEP_TIMEOUT_S, PoolPlan, Runner
from tests.agent.conftest import FakeLlmServer, Reply, answer, closed_port
from tests.scenario.conftest import ROOT, assert_same_exports, cli, llm_scenario_toml, scenario_toml

POST = {"type": "post", "submolt": "general", "title": "Notes from the night shift",
        "body": "Counting heartbeats, one per hour."}  # fmt: skip


def llm_scenario(name: str, base_url: str, *, duration: str = "3h", extra: str = "") -> str:
    """Two offline agents and two LLM agents on ``base_url``, stepped, in one submolt."""
    llm = f'''base_url = "{base_url}"
model = "fake-model-1"
max_retries = 0
timeout_s = 5
{extra}'''
    return llm_scenario_toml(name, llm, duration=duration)


@pytest.fixture
def server() -> Iterator[FakeLlmServer]:
    fake = FakeLlmServer()
    fake.default = Reply(answer([POST], "a post"))
    yield fake
    fake.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


# --- a dead or wrong endpoint: one line, before anything is made ------------------------------


def test_a_closed_port_fails_fast_with_one_line_and_no_run_folder(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    scenario = write(tmp_path, llm_scenario("dead", url))
    run_dir = tmp_path / "run"
    started = time.monotonic()
    done = cli("run", scenario, "--run-dir", run_dir, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("moltsim: ") and url in last, done.stderr
    assert not run_dir.exists(), "no run left half-made"


def test_llm_check_names_a_dead_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    done = cli("llm", "check", write(tmp_path, llm_scenario("dead", url)))
    assert done.returncode == 2 and url in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "ftp://127.0.0.1/v1", "localhost", "http://"])
def test_validate_refuses_a_base_url_that_is_not_http(tmp_path: Path, url: str) -> None:
    done = cli("validate", write(tmp_path, llm_scenario("bad-url", url)))
    assert done.returncode == 1
    assert "base_url" in done.stdout + done.stderr and "http" in done.stdout + done.stderr


def test_validate_refuses_an_unknown_local_model_and_two_sources(tmp_path: Path) -> None:
    text = llm_scenario("two", "http://127.0.0.1:1/v1").replace(
        'model = "fake-model-1"', 'model = "fake-model-1"\nlocal = "qwen2.5-coder-1.5b"'
    )
    done = cli("validate", write(tmp_path, text))
    assert done.returncode == 1 and "not local and base_url" in done.stdout + done.stderr


def test_llm_check_reports_mode_slots_timing_and_an_estimate(
    tmp_path: Path, server: FakeLlmServer
) -> None:
    server.refuse_formats = {"json_schema"}
    prices = "\n[budgets]\nprompt_token_price_usd = 0.000001\n"
    text = llm_scenario("check", server.base_url).replace("\n[budgets]\n", prices + "\n", 1)
    done = cli("llm", "check", write(tmp_path, text))
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "json_object answers" in out
    assert "estimate for the whole run: about 6 decisions" in out, out
    assert "$" in out
    assert "the model is ready" in out


# --- a model that fails during the run ---------------------------------------------------------


def test_a_run_whose_every_call_failed_does_not_pass_for_a_good_one(
    tmp_path: Path, server: FakeLlmServer
) -> None:
    # The preflight's two decisions succeed; then the endpoint only fails.
    server.queue(Reply(answer([POST])), Reply(answer([POST])))
    server.default = Reply(status=500)
    run_dir = tmp_path / "run"
    done = cli("run", write(tmp_path, llm_scenario("dying", server.base_url)),
               "--run-dir", run_dir, timeout=180)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "model calls failed" in done.stderr and "http_5xx" in done.stderr
    assert "failed (" in done.stderr and "http_5xx)" in done.stderr, "the summary says how"
    stats = cli("stats", run_dir, "--json")
    figures = json.loads(stats.stdout)
    llm = figures["llm"]
    assert llm["calls"] > 0 and llm["errors"] == llm["calls"]
    assert llm["errors_by_kind"] == {"http_5xx": llm["calls"]}
    assert figures["state"] == "failed"
    for key in ("calls", "errors", "valid_actions", "prompt_tokens", "completion_tokens"):
        assert isinstance(llm[key], int)
    human = cli("stats", run_dir)
    assert "failed (" in human.stdout and "http_5xx" in human.stdout


# --- record and replay --------------------------------------------------------------------------


def test_a_replayed_run_exports_as_the_recorded_one(tmp_path: Path, server: FakeLlmServer) -> None:
    scenario = write(tmp_path, llm_scenario("replayed", server.base_url, duration="4h"))
    done = cli("run", scenario, "--run-dir", tmp_path / "first", timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    calls = len(server.requests)
    stats = json.loads(cli("stats", tmp_path / "first", "--json").stdout)["llm"]
    assert stats["calls"] >= 2 and stats["valid_actions"] >= 1, stats

    server.close()  # the replay must not need the model
    again = cli("run", scenario, "--run-dir", tmp_path / "again", "--replay-llm",
                tmp_path / "first", timeout=180)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(server.requests) == calls
    first = assert_same_exports(tmp_path / "first", tmp_path / "again", tmp_path / "exports")
    assert b'"llm_call"' in first["actions.jsonl"]


def test_replay_refuses_a_realtime_scenario_and_a_run_without_recordings(
    tmp_path: Path,
) -> None:
    realtime = write(tmp_path, scenario_toml("rt", mode="realtime", duration="1h", speed=3600))
    done = cli("run", realtime, "--replay-llm", tmp_path, "--run-dir", tmp_path / "r")
    assert done.returncode == 2 and "stepped" in done.stderr and "Traceback" not in done.stderr
    stepped = write(tmp_path, scenario_toml("st", mode="stepped", duration="1h"))
    plain = tmp_path / "plain"
    assert cli("run", stepped, "--run-dir", plain, timeout=120).returncode == 0
    done = cli("run", stepped, "--replay-llm", plain, "--run-dir", tmp_path / "r2")
    assert done.returncode == 2 and "no recorded LLM decisions" in done.stderr
    missing = cli("run", stepped, "--replay-llm", tmp_path / "nowhere")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


# --- the stepped clock waits for slow models ------------------------------------------------------


def test_a_stepped_tick_waits_as_long_as_the_model_may_take() -> None:
    llm = LlmConfig(base_url="http://127.0.0.1:1/v1", timeout_s=100, max_retries=1, concurrency=2)
    from moltsim.scenario.load import PlannedAgent
    from tests.agent.conftest import persona

    agents = [PlannedAgent(f"a{i}", persona(), "openai", 3600.0, 0.0) for i in range(5)]
    pools = [PoolPlan("pool-1", agents, 0.0)]
    # Each decision: 100 s per call, twice (one retry), twice again (one repair); 3 rounds.
    assert Runner._step_timeout(pools, llm) == STEP_TIMEOUT_S + 400 * 3
    assert Runner._step_timeout(pools, None) == STEP_TIMEOUT_S
    fixed = llm.model_copy(update={"step_timeout_s": 42.0})
    assert Runner._step_timeout(pools, fixed) == 42.0


def test_the_progress_line_says_when_the_model_keeps_failing() -> None:
    """Three failures in a row are enough to say so; one good answer clears it."""
    import sqlite3

    from moltsim.scenario.llmhealth import LlmHealth

    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE llm_calls (id INTEGER PRIMARY KEY, outcome TEXT, error TEXT,"
        " server_ms REAL, queue_ms REAL)"
    )
    health = LlmHealth()

    def calls(*outcomes: tuple[str, str]) -> None:
        conn.executemany(
            "INSERT INTO llm_calls (outcome, error, server_ms, queue_ms) VALUES (?, ?, 5, 1)",
            outcomes,
        )
        health.read(conn)

    calls(("ok", ""), ("error", "connection"), ("error", "connection"))
    assert health.failing == "" and "LLM 1 ok, 2 failed" in health.status()
    calls(("error", "connection"))
    assert health.failing == "connection" and "backing off" in health.status()
    assert "3 connection" in health.summary()
    calls(("repaired", ""))
    assert health.failing == "" and not health.all_failed


def test_ctrl_c_while_the_model_is_checked_is_one_line(
    tmp_path: Path, server: FakeLlmServer
) -> None:
    server.default = Reply(answer([POST]), delay=30.0)
    scenario = write(tmp_path, llm_scenario("slow", server.base_url))
    process = subprocess.Popen(
        [sys.executable, "-m", "moltsim.cli", "run", str(scenario), "--run-dir",
         str(tmp_path / "run")],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        # A background job of a script starts with SIGINT ignored, and Python then leaves it
        # so: give the child the terminal's Ctrl-C whatever started this test.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "moltsim: interrupted" and "Traceback" not in err
    assert not (tmp_path / "run").exists()
