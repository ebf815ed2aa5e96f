"""A consistent view of a run file, even one an engine is still writing.

Everything an export, a verification or a report reads goes through one connection inside one
read transaction: under WAL, SQLite then answers every query from the same snapshot, so
records added while the export runs are left out entirely (never half of a thread).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from moltsim.export.options import ExportError
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFileError


class Snapshot:
    """One read transaction over a run file; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        conn.execute("BEGIN")
        self.meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM run_meta"))
        self.handles: dict[int, str] = dict(conn.execute("SELECT id, handle FROM agents"))
        self.objectors: dict[int, str] = dict(
            conn.execute("SELECT id, handle FROM agents WHERE objects_to_training != 0")
        )
        self.tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }

    @classmethod
    def open(cls, run: str | Path) -> Snapshot:
        """Open ``run`` (a run folder or its ``run.db``) read-only and pin a snapshot."""
        path = Path(run)
        try:
            conn = open_readonly(path)
        except RunFileError as exc:
            raise ExportError(str(exc)) from exc
        try:
            return cls(conn, path / "run.db" if path.is_dir() else path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ExportError(f"{path} is not a readable moltsim run file ({exc})") from exc

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql``, streamed (the cursor itself: no Python layer per row)."""
        return self.conn.execute(sql, params)

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def seed(self) -> int | None:
        value = self.meta.get("seed")
        return None if value is None else int(value)

    def clock(self) -> dict[str, Any]:
        try:
            value = json.loads(self.meta.get("clock", "{}"))
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def brains(self) -> dict[str, str]:
        """Each agent's brain, by handle, from the run folder's pool files when they exist.

        The run file itself does not record brains; without pool files, an agent that made
        LLM calls is ``openai`` and any other ``offline``."""
        brains: dict[str, str] = {}
        pools = self.path.parent / "pools"
        if pools.is_dir():
            for file in sorted(pools.glob("*.json")):
                try:
                    data = json.loads(file.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                for agent in data.get("agents", []) if isinstance(data, dict) else []:
                    if isinstance(agent, dict) and isinstance(agent.get("handle"), str):
                        brains[agent["handle"]] = str(agent.get("brain") or "offline")
        if "llm_calls" in self.tables:
            for (agent_id,) in self.rows("SELECT DISTINCT agent_id FROM llm_calls"):
                handle = self.handles.get(agent_id)
                if handle is not None:
                    brains.setdefault(handle, "openai")
        return brains

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
