"""The watcher follows a run that another process keeps writing: new posts, comments and
votes show up without moving what the user reads, and the app never holds a connection
that could write."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Static, Tree

from moltsim.tui.app import POLL_S, WatchApp
from moltsim.tui.pulse import Pulse
from moltsim.tui.screens.events import EventsScreen
from moltsim.tui.screens.feed import FeedScreen
from moltsim.tui.screens.thread import ThreadScreen
from tests.tui.conftest import SIZE, settle
from tests.tui.snap import screen_text

REPO = Path(__file__).resolve().parents[2]


class Writer:
    """The writer subprocess (``tests/tui/writer.py``)."""

    def __init__(self, run: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tui.writer", str(run / "run.db"), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    async def finish(self, within: float = 30.0) -> float:
        """Wait for the writer to end; returns the wall time it ended at."""
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "the writer did not finish"
            await asyncio.sleep(0.02)
        ended = time.monotonic()
        _, err = self.proc.communicate()
        assert self.proc.returncode == 0, err
        return ended

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
async def app(run_copy: Path) -> AsyncIterator[WatchApp]:
    watcher = WatchApp(run_copy)  # polls at the shipped interval
    yield watcher
    watcher.close()


async def wait_for(pilot, condition, within: float = 5.0) -> float:
    """Wait until ``condition()`` holds; returns when it did (monotonic seconds)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)
    return time.monotonic()


def banner(app: WatchApp) -> str:
    widget = app.screen.query_one("#new-banner", Static)
    return str(widget.render()) if widget.display else ""


async def test_new_posts_are_counted_not_pushed_in_and_votes_update_in_place(
    app: WatchApp, run_copy: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        feed = app.screen
        assert isinstance(feed, FeedScreen)
        await pilot.press("down", "down", "down")
        reading = feed._highlighted_id()
        before = list(feed.table.rows)
        score_before = feed.posts[2].score
        writer = Writer(run_copy, "--posts", "3", "--interval", "0.05", "--upvote", "2")
        try:
            ended = await writer.finish()
        finally:
            writer.kill()
        seen = await wait_for(pilot, lambda: "3 new posts" in banner(app))
        # Within a poll or two (a second at the shipped interval); slack for a loaded machine.
        assert seen - ended < 2 * POLL_S + 1.5, f"new posts noticed after {seen - ended:.2f} s"
        assert "press r to show" in banner(app)
        await wait_for(pilot, lambda: feed.posts[2].score == score_before + 1)
        assert list(feed.table.rows) == before  # nothing moved
        assert feed._highlighted_id() == reading
        await pilot.press("r")
        await settle(pilot, app)
        assert len(feed.posts) == 15 and banner(app) == ""
        assert {f"Live post {i}" for i in range(3)} <= {p.title for p in feed.posts.values()}
        assert feed._highlighted_id() == reading  # the cursor stayed on the same post


async def test_the_newest_first_feed_follows_new_posts_at_its_top(
    app: WatchApp, run_copy: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("2")
        await settle(pilot, app)
        feed = app.screen
        assert isinstance(feed, FeedScreen)
        writer = Writer(run_copy, "--posts", "2", "--interval", "0.05")
        try:
            await writer.finish()
        finally:
            writer.kill()
        await wait_for(pilot, lambda: "Live post 1" in screen_text(app))
        keys = [k.value for k in feed.table.rows]
        assert [feed.posts[int(k)].title for k in keys[:2] if k] == ["Live post 1", "Live post 0"]
        assert banner(app) == ""


async def test_thread_and_event_log_follow_the_run(app: WatchApp, run_copy: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.push_screen(ThreadScreen(1))
        await settle(pilot, app)
        thread = app.screen
        assert isinstance(thread, ThreadScreen) and thread.thread is not None
        assert thread.thread.total_comments == 5
        tree = thread.query_one("#comments", Tree)
        great = next(n for n in tree.root.children if n.data and n.data.id == 5)
        assert great.data is not None and great.data.score == 0
        args = ("--posts", "2", "--interval", "0.05", "--comment-on", "1", "--upvote-comment", "5")
        writer = Writer(run_copy, *args)
        try:
            await writer.finish()
        finally:
            writer.kill()
        await wait_for(pilot, lambda: "2 new comments" in banner(app))
        await wait_for(pilot, lambda: great.data is not None and great.data.score == 1)
        assert str(great.label).startswith("+1 @dave")  # in place: the tree was not rebuilt
        assert tree.root.children[1] is great
        await pilot.press("r")
        await settle(pilot, app)
        assert thread.thread.total_comments == 7
        await pilot.press("e")
        await settle(pilot, app)
        assert isinstance(app.screen, EventsScreen)
        writer = Writer(run_copy, "--posts", "1", "--prefix", "Latest")
        try:
            await writer.finish()
        finally:
            writer.kill()
        await wait_for(pilot, lambda: "m/general: Latest 0" in screen_text(app))


def open_modes(path: Path) -> list[int]:
    """Access modes (``os.O_RDONLY``...) of this process's open descriptors of ``path``."""
    modes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        if target == str(path.resolve()):
            flags = int(info.split("flags:")[1].split()[0], 8)
            modes.append(flags & os.O_ACCMODE)
    return modes


def cannot_write(conn: sqlite3.Connection) -> bool:
    """Writes fail on ``conn``: refused by ``query_only``, and still refused with it off,
    because the file itself is open read-only (``mode=ro``)."""
    assert conn.execute("PRAGMA query_only").fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO run_meta (key, value) VALUES ('x', 'y')")
    conn.execute("PRAGMA query_only = OFF")
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM posts")
    finally:
        conn.execute("PRAGMA query_only = ON")
    return True


async def test_never_a_writable_connection_while_a_writer_writes(
    app: WatchApp, run_copy: Path
) -> None:
    gaps: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        last = time.monotonic()

        def beat() -> None:
            nonlocal last
            now = time.monotonic()
            gaps.append(now - last)
            last = now

        writer = Writer(run_copy, "--posts", "40", "--interval", "0.03", "--comment-on", "1")
        try:
            app.set_interval(0.02, beat)
            for keys in (("3",), ("enter",), ("x", "escape"), ("s",), ("e",), ("f", "2")):
                await pilot.press(*keys)
                await pilot.pause(0.2)
                # Through the app's own connections (taking their turn like any query):
                for lane in app.source.LANES:
                    assert app.source.read(cannot_write, lane)
                modes = open_modes(run_copy / "run.db")
                assert modes and set(modes) == {os.O_RDONLY}
            await writer.finish()
        finally:
            writer.kill()
        await wait_for(pilot, lambda: "Live post 39" in screen_text(app))
    assert max(gaps) < 0.75, f"the event loop stalled for {max(gaps):.3f} s"


async def test_polls_never_overlap(run_copy: Path) -> None:
    app = WatchApp(run_copy, poll_s=0.001)  # re-armed almost at once
    read = app.source.header.read
    lock = threading.Lock()
    active, most, calls = 0, 0, 0

    def counted(conn: sqlite3.Connection) -> Pulse:
        nonlocal active, most, calls
        with lock:
            active += 1
            calls += 1
            most = max(most, active)
        try:
            time.sleep(0.01)  # a slow file: polls would pile up if they were not re-armed
            return read(conn)
        finally:
            with lock:
                active -= 1

    app.source.header.read = counted  # type: ignore[method-assign]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.polls >= 20)
    finally:
        app.close()
    assert calls >= 20 and most == 1
