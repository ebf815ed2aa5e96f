"""Read-only by construction: browsing leaves the run file and its WAL byte-identical, and
nothing outside ``moltsim.tui`` imports Textual."""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from moltsim.tui.app import WatchApp
from tests.tui.conftest import SIZE, settle
from tests.tui.snap import screen_text

PACKAGE = Path(__file__).resolve().parents[2] / "moltsim"
WALK = ("3", "enter", "x", "down", "a", "enter", "f", "s", "enter", "2", "4", "e", "slash",
        *"moult", "enter", "enter", "question_mark", "escape", "f")  # fmt: skip


EMPTY = hashlib.sha256(b"").hexdigest()


def digests(folder: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("run.db", "run.db-wal")
        if (folder / name).exists()
    }


async def browse(folder: Path) -> str:
    """Walk every screen of the watcher on ``folder`` (polling as shipped); returns what the
    global feed showed."""
    app = WatchApp(folder)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            feed = screen_text(app)
            for key in WALK:
                await pilot.press(key)
                await settle(pilot, app)
            await pilot.pause(0.6)  # a poll or two more
    finally:
        app.close()
    return feed


@pytest.mark.slow
async def test_browsing_a_finished_run_leaves_it_byte_identical(run_copy: Path) -> None:
    before = digests(run_copy)
    # A finished run folded its WAL back; an earlier read-only reader of the shared fixture
    # may have left an empty -wal, which is the same as none.
    assert before.get("run.db-wal", EMPTY) == EMPTY
    await browse(run_copy)
    after = digests(run_copy)
    assert after["run.db"] == before["run.db"]
    # Opening a WAL database read-only may create an empty -wal (the same as none at all).
    if "run.db-wal" in after:
        assert (run_copy / "run.db-wal").stat().st_size == 0


@pytest.mark.slow
async def test_browsing_a_run_with_a_wal_leaves_both_files_byte_identical(
    run_copy: Path, tmp_path: Path
) -> None:
    # A run stopped while its WAL still held commits: copy both files while a writer holds them.
    writer = sqlite3.connect(run_copy / "run.db")
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        with writer:
            writer.execute("UPDATE posts SET title = 'Edited, only in the WAL' WHERE id = 12")
        stopped = tmp_path / "stopped"
        stopped.mkdir()
        for name in ("run.db", "run.db-wal"):
            shutil.copyfile(run_copy / name, stopped / name)
    finally:
        writer.close()
    before = digests(stopped)
    assert (stopped / "run.db-wal").stat().st_size > 0
    feed = await browse(stopped)
    assert "Edited, only in the WAL" in feed  # it read the WAL...
    assert digests(stopped) == before  # ...and changed neither file


def test_the_watcher_has_no_sql_that_writes() -> None:
    writes = re.compile(
        r"\b(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|VACUUM|ATTACH|REINDEX)\b"
    )
    for path in (PACKAGE / "tui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not writes.search(node.value), f"{path}: {node.value!r}"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_tui_package_imports_textual() -> None:
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        if (PACKAGE / "tui") in path.parents:
            continue
        checked += 1
        textual = {m for m in imported_modules(path) if m.split(".")[0] == "textual"}
        assert not textual, f"{path.relative_to(PACKAGE.parent)} imports {sorted(textual)}"
    assert checked > 30
    # and the watcher's queries do not need it either
    for reads in ("source.py", "pulse.py", "reads.py"):
        imported = imported_modules(PACKAGE / "tui" / reads)
        assert not {m for m in imported if m.startswith("textual")}, reads


def test_the_command_line_loads_textual_only_to_watch() -> None:
    code = "import sys, moltsim.cli; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
