"""Snapshot tests of the watcher's screens: each screen's SVG screenshot (colours and all) is
compared with the one stored under ``tests/tui/snapshots/``; a plain-text copy is stored next
to it so that a change is readable in a diff.

``MOLTSIM_SNAPSHOT_UPDATE=1`` (``make test-snapshot-update``) rewrites the stored files.
"""

from __future__ import annotations

import difflib
import io
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.app import App

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("MOLTSIM_SNAPSHOT_UPDATE") == "1"


def _console(app: App[Any]) -> Console:
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console


def screen_text(app: App[Any]) -> str:
    """What the screen shows, as plain text (one line per terminal row)."""
    return "\n".join(line.rstrip() for line in _console(app).export_text().splitlines())


def assert_snapshot(app: App[Any], name: str) -> None:
    svg = app.export_screenshot(title="moltsim watch")
    text = screen_text(app) + "\n"
    svg_path, text_path = SNAPSHOTS / f"{name}.svg", SNAPSHOTS / f"{name}.txt"
    if UPDATE or not svg_path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        svg_path.write_text(svg)
        text_path.write_text(text)
        if not UPDATE:
            raise AssertionError(f"new snapshot {svg_path}: check it, then run the tests again")
        return
    expected_text = text_path.read_text()
    if text != expected_text:
        diff = "".join(
            difflib.unified_diff(
                expected_text.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=str(text_path), tofile="screen",
            )
        )  # fmt: skip
        raise AssertionError(f"screen {name} changed (make test-snapshot-update):\n{diff}")
    assert svg == svg_path.read_text(), (
        f"screen {name} has the same text but other colours or styles than {svg_path}"
        " (make test-snapshot-update)"
    )
