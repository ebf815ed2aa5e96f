"""The run file: migrations, journal mode, and the read-only access everyone but the engine uses.

Every test works on a real SQLite file under ``tmp_path``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from moltsim import SCHEMA_VERSION, __version__
from moltsim.engine.service import Engine
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFile, RunFileError
from moltsim.store.schema import MIGRATIONS

T0 = 1_800_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "run.db"


@pytest.fixture
async def runfile(db_path: Path) -> AsyncIterator[RunFile]:
    rf = await RunFile.open(db_path)
    try:
        yield rf
    finally:
        await rf.close()


async def make_runfile(path: Path) -> None:
    """Create a fresh, fully migrated run file at ``path`` and close it."""
    rf = await RunFile.open(path)
    await rf.close()


@contextmanager
def plain(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain read-write sqlite3 connection (to tamper with a file by hand), committed on exit."""
    with closing(sqlite3.connect(path)) as conn, conn:
        yield conn


@contextmanager
def readonly(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_readonly(path)) as conn:
        yield conn


def migrations(path: Path) -> list[tuple[str, float]]:
    with readonly(path) as conn:
        rows = conn.execute("SELECT name, applied_at FROM schema_migrations ORDER BY name")
        return [(str(name), float(at)) for name, at in rows]


# --- migrations ---------------------------------------------------------------------------------


async def test_migrations_are_recorded(db_path: Path) -> None:
    await make_runfile(db_path)

    applied = migrations(db_path)
    assert [name for name, _ in applied] == [name for name, _ in MIGRATIONS]
    assert all(at > 0 for _, at in applied)
    with readonly(db_path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["moltsim_version"] == __version__
    assert {"agents", "posts", "comments", "votes", "actions", "posts_fts"} <= tables


async def test_reopening_does_not_rerun_migrations(db_path: Path) -> None:
    await make_runfile(db_path)
    first = migrations(db_path)
    with plain(db_path) as conn:
        # A migration that ran again would fail on CREATE TABLE, or would lose this row.
        conn.execute("INSERT INTO run_meta (key, value) VALUES ('marker', 'kept')")

    await make_runfile(db_path)
    await make_runfile(db_path)

    assert migrations(db_path) == first
    with readonly(db_path) as conn:
        marker = conn.execute("SELECT value FROM run_meta WHERE key = 'marker'").fetchone()
    assert marker == ("kept",)


async def test_unknown_newer_migration_is_refused(db_path: Path) -> None:
    await make_runfile(db_path)
    with plain(db_path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ('0099_from_the_future', 1.0)"
        )

    with pytest.raises(RunFileError, match="0099_from_the_future") as info:
        await RunFile.open(db_path)
    assert "newer moltsim" in str(info.value)
    with pytest.raises(RunFileError, match="0099_from_the_future"):
        await Engine.open(db_path)
    # Refusing the file left it as it was.
    assert "0099_from_the_future" in [name for name, _ in migrations(db_path)]


async def test_open_without_create_refuses_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "run.db"
    with pytest.raises(RunFileError, match="no run file"):
        await RunFile.open(missing, create=False)
    assert not missing.exists()


async def test_open_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "run.db"
    await make_runfile(path)
    assert path.is_file()


# --- pragmas and writes -------------------------------------------------------------------------


async def test_journal_mode_is_wal(runfile: RunFile, db_path: Path) -> None:
    with readonly(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_journal_mode_stays_wal_after_close(db_path: Path) -> None:
    await make_runfile(db_path)
    with plain(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_write_is_one_transaction(runfile: RunFile, db_path: Path) -> None:
    good = ("INSERT INTO run_meta (key, value) VALUES (?, ?)", [("a", "1"), ("b", "2")])
    bad = ("INSERT INTO no_such_table (x) VALUES (?)", [(1,)])
    with pytest.raises(sqlite3.OperationalError):
        await runfile.write([good, bad])
    with readonly(db_path) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM run_meta WHERE key IN ('a', 'b')").fetchone()[0] == 0
        )

    await runfile.write([good])
    with readonly(db_path) as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM run_meta WHERE key IN ('a', 'b')").fetchone()[0] == 2
        )


async def test_set_meta(runfile: RunFile, db_path: Path) -> None:
    await runfile.set_meta(scenario="demo", seed=42, tags=["x"])
    with readonly(db_path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM run_meta").fetchall())
    assert meta["scenario"] == "demo"
    assert meta["seed"] == "42"
    assert meta["tags"] == '["x"]'


# --- read-only access ---------------------------------------------------------------------------


def test_open_readonly_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"no run file at .*run\.db"):
        open_readonly(tmp_path / "run.db")
    with pytest.raises(RunFileError, match="no run file at"):
        open_readonly(tmp_path)  # a folder without run.db in it
    assert not (tmp_path / "run.db").exists()


def test_open_readonly_refuses_a_non_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    path.write_bytes(b"this is certainly not an SQLite database\n" * 200)
    with pytest.raises(RunFileError, match="is not a moltsim run file") as info:
        open_readonly(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_open_readonly_refuses_an_sqlite_file_of_another_program(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with plain(path) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(RunFileError, match="is not a moltsim run file"):
        open_readonly(path)


def test_open_readonly_refuses_a_file_without_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with plain(path) as conn:
        conn.execute("CREATE TABLE run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    with pytest.raises(RunFileError, match="no schema version"):
        open_readonly(path)


def test_open_readonly_refuses_a_newer_schema_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    newer = SCHEMA_VERSION + 1
    with plain(path) as conn:
        conn.execute("CREATE TABLE run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO run_meta VALUES ('schema_version', ?)", (str(newer),))
    with pytest.raises(RunFileError) as info:
        open_readonly(path)
    message = str(info.value)
    assert "newer moltsim" in message
    assert f"schema {newer}" in message
    assert f"schema {SCHEMA_VERSION}" in message
    assert "upgrade" in message


async def test_open_readonly_refuses_a_real_run_file_bumped_to_a_newer_schema(
    db_path: Path,
) -> None:
    await make_runfile(db_path)
    with plain(db_path) as conn:
        conn.execute(
            "UPDATE run_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),)
        )
    with pytest.raises(RunFileError, match="newer moltsim"):
        open_readonly(db_path)


def test_open_readonly_accepts_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with plain(path) as conn:
        conn.execute("CREATE TABLE run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO run_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    with readonly(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM run_meta").fetchone() == (1,)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda p: p.write_bytes(b"not a database at all\n" * 100),
            id="not-sqlite",
        ),
        pytest.param(
            lambda p: _sqlite_with("CREATE TABLE things (x)", p),
            id="no-run-meta",
        ),
        pytest.param(
            lambda p: _sqlite_with("CREATE TABLE run_meta (key TEXT, value TEXT)", p),
            id="no-version",
        ),
        pytest.param(
            lambda p: _sqlite_with(
                "CREATE TABLE run_meta (key TEXT, value TEXT);"
                "INSERT INTO run_meta VALUES ('schema_version', '999')",
                p,
            ),
            id="newer",
        ),
    ],
)
def test_open_readonly_closes_the_connection_it_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Any]
) -> None:
    path = tmp_path / "run.db"
    make(path)
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def tracking_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracking_connect)  # the module reader.py uses
    with pytest.raises(RunFileError):
        open_readonly(path)
    assert len(opened) == 1
    still_open = _is_open(opened[0])
    opened[0].close()
    assert not still_open, "open_readonly leaked the connection of a file it refused"


