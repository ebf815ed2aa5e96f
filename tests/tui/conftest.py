"""Fixtures of the watcher's tests: a deterministic finished run, copies of it to write to,
and a way to wait until the app has read everything it asked for."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot

from moltsim.tui.app import WatchApp
from moltsim.tui.screens.base import LiveScreen
from tests.tui.runs import build_fixture_run

SIZE = (120, 40)


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished fixture run's folder (shared: never write to it; copy it with ``run_copy``)."""
    folder = tmp_path_factory.mktemp("fixture") / "run"
    asyncio.run(build_fixture_run(folder))
    return folder


@pytest.fixture
def run_copy(fixture_run: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture run's folder."""
    folder = tmp_path / "run"
    shutil.copytree(fixture_run, folder)
    return folder


async def settle(pilot: Pilot[None], app: WatchApp, *, within: float = 10.0) -> None:
    """Wait until no query of the app or of its screens is running or waiting, and the
    results have been drawn."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await pilot.pause()
        busy = app.fetcher.busy() or any(
            screen.fetcher.busy() for screen in app.screen_stack if isinstance(screen, LiveScreen)
        )
        if not busy and app.polls > 0:
            break
        if loop.time() > deadline:
            raise TimeoutError("the watcher kept reading for too long")
        await asyncio.sleep(0.01)
    await pilot.pause()
