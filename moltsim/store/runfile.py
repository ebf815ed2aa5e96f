"""The run file's single writer: migrations, pragmas, group commits and checkpoints.

Exactly one :class:`RunFile` is open on a run file at a time (the engine). Everyone else reads
through :func:`moltsim.store.reader.open_readonly`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite

from moltsim import SCHEMA_VERSION, __version__
from moltsim.store.batch import Statement
from moltsim.store.schema import MIGRATIONS

WRITER_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # An acknowledged commit survives a crash of the process (not of the OS) with NORMAL.
    "PRAGMA synchronous = NORMAL",
    "PRAGMA journal_size_limit = 67108864",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
    # Commits never checkpoint inline: a checkpointer on its own connection does (see below).
    "PRAGMA wal_autocheckpoint = 0",
)


log = logging.getLogger("moltsim.store")

WAL_RESTART_BYTES = 128 * 1024 * 1024


class RunFileError(Exception):
    """The run file cannot be used: missing, corrupt, or written by a newer moltsim."""


class DiskFullError(RunFileError):
    """The disk of the run file is full; the run can resume once there is space again."""


class RunFile:
    """The writer connection of one run file."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self._conn = conn
        self._checkpointer: asyncio.Task[None] | None = None
        self.checkpoint_interval_s = 1.0

    @classmethod
    async def open(cls, path: str | Path, *, create: bool = True) -> RunFile:
        """Open (and with ``create``, make) a run file, and bring its schema up to date."""
        path = Path(path)
        if not create and not path.exists():
            raise RunFileError(f"no run file at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in WRITER_PRAGMAS:
                await conn.execute(pragma)
            runfile = cls(path, conn)
            await runfile._migrate()
        except BaseException:
            await conn.close()
            raise
        return runfile

    async def _migrate(self) -> None:
        conn = self._conn
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with conn.execute("SELECT name FROM schema_migrations") as cursor:
            applied = {row[0] async for row in cursor}
        known = {name for name, _ in MIGRATIONS}
        if unknown := applied - known:
            raise RunFileError(
                f"{self.path} was written by a newer moltsim (migrations {sorted(unknown)});"
                f" this is moltsim {__version__}"
            )
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                    (name, time.time()),
                )
                await conn.execute(
                    "INSERT OR REPLACE INTO run_meta (key, value) VALUES"
                    " ('schema_version', ?), ('moltsim_version', ?)",
                    (str(SCHEMA_VERSION), __version__),
                )
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    async def write(self, statements: list[Statement]) -> None:
        """Apply one group of statements as a single transaction."""
        if not statements:
            return
        conn = self._conn
        try:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    await conn.executemany(sql, rows)
                await conn.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a second
                # ROLLBACK would fail and hide the error that matters.
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise DiskFullError(
                    f"no space left for the run file {self.path}: nothing after the last"
                    " acknowledged action was written; free some space, then resume the run"
                ) from exc
            raise
        if self._checkpointer is None:
            self._checkpointer = asyncio.create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        """Checkpoint on a connection (and thread) of its own, so commits never wait for one."""
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout = 200")
            while True:
                await asyncio.sleep(self.checkpoint_interval_s)
                try:
                    await self.checkpoint(conn)
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            await conn.close()

    async def checkpoint(self, conn: aiosqlite.Connection | None = None) -> None:
        """Fold the WAL back into the database so that busy readers cannot make it grow forever.

        A passive checkpoint never waits; only when the WAL has grown large anyway (readers kept
        it pinned) does a RESTART wait, briefly, for readers to move to the new snapshot."""
        conn = conn or self._conn
        await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        wal = self.path.with_name(self.path.name + "-wal")
        with contextlib.suppress(OSError):
            if wal.stat().st_size > WAL_RESTART_BYTES:
                await conn.execute("PRAGMA wal_checkpoint(RESTART)")

    async def set_meta(self, **values: Any) -> None:
        rows = [
            (key, value if isinstance(value, str) else json.dumps(value))
            for key, value in values.items()
        ]
        await self._conn.executemany(
            "INSERT OR REPLACE INTO run_meta (key, value) VALUES (?, ?)", rows
        )

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("final checkpoint failed (the WAL keeps the data): %s", exc)
        finally:
            await self._conn.close()


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (each runs inside the migration's transaction)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
