"""``moltsim watch``: a read-only, live terminal view of a run.

The app opens the run file with ``mode=ro`` (and ``query_only``), polls it for the run header
a few times a second, and tells the screen on top what changed. Every query runs in a thread
worker; widgets are touched only by handlers on the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker

from moltsim.tui.fetch import Fetcher
from moltsim.tui.messages import OpenFeed, OpenProfile, OpenThread
from moltsim.tui.observer import follow_events, observer_accounts
from moltsim.tui.pulse import Pulse
from moltsim.tui.screens.base import LiveScreen
from moltsim.tui.screens.events import EventsScreen
from moltsim.tui.screens.feed import FeedScreen
from moltsim.tui.screens.help import HelpScreen
from moltsim.tui.screens.profile import ProfileScreen
from moltsim.tui.screens.search import SearchScreen
from moltsim.tui.screens.submolts import SubmoltsScreen
from moltsim.tui.screens.thread import ThreadScreen
from moltsim.tui.source import RunSource
from moltsim.wire.connection import BrokerAddress

POLL_S = 0.5
"""Seconds between the end of one poll of the run file and the start of the next."""


class WatchApp(App[None]):
    """The watcher. ``poll_s=None`` reads the run once and does not follow it."""

    CSS_PATH = "app.tcss"
    TITLE = "moltsim watch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="leave the watcher"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="every key"),
        Binding("f", "feed", "Feed", id="app.feed", tooltip="the global feed"),
        Binding("s", "submolts", "Submolts", id="app.submolts", tooltip="all submolts"),
        Binding("e", "events", "Events", id="app.events", tooltip="the live event log"),
        Binding("slash", "search", "Search", id="app.search", tooltip="search posts, comments"),
    ]

    def __init__(
        self,
        run: str | Path,
        *,
        poll_s: float | None = POLL_S,
        events: BrokerAddress | None = None,
    ) -> None:
        if poll_s is not None and not poll_s > 0:
            raise ValueError(f"poll_s is a positive number of seconds or None, not {poll_s!r}")
        super().__init__()
        self._accounts = None if events is None else observer_accounts(run)
        self.source = RunSource(run)
        self.events = events
        """A broker whose ``events`` topic makes the app read at once (besides polling)."""
        self.events_seen = 0
        """Messages received on the ``events`` topic."""
        self._broker_up: bool | None = None
        self.poll_s = poll_s
        self.pulse: Pulse | None = None
        """The run header as last read."""
        self.polls = 0
        """How many polls have finished (tests wait on it)."""
        self.fetcher = Fetcher(self, lane="header")
        self._timer: Timer | None = None

    def get_default_screen(self) -> Screen[None]:
        return FeedScreen()

    def on_mount(self) -> None:
        self.poll()
        if self.events is not None and self._accounts is not None:
            self.run_worker(
                follow_events(self.events, self._accounts, self._event, self._broker_state),
                name="events", group="events", exclusive=True, exit_on_error=False,
            )  # fmt: skip

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def poll(self) -> None:
        """Read the run header; the next poll is armed only when this one has ended, so polls
        never overlap however slow the file is."""
        self.fetcher.fetch("pulse", self.source.header.read, self._pulsed, after=self._rearm)

    def _rearm(self) -> None:
        self.polls += 1
        if self._timer is not None:
            self._timer.stop()  # one chain of polls, however many polls events asked for
            self._timer = None
        if self.poll_s is not None and self.is_running:
            self._timer = self.set_timer(self.poll_s, self.poll)

    def _event(self) -> None:
        """Something was committed: read now (a poll already running is followed by one)."""
        self.events_seen += 1
        self.poll()

    def _broker_state(self, up: bool) -> None:
        """Say when the events subscription is lost (and when it is back), once each time."""
        if up == self._broker_up:
            return
        was, self._broker_up = self._broker_up, up
        where = self.events.url if self.events else "?"
        if not up:
            self.notify(
                f"no events from the broker at {where}; retrying (the run file is still polled)",
                severity="warning",
            )
        elif was is False:
            self.notify(f"following events from the broker at {where} again")

    def _pulsed(self, pulse: Pulse) -> None:
        self.pulse = pulse
        if not self.screen_stack:  # the app is closing
            return
        screen = self.screen
        if isinstance(screen, LiveScreen):
            screen.apply_pulse(pulse)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.fetcher.handle(event)

    # --- navigation -----------------------------------------------------------------------

    def on_open_thread(self, message: OpenThread) -> None:
        self.push_screen(ThreadScreen(message.post_id))

    def on_open_profile(self, message: OpenProfile) -> None:
        self.push_screen(ProfileScreen(message.handle))

    def on_open_feed(self, message: OpenFeed) -> None:
        if message.submolt is None:
            self.action_feed()
        else:
            self.push_screen(FeedScreen(message.submolt))

    def _push_once(self, screen_type: type[LiveScreen]) -> None:
        if not isinstance(self.screen, screen_type):
            self.push_screen(screen_type())

    def action_feed(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_submolts(self) -> None:
        self._push_once(SubmoltsScreen)

    def action_events(self) -> None:
        self._push_once(EventsScreen)

    def action_search(self) -> None:
        self._push_once(SearchScreen)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def close(self) -> None:
        """Close the run file (after the app has exited)."""
        self.source.close()


def watch(
    run: str | Path, *, poll_s: float | None = POLL_S, events: BrokerAddress | None = None
) -> int:
    """Run the watcher on a terminal until the user quits."""
    app = WatchApp(run, poll_s=poll_s, events=events)
    try:
        app.run()
    finally:
        app.close()
    return 0
