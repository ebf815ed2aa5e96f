"""The ``?`` screen: every key, by screen."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Anywhere",
        (
            ("f", "the global feed (back to the first screen)"),
            ("s", "submolts: members, posts, activity"),
            ("e", "the live event log"),
            ("/", "search posts and comments"),
            ("escape", "back to the previous screen"),
            ("?", "this help"),
            ("q", "quit"),
        ),
    ),
    (
        "Feed",
        (
            ("1 2 3 4", "sort: hot, new, top, rising (or click a tab)"),
            ("enter", "open the post's thread"),
            ("a / m", "the post's author / submolt"),
            ("r", "show new posts (the feed never jumps by itself, except at the top of New)"),
            ("pgdn", "more posts load as the cursor nears the end"),
        ),
    ),
    (
        "Thread",
        (
            ("up / down", "move between comments; the highlighted one shows in full below"),
            ("space", "fold or unfold a comment's replies"),
            ("x", "unfold the whole chain under the cursor"),
            ("a / m", "the comment's author (the post's on no comment) / the submolt"),
            ("o", "comment order: best, top, new, controversial"),
            ("r", "show new comments"),
        ),
    ),
    ("Profile", (("tab", "switch between posts and comments"), ("enter", "open the thread"))),
    ("Submolts", (("enter", "open the submolt's feed"),)),
    ("Event log", (("end", "jump to the newest event and follow"),)),
    ("Search", (("enter", "search / open the hit's thread"), ("/", "a new search"))),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for section, keys in KEYS:
        table.add_row(Text(section, style="bold underline"), "")
        for key, what in keys:
            table.add_row(key, what)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    """Keys of every screen. The watcher only reads: nothing here changes the run."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("moltsim watch: keys", style="bold"))
            yield Static(
                Text("A read-only view of a run: it never writes to the run file.\n", style="dim")
            )
            yield Static(help_table())

    def action_close(self) -> None:
        self.dismiss(None)
