"""What every watcher screen shares: the run header, the footer, queries in workers, and
live updates from the app's poll."""

from __future__ import annotations

import contextlib
from typing import ClassVar, cast

from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.worker import Worker

from moltsim.tui.fetch import Fetcher, Watcher
from moltsim.tui.pulse import Pulse
from moltsim.tui.widgets.run_header import RunHeader


class LiveScreen(Screen[None]):
    """A screen of the watcher. Subclasses load in :meth:`load` and follow the run in
    :meth:`pulse_arrived`; only handlers on the event loop touch widgets."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape", "back", "Back", id="screen.back", tooltip="return to the previous screen"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.fetcher = Fetcher(self)

    @property
    def watch_app(self) -> Watcher:
        return cast(Watcher, self.app)

    def header(self) -> RunHeader:
        return RunHeader(self.watch_app.pulse)

    def on_mount(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        if self.watch_app.pulse is not None:
            self.apply_pulse(self.watch_app.pulse)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.fetcher.handle(event)

    def apply_pulse(self, pulse: Pulse) -> None:
        """The app read the run header again: redraw it, then let the screen follow the run."""
        for header in self.query(RunHeader):
            header.show(pulse)
        with contextlib.suppress(NoMatches):  # the screen is closing: its widgets are gone
            self.pulse_arrived(pulse)

    def load(self) -> None:
        """Start reading what the screen shows."""

    def pulse_arrived(self, pulse: Pulse) -> None:
        """Follow the run: note what is new without moving what the user reads."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return len(self.app.screen_stack) > 1
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
