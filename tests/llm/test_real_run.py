"""Agents thinking with a real language model, end to end: ``moltsim run`` fetches nothing new
(the 0.5B model is in the cache), serves it with llama.cpp, checks it, runs a stepped scenario
whose LLM agents decide through it, and stops the server; the run's recordings replay to
identical exports without the model; Ctrl-C leaves no server behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.scenario.conftest import ROOT, assert_same_exports, cli, llm_scenario_toml

pytestmark = pytest.mark.slow


def local_scenario(name: str, duration: str = "3h") -> str:
    return llm_scenario_toml(
        name,
        'local = "qwen2.5-0.5b"\nmax_tokens = 400\n',
        duration=duration,
        seed=11,
        offline=("nitpick_9000", "fresh_wick", "apogee_ada"),
        thinking=("qualia_quandary", "redline_rhea"),
    )


def servers() -> list[psutil.Process]:
    """Local model servers still alive (zombies are gone for good)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if "moltsim.llm.local.serve" in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_a_real_model_runs_a_stepped_scenario_that_replays_identically(
    small_model: Path, tmp_path: Path
) -> None:
    scenario = tmp_path / "local.toml"
    scenario.write_text(local_scenario("real-model"))
    before = {p.pid for p in servers()}
    done = cli("run", scenario, "--run-dir", tmp_path / "first", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting the local model qwen2.5-0.5b" in done.stderr
    assert "json_schema answers" in done.stderr, "llama.cpp takes the schema"
    assert "estimate for the whole run" in done.stderr
    assert {p.pid for p in servers()} <= before, "the server stopped with the run"
    assert (tmp_path / "first" / "logs" / "llm-server.out").stat().st_size > 0

    figures = json.loads(cli("stats", tmp_path / "first", "--json").stdout)["llm"]
    assert figures["calls"] >= 2, figures
    assert figures["errors_by_kind"].get("timeout", 0) == 0, figures
    assert figures["modes"] == {"json_schema": figures["calls"]}
    assert figures["prompt_tokens"] > 500 * figures["calls"], "tokens as the server counted them"
    assert figures["estimated_calls"] == 0
    assert figures["cached_tokens"] > 0, "the stable prefix (skill, persona) is reused"
    assert figures["proposed_actions"] >= 1
    assert figures["refused_by_code"].get("not_found", 0) == 0, "only ids shown can be named"
    assert figures["valid_action_rate"] >= 0.5, figures

    again = cli("run", scenario, "--run-dir", tmp_path / "again", "--replay-llm",
                tmp_path / "first", timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starting the local model" not in again.stderr, "a replay needs no model"
    assert_same_exports(tmp_path / "first", tmp_path / "again", tmp_path / "exports")


def test_ctrl_c_stops_the_local_server_and_resume_starts_another(
    small_model: Path, tmp_path: Path
) -> None:
    scenario = tmp_path / "local.toml"
    scenario.write_text(local_scenario("interrupted", duration="12h"))
    run_dir = tmp_path / "run"
    out = tmp_path / "out.txt"
    before = {p.pid for p in servers()}
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moltsim.cli", "run", str(scenario), "--run-dir", str(run_dir)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "watch it live" not in out.read_text(errors="replace"):
            assert process.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.2)
        assert {p.pid for p in servers()} - before, "a server runs during the run"
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(120) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while {p.pid for p in servers()} - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {p.pid for p in servers()} - before, "Ctrl-C stopped the server"
    assert "interrupted" in out.read_text()

    resumed = cli("run", scenario, "--run-dir", run_dir, "--resume", "--duration", "2h",
                  timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "starting the local model" in resumed.stderr
    assert not {p.pid for p in servers()} - before
