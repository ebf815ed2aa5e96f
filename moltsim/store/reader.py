"""Read-only access to a run file, for the engine's queries, the TUI and exports.

Readers open the file with ``mode=ro``: they can never write, whatever code runs on them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from moltsim import SCHEMA_VERSION, __version__
from moltsim.store.runfile import RunFileError

T = TypeVar("T")


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a run file; raises :class:`RunFileError` with a clear reason."""
    path = Path(path)
    if path.is_dir():
        path = path / "run.db"
    if not path.exists():
        raise RunFileError(f"no run file at {path}")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        version = conn.execute("SELECT value FROM run_meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise RunFileError(f"{path} is not a moltsim run file ({exc})") from exc
    if version is None:
        conn.close()
        raise RunFileError(f"{path} is not a moltsim run file (no schema version)")
    if int(version[0]) > SCHEMA_VERSION:
        conn.close()
        raise RunFileError(
            f"{path} was written by a newer moltsim (schema {version[0]});"
            f" this is moltsim {__version__} (schema {SCHEMA_VERSION}): upgrade to read it"
        )
    return conn


class ReadPool:
    """A few threads, each with its own read-only connection, for queries off the event loop.

    Queries never run on the writer's connection, so reads never delay commits.
    """

    def __init__(self, path: str | Path, size: int = 2) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="moltsim-read")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_readonly(self.path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query(conn)`` on a reader thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: query(self._connection()))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
