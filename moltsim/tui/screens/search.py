"""Full-text search over posts and comments (best match first)."""

from __future__ import annotations

import re
import sqlite3
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from moltsim.domain.entities import SearchHit
from moltsim.store import queries
from moltsim.tui.format import age, count, one_line
from moltsim.tui.messages import OpenProfile, OpenThread
from moltsim.tui.reads import sim_now
from moltsim.tui.screens.base import LiveScreen

LIMIT = 50
_MATCH = re.compile(r"\[([^\]]*)\]")


def snippet(text: str) -> Text:
    """A search snippet with its matched words (``[word]``) in bold."""
    out = Text()
    last = 0
    for match in _MATCH.finditer(text):
        out.append(text[last : match.start()])
        out.append(match.group(1), style="bold yellow")
        last = match.end()
    out.append(text[last:])
    return out


class SearchScreen(LiveScreen):
    """Type words and press enter; every word must match. Enter on a hit opens its thread."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_input", "New search", id="search.input", tooltip="type a query"),
        Binding("a", "author", "Author", id="search.author", tooltip="the hit author's profile"),
    ]
    AUTO_FOCUS = "#query"

    def __init__(self, query: str = "") -> None:
        super().__init__()
        self.initial = query
        self.hits: dict[str, SearchHit] = {}

    def compose(self) -> ComposeResult:
        yield self.header()
        yield Input(
            self.initial, placeholder="search posts and comments", id="query", select_on_focus=False
        )
        yield Static("", id="search-status", classes="section")
        table: DataTable[str | Text] = DataTable(id="hits", cursor_type="row", zebra_stripes=True)
        table.add_columns("kind", "score", "post", "match", "author", "submolt", "age")
        yield table
        yield Footer()

    def load(self) -> None:
        self.query_one("#query", Input).cursor_blink = False
        if self.initial:
            self.search(self.initial)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search(event.value)

    def search(self, text: str) -> None:
        text = text.strip()
        status = self.query_one("#search-status", Static)
        if not queries.fts_query(text):
            status.update("Type one or more words, then press enter.")
            return
        status.update(f"Searching for {text!r}…")

        def read(conn: sqlite3.Connection) -> tuple[list[SearchHit], float | None]:
            return queries.search(conn, text, limit=LIMIT), sim_now(conn)

        self.fetcher.fetch("search", read, lambda found: self._show(text, *found))

    def _show(self, text: str, hits: list[SearchHit], now: float | None) -> None:
        table = self.query_one("#hits", DataTable)
        with self.app.batch_update():
            table.clear()
            self.hits.clear()
            for hit in hits:
                key = f"{hit.kind}:{hit.id}"
                self.hits[key] = hit
                table.add_row(
                    Text(hit.kind), Text(count(hit.score), justify="right"),
                    Text(one_line(hit.title, 40)), snippet(one_line(hit.snippet, 60)),
                    Text(f"@{hit.author}" if hit.author else ""), Text(hit.submolt),
                    Text(age(hit.created_at, now)), key=key,
                )  # fmt: skip
        found = f"{len(hits)} match{'es' if len(hits) != 1 else ''}" if hits else "No matches"
        self.query_one("#search-status", Static).update(f"{found} for {text!r}")
        if hits:
            table.focus()

    def _highlighted(self) -> SearchHit | None:
        table = self.query_one("#hits", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return None if key.value is None else self.hits.get(key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        hit = self.hits.get(event.row_key.value or "")
        if hit is not None:
            self.post_message(OpenThread(hit.post_id))

    def action_focus_input(self) -> None:
        self.query_one("#query", Input).focus()

    def action_author(self) -> None:
        hit = self._highlighted()
        if hit is not None and hit.author:
            self.post_message(OpenProfile(hit.author))
