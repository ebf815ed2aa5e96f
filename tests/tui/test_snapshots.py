"""Snapshots of the main screens over the fixture run (``make test-snapshot-update`` after a
deliberate change)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moltsim.tui.app import WatchApp
from tests.tui.conftest import SIZE, settle
from tests.tui.snap import assert_snapshot

WALKS: dict[str, tuple[str, ...]] = {
    "feed_hot": (),
    "feed_top": ("3",),
    "thread": ("3", "enter", "x", "down"),
    "profile": ("3", "enter", "a"),
    "submolts": ("s",),
    "submolt_feed": ("s", "enter"),
    "events": ("e",),
    "search": ("slash", *"moult", "enter"),
    "help": ("question_mark",),
}


@pytest.fixture
def app(fixture_run: Path) -> Iterator[WatchApp]:
    watcher = WatchApp(fixture_run, poll_s=None)
    yield watcher
    watcher.close()


@pytest.mark.parametrize("name", list(WALKS))
async def test_screen_snapshot(app: WatchApp, name: str) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        for key in WALKS[name]:
            await pilot.press(key)
            await settle(pilot, app)
        assert_snapshot(app, name)
