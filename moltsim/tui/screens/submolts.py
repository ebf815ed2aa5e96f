"""Every submolt with its members, posts and recent activity, counted live."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from moltsim.tui.format import count, one_line
from moltsim.tui.messages import OpenFeed
from moltsim.tui.pulse import Pulse
from moltsim.tui.reads import SubmoltRow, submolt_rows
from moltsim.tui.screens.base import LiveScreen


class SubmoltsScreen(LiveScreen):
    """Submolts, busiest first; counts change in place, new submolts join at the end."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_feed", "Open", id="submolts.open", tooltip="the submolt's feed"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, SubmoltRow] = {}
        self._last_action_id = -1

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Static(Text("Submolts", style="bold"), classes="screen-title")
        table: DataTable[str | Text] = DataTable(
            id="submolts", cursor_type="row", zebra_stripes=True
        )
        table.add_column("submolt", key="name")
        table.add_column("members", key="members")
        table.add_column("posts", key="posts")
        table.add_column("posts/sim-day", key="activity")
        table.add_column("owner", key="owner")
        table.add_column("title", key="title")
        yield table
        yield Static("", id="empty", classes="empty")
        yield Footer()

    def load(self) -> None:
        self.fetcher.fetch("submolts", submolt_rows, self._show)

    def pulse_arrived(self, pulse: Pulse) -> None:
        if pulse.max_action_id != self._last_action_id:
            self._last_action_id = pulse.max_action_id
            self.load()

    def _cells(self, row: SubmoltRow) -> tuple[Text, ...]:
        return (
            Text(f"m/{row.name}"),
            Text(count(row.members), justify="right"),
            Text(count(row.posts), justify="right"),
            Text(count(row.posts_last_day), justify="right"),
            Text(f"@{row.owner}" if row.owner else ""),
            Text(one_line(row.title, 60)),
        )

    def _show(self, rows: list[SubmoltRow]) -> None:
        table = self.query_one("#submolts", DataTable)
        keys = ("name", "members", "posts", "activity", "owner", "title")
        with self.app.batch_update():
            for row in rows:
                old = self.rows.get(row.name)
                self.rows[row.name] = row
                if old is None:
                    table.add_row(*self._cells(row), key=row.name)
                elif old != row:
                    for key, cell in zip(keys, self._cells(row), strict=True):
                        table.update_cell(row.name, key, cell)
        empty = self.query_one("#empty", Static)
        empty.display = not self.rows
        if not self.rows:
            empty.update("No submolts yet.")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenFeed(event.row_key.value))

    def action_open_feed(self) -> None:
        table = self.query_one("#submolts", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            if key.value is not None:
                self.post_message(OpenFeed(key.value))
