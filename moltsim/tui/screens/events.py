"""The live event log: every write and refusal from the action ledger, as it happens."""

from __future__ import annotations

import sqlite3
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, RichLog, Static

from moltsim.tui.format import sim_clock
from moltsim.tui.pulse import Pulse
from moltsim.tui.reads import LedgerEvent, ledger_events
from moltsim.tui.screens.base import LiveScreen

MAX_LINES = 5_000
"""Lines kept in the log; older ones scroll away."""
BACKLOG = 200
"""Events shown on opening."""
BATCH = 1_000


class EventsScreen(LiveScreen):
    """The ledger's tail. It follows new events while the view is at the bottom; scrolled up,
    it counts them instead ("N new")."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow", id="events.follow", tooltip="jump to the newest"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.last_id: int | None = None
        self.unseen = 0

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static(Text("Event log (writes and refusals)", style="bold"), classes="screen-title")
        yield Static("", id="new-banner", classes="banner")
        yield RichLog(id="events", max_lines=MAX_LINES, wrap=False, markup=False, auto_scroll=False)
        yield Footer()

    def load(self) -> None:
        after = self.last_id

        def read(conn: sqlite3.Connection) -> list[LedgerEvent]:
            if after is None:
                return ledger_events(conn, limit=BACKLOG)
            return ledger_events(conn, after_id=after, limit=BATCH)

        self.fetcher.fetch("events", read, self._show)

    def pulse_arrived(self, pulse: Pulse) -> None:
        if self.last_id is not None and pulse.max_action_id > self.last_id:
            self.load()

    def _show(self, events: list[LedgerEvent]) -> None:
        log = self.query_one("#events", RichLog)
        at_end = log.scroll_offset.y >= log.max_scroll_y
        if self.last_id is None and not events:
            log.write(Text("No events yet.", style="dim"))
        for event in events:
            log.write(_line(event), scroll_end=False)
        if events:
            self.last_id = events[-1].id
        elif self.last_id is None:
            self.last_id = 0
        if at_end:
            log.scroll_end(animate=False)
            self.unseen = 0
        else:
            self.unseen += len(events)
        self._banner()

    def _banner(self) -> None:
        banner = self.query_one("#new-banner", Static)
        banner.display = bool(self.unseen)
        if self.unseen:
            banner.update(f"{self.unseen} new events below · press End to follow")

    def action_follow(self) -> None:
        self.query_one("#events", RichLog).scroll_end(animate=False)
        self.unseen = 0
        self._banner()


def _line(event: LedgerEvent) -> Text:
    ok = event.outcome == "ok"
    text = Text(no_wrap=True)
    text.append(sim_clock(event.sim_time)[5:], style="dim")
    text.append(f"  {('@' + event.agent) if event.agent else '-':<20} ", style="cyan")
    text.append(f"{event.type:<15}", style="bold" if ok else "bold red")
    if not ok:
        text.append(f" {event.outcome}", style="red")
    text.append(f"  {event.summary}")
    return text