def _sqlite_with(script: str, path: Path) -> None:
    with plain(path) as conn:
        conn.executescript(script)


def _is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return False
    return True


async def test_readonly_connection_cannot_write(runfile: RunFile, db_path: Path) -> None:
    with readonly(db_path) as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO run_meta (key, value) VALUES ('x', 'y')")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE sneaky (x)")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM schema_migrations")
    assert [name for name, _ in migrations(db_path)] == [name for name, _ in MIGRATIONS]


async def test_open_readonly_accepts_the_folder_or_the_file(db_path: Path) -> None:
    await make_runfile(db_path)
    for target in (db_path, db_path.parent, str(db_path), str(db_path.parent)):
        with readonly(Path(target)) as conn:
            version = conn.execute("SELECT value FROM run_meta WHERE key = 'schema_version'")
            assert version.fetchone() == (str(SCHEMA_VERSION),)


async def test_open_readonly_sees_commits_of_the_open_writer(
    runfile: RunFile, db_path: Path
) -> None:
    with readonly(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agents").fetchone() == (0,)
        await runfile.write(
            [
                (
                    "INSERT INTO agents (id, handle, display_name, public_key, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(1, "alice", "Alice", bytes(32), T0)],
                )
            ]
        )
        assert conn.execute("SELECT handle FROM agents").fetchall() == [("alice",)]


async def test_open_readonly_handles_odd_characters_in_the_path(tmp_path: Path) -> None:
    path = tmp_path / "my run #1 ?x=%20" / "run.db"
    await make_runfile(path)
    with readonly(path.parent) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )
