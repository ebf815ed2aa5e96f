"""The ``moltsim`` command on real run files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moltsim.cli import main
from moltsim.domain import actions as a
from moltsim.engine.service import Engine

T0 = 1_800_000_000.0


async def test_stats_summarises_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = await Engine.open(tmp_path / "run.db")
    try:
        alice = await engine.register_agent("alice", bytes(32), T0)
        await engine.seed_submolt("general", T0)
        now = T0 + 3 * 86_400
        assert (await engine.submit(alice, a.CreatePost(submolt="general", title="hi"), now)).ok
        refused = await engine.submit(alice, a.CreatePost(submolt="nowhere", title="x"), now)
        assert refused.code == "not_found"
    finally:
        await engine.close()
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "posts" in out and "not_found" in out
    assert "2027-01-" in out  # sim time shown as a date


def test_stats_on_a_missing_run_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", str(tmp_path / "nope.db")]) == 2
    assert "no run file" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moltsim.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("moltsim ")


def test_stats_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """``moltsim stats RUN | head -1``: the reader leaves early; no traceback follows."""
    assert main(["init", str(tmp_path / "run")]) == 0
    child = subprocess.Popen(
        [sys.executable, "-m", "moltsim.cli", "stats", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child has printed anything: every write fails
    with child.stderr:
        err = child.stderr.read().decode()
    assert child.wait(timeout=30) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize(
    ("args", "says"),
    [(["llm"], "LLM_COMMAND"),
     (["llm", "check"], "scenario"),
     (["llm", "check", "/nowhere/scenario.toml"], "file not found"),
     (["llm", "fetch", "gpt-17"], "no local model called 'gpt-17'; known: qwen2.5-0.5b"),
     (["llm", "bogus"], "invalid choice"),
     (["stats", "--json"], "run"),
     (["run", "scenarios/smoke.toml", "--replay-llm"], "expected one argument")],
    ids=["llm", "check-no-scenario", "check-missing", "fetch-unknown", "llm-bogus",
         "stats-json-no-run", "replay-no-run"],
)  # fmt: skip
def test_the_model_commands_refuse_wrong_arguments_in_one_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(args)
    except SystemExit as exit:  # argparse's own errors
        code = int(exit.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert says in err, err
    assert "Traceback" not in err


def test_stats_json_of_a_run_without_model_calls(tmp_path: Path) -> None:
    import json

    assert main(["init", str(tmp_path / "run")]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "moltsim.cli", "stats", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    assert figures["llm"]["calls"] == 0 and figures["llm"]["valid_action_rate"] == 0.0
    assert figures["counts"]["posts"] == 0
