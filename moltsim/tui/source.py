"""The watcher's read-only connections to a run file, opened ``mode=ro`` and ``query_only``,
each used by one query at a time.

Nothing in the watcher's reads imports Textual: the queries (:mod:`moltsim.tui.pulse`,
:mod:`moltsim.tui.reads`, :mod:`moltsim.store.queries`) are plain functions of a connection, so
they are tested, and benchmarked, without a terminal.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from moltsim.store.reader import open_readonly
from moltsim.tui.pulse import HeaderReader

T = TypeVar("T")


class RunSource:
    """Read-only connections to a run file: one for the screens' queries, one for the run
    header's polls, so a slow header read never delays a screen.

    Queries come from worker threads; a lock per connection keeps its queries in turn.
    """

    LANES = ("screens", "header")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lanes: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}
        try:
            for lane in self.LANES:
                conn = open_readonly(self.path)
                self._lanes[lane] = (conn, threading.Lock())
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            self.close()
            raise
        self.header = HeaderReader()

    @property
    def connections(self) -> list[sqlite3.Connection]:
        """The connections themselves (for checks that they cannot write)."""
        return [conn for conn, _ in self._lanes.values()]

    def read(self, query: Callable[[sqlite3.Connection], T], lane: str = "screens") -> T:
        """Run ``query(conn)`` inside one read transaction (one consistent snapshot)."""
        conn, lock = self._lanes[lane]
        with lock:
            conn.execute("BEGIN")
            try:
                return query(conn)
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        for conn, lock in self._lanes.values():
            with lock:
                conn.close()
        self._lanes.clear()
