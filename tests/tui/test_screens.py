"""Pilot tests that walk every screen of the watcher over the fixture run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, RichLog, Static, Tree

from moltsim.tui.app import WatchApp
from moltsim.tui.pulse import Pulse
from moltsim.tui.screens.events import EventsScreen
from moltsim.tui.screens.feed import FeedScreen
from moltsim.tui.screens.help import HelpScreen
from moltsim.tui.screens.profile import ProfileScreen
from moltsim.tui.screens.search import SearchScreen
from moltsim.tui.screens.submolts import SubmoltsScreen
from moltsim.tui.screens.thread import ThreadScreen
from moltsim.tui.widgets.run_header import render_pulse
from tests.tui.conftest import SIZE, settle
from tests.tui.snap import screen_text


@pytest.fixture
def app(fixture_run: Path) -> Iterator[WatchApp]:
    watcher = WatchApp(fixture_run, poll_s=None)
    yield watcher
    watcher.close()


def titles(screen: FeedScreen) -> list[str]:
    return [post.title for post in screen.posts.values()]


def rows(table: DataTable[Any]) -> list[str]:
    return [str(key.value) for key in table.rows]


async def test_feed_sorts_switch_by_key_and_by_click(app: WatchApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        feed = app.screen
        assert isinstance(feed, FeedScreen) and feed.sort == "hot"
        assert len(feed.posts) == 12
        assert "Global feed" in screen_text(app)
        await pilot.press("3")
        await settle(pilot, app)
        assert str(feed.sort) == "top"
        assert titles(feed)[:2] == [
            "Why lobsters moult in the dark",
            "A long essay on kelp forests",
        ]
        assert titles(feed)[-1] == "Tides are overrated, change my mind"
        await pilot.press("2")
        await settle(pilot, app)
        assert titles(feed)[0] == "The best tide tables, ranked"  # the newest
        assert rows(feed.table) == [str(i) for i in range(12, 0, -1)]
        await pilot.click("#sort-rising")
        await settle(pilot, app)
        assert str(feed.sort) == "rising"
        assert titles(feed)[0] == "The best tide tables, ranked"  # young and not voted down
        await pilot.press("1")
        await settle(pilot, app)
        assert feed.sort == "hot"
        assert feed.table.row_count == 12


async def test_walk_thread_comment_chain_profile_and_back(app: WatchApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "enter")  # the top post: the one with the comment chain
        await settle(pilot, app)
        thread = app.screen
        assert isinstance(thread, ThreadScreen) and thread.post_id == 1
        tree = app.screen.query_one("#comments", Tree)
        top = list(tree.root.children)
        assert [node.data.author for node in top if node.data] == ["bob", "dave"]
        chain = top[0]
        assert not chain.is_expanded  # replies start folded
        await pilot.press("space")
        assert chain.is_expanded and not chain.children[0].is_expanded
        await pilot.press("x")  # unfold the whole chain
        node = chain
        depth = 0
        while node.children:
            assert node.is_expanded
            node = node.children[0]
            depth += 1
        assert depth == 3 and node.data is not None
        assert node.data.body == "Citation needed for spring."
        await pilot.press("down")
        detail = str(app.screen.query_one("#comment-detail", Static).render())
        assert "Not only predators: rivals too." in detail and "@erin" in detail
        await pilot.press("a")  # the highlighted comment's author
        await settle(pilot, app)
        profile = app.screen
        assert isinstance(profile, ProfileScreen) and profile.handle == "erin"
        text = screen_text(app)
        assert "Erin Current" in text and "interests: essays, kelp" in text
        assert "followers  @alice" in text
        assert profile.query_one("#profile-posts", DataTable).row_count == 2
        await pilot.press("enter")  # erin's newest post
        await settle(pilot, app)
        assert isinstance(app.screen, ThreadScreen) and app.screen.post_id == 8
        await pilot.press("escape", "escape", "escape")
        assert isinstance(app.screen, FeedScreen) and len(app.screen_stack) == 1
        await pilot.press("escape")  # nothing under the first screen
        assert isinstance(app.screen, FeedScreen)


async def test_submolts_open_a_submolt_feed(app: WatchApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("s")
        await settle(pilot, app)
        assert isinstance(app.screen, SubmoltsScreen)
        table = app.screen.query_one("#submolts", DataTable)
        assert rows(table) == ["general", "lobsters", "shells"]
        assert app.screen.rows["lobsters"].posts == 4
        await pilot.press("down", "enter")
        await settle(pilot, app)
        feed = app.screen
        assert isinstance(feed, FeedScreen) and feed.submolt == "lobsters"
        assert {post.submolt for post in feed.posts.values()} == {"lobsters"}
        assert len(feed.posts) == 4
        assert "Claws, shells, moulting." in screen_text(app)
        await pilot.press("a")  # the highlighted post's author
        await settle(pilot, app)
        assert isinstance(app.screen, ProfileScreen)
        await pilot.press("f")  # straight back to the global feed
        assert len(app.screen_stack) == 1 and app.screen.submolt is None


async def test_event_log_search_and_help(app: WatchApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("e")
        await settle(pilot, app)
        assert isinstance(app.screen, EventsScreen)
        log = app.screen.query_one("#events", RichLog)
        lines = [strip.text for strip in log.lines]
        assert any("not_found" in line and "m/nowhere" in line for line in lines)
        assert any("llm_call" in line and "1200+300 tokens" in line for line in lines)
        assert not any(" feed " in line for line in lines)  # queries are not events
        await pilot.press("slash")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"moult", "enter")
        await settle(pilot, app)
        hits = app.screen.query_one("#hits", DataTable)
        assert hits.row_count == 2
        assert "2 matches for 'moult'" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, ThreadScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "the live event log" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, ThreadScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_a_run_with_no_posts_says_so(tmp_path: Path) -> None:
    from moltsim.engine.service import Engine

    engine = await Engine.open(tmp_path / "run.db")
    try:
        await engine.register_agent("alice", bytes(32), 1_800_000_000.0)
        await engine.seed_submolt("general", 1_800_000_000.0)
    finally:
        await engine.close()
    app = WatchApp(tmp_path, poll_s=None)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            text = screen_text(app)
            assert "No posts yet in this run" in text
            assert "1 agents" in text or "1 agent" in text
            await pilot.press("e")
            await settle(pilot, app)
            assert "@alice joined" in screen_text(app)
    finally:
        app.close()


async def test_unknown_post_and_agent_say_so(app: WatchApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        app.push_screen(ThreadScreen(999))
        await settle(pilot, app)
        assert "There is no post #999 in this run." in screen_text(app)
        app.push_screen(ProfileScreen("nobody"))
        await settle(pilot, app)
        assert "There is no agent @nobody in this run." in screen_text(app)


async def test_the_feed_reads_its_next_page_near_the_end(tmp_path: Path) -> None:
    import random

    from bench import feed_reads
    from moltsim.tui.screens.feed import PAGE

    path = tmp_path / "run.db"
    await feed_reads.create(path)
    feed_reads.grow(path, 1, 2 * PAGE + 31, random.Random(3))
    app = WatchApp(path, poll_s=None)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            feed = app.screen
            assert isinstance(feed, FeedScreen) and len(feed.posts) == PAGE
            await pilot.press("ctrl+end")
            await settle(pilot, app)
            assert len(feed.posts) == 2 * PAGE
            await pilot.press("ctrl+end")
            await settle(pilot, app)
            assert len(feed.posts) == 2 * PAGE + 30 and feed.exhausted
            assert feed.table.row_count == len(feed.posts)  # no post twice
    finally:
        app.close()


def test_the_header_tells_how_the_model_is_doing() -> None:
    pulse = Pulse(
        run_name="llm", sim_time=1_769_587_200.0, state="running", agents=6, agents_online=6,
        online_measured=True, actions_per_sim_hour=10, actions=100, refusals=2,
        prompt_tokens=9_000, completion_tokens=300, cost_usd=None, llm_calls=12, llm_failed=3,
        llm_server_p50_ms=2_150.0, max_post_id=1, max_comment_id=1, max_action_id=100,
    )  # fmt: skip
    first = render_pulse(pulse).plain.splitlines()[0]
    assert first.endswith("running · LLM 12 calls, 3 failed, p50 2.1 s")
    offline = render_pulse(replace(pulse, llm_calls=0, llm_failed=0)).plain
    assert "LLM" not in offline, "a run without model calls says nothing of them"
