"""``moltsim watch``: clear refusals for runs it cannot show, and the real command in a
terminal (tmux) following a run that another process is writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltsim.cli import main
from tests.system_tools import system_program
from tests.tui.runs import set_meta
from tests.tui.test_live import REPO

MOLTSIM = Path(sys.executable).with_name("moltsim")
PROMPT = "shell>"


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["watch", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moltsim: ") and err.count("\n") == 1, err
    return err


def test_a_missing_run_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(MOLTSIM), "watch", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == f"moltsim: no run file at {tmp_path / 'nowhere'}\n"
    assert result.stdout == ""


def test_a_corrupt_run_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.db").write_bytes(b"not a database, just bytes\n" * 100)
    assert "is not a moltsim run file" in refusal(capsys, str(tmp_path / "run.db"))


def test_a_run_from_a_newer_moltsim_is_refused(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_meta(run_copy / "run.db", schema_version="99")
    err = refusal(capsys, str(run_copy))
    assert "written by a newer moltsim" in err and "upgrade" in err


def test_watch_needs_a_terminal(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "needs a terminal" in refusal(capsys, str(run_copy))


class Terminal:
    """A detached tmux session (on a private server) running a shell."""

    def __init__(self, tmux: str, name: str) -> None:
        self.base = [tmux, "-L", name]
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("TMUX", None)
        self.env = env
        self._tmux("new-session", "-d", "-s", "watch", "-x", "120", "-y", "40",
                   f"env PS1='{PROMPT} ' bash --norc --noprofile")  # fmt: skip

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def type(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "watch", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "watch")

    def wait_for(self, text: str, timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear; the terminal shows:\n{screen}")
            time.sleep(0.05)
        return time.monotonic()

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], env=self.env, capture_output=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(system_program("tmux"), f"moltsim-watch-{os.getpid()}")
    try:
        yield term
    finally:
        term.close()


@pytest.mark.slow
def test_moltsim_watch_in_a_terminal_shows_new_posts_arrive(
    terminal: Terminal, run_copy: Path
) -> None:
    terminal.wait_for(PROMPT)
    terminal.type(f"{MOLTSIM} watch {run_copy}", "Enter")
    terminal.wait_for("Why lobsters moult in the dark")
    assert "Global feed" in terminal.screen()
    terminal.type("2")  # newest first: new posts come in at the top
    terminal.wait_for("The best tide tables, ranked")
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.tui.writer", str(run_copy / "run.db"),
         "--posts", "3", "--interval", "0.3", "--prefix", "Arrived live"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        terminal.wait_for("Arrived live 0")
        terminal.wait_for("Arrived live 2")
        assert writer.wait(timeout=30) == 0, writer.communicate()[1]
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate()
    terminal.type("q")
    deadline = time.monotonic() + 10
    while terminal.screen().count(PROMPT) < 2:  # back at the shell's prompt: the watcher quit
        assert time.monotonic() < deadline, terminal.screen()
        time.sleep(0.05)
    assert "Traceback" not in terminal.screen()


def test_a_bad_events_broker_is_refused(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refusal(capsys, str(run_copy), "--events", "http://localhost:1883")
    assert "only mqtt://host:port brokers are supported" in err
