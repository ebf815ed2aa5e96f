"""The watcher's own reads (no Textual): the run header, the event log, submolt activity."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from moltsim.store.reader import open_readonly
from moltsim.tui.pulse import HeaderReader
from moltsim.tui.reads import ledger_events, new_since, persona_summary, submolt_rows
from moltsim.tui.source import RunSource
from tests.tui.runs import set_meta


@pytest.fixture
def source(fixture_run: Path) -> Iterator[RunSource]:
    src = RunSource(fixture_run)
    yield src
    src.close()


def write(run: Path, *statements: str) -> None:
    """Change a copy of the fixture run behind the engine's back (to set up a case)."""
    with closing(sqlite3.connect(run / "run.db")) as conn, conn:
        for sql in statements:
            conn.execute(sql)


def test_header_of_the_fixture_run(source: RunSource) -> None:
    pulse = source.read(source.header.read, "header")
    assert pulse.run_name == "fixture" and pulse.state == "finished"
    assert (pulse.agents, pulse.max_post_id, pulse.max_comment_id) == (6, 12, 6)
    with closing(open_readonly(source.path)) as conn:
        total, refused = conn.execute(
            "SELECT COUNT(*), SUM(outcome != 'ok') FROM actions"
        ).fetchone()
    assert (pulse.actions, pulse.refusals) == (total, refused) == (total, 1)
    assert (pulse.prompt_tokens, pulse.completion_tokens) == (2000, 450)
    assert pulse.cost_usd == pytest.approx(2000 * 0.000002 + 450 * 0.000008)
    assert pulse.sim_time == 1_800_000_000.0 + 14 * 3600 + 120
    # the last sim-hour: the 10 votes, the refusal, 2 LLM calls, and the 3 comments before them
    assert pulse.actions_per_sim_hour == 16 and not pulse.online_measured


def test_header_counts_only_new_rows_yet_adds_up(run_copy: Path) -> None:
    header = HeaderReader()
    with closing(open_readonly(run_copy)) as conn:
        first = header.read(conn)
    write(
        run_copy,
        "INSERT INTO actions (sim_time, wall_time, agent_id, type, payload, outcome)"
        " VALUES (1900000000, 0, 1, 'post', '{}', 'rate_limited')",
    )
    with closing(open_readonly(run_copy)) as conn:
        second = header.read(conn)
    assert second.actions == first.actions + 1 and second.refusals == first.refusals + 1
    assert second.max_action_id == first.max_action_id + 1


def test_header_prefers_the_metrics_and_the_recorded_state(run_copy: Path) -> None:
    write(
        run_copy,
        "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY, wall_time REAL NOT NULL,"
        " sim_time REAL NOT NULL, process TEXT NOT NULL DEFAULT '', name TEXT NOT NULL,"
        " value REAL NOT NULL)",
        "INSERT INTO metrics (wall_time, sim_time, name, value) VALUES (0, 0, 'agents_online', 3)",
        "INSERT INTO metrics (wall_time, sim_time, name, value) VALUES (1, 1, 'agents_online', 5)",
    )
    set_meta(run_copy / "run.db", state="stopped")
    with closing(open_readonly(run_copy)) as conn:
        pulse = HeaderReader().read(conn)
    assert (pulse.agents_online, pulse.online_measured, pulse.state) == (5, True, "stopped")


def test_a_run_file_without_metrics_or_state_falls_back_to_the_ledger(run_copy: Path) -> None:
    write(
        run_copy,
        "DROP TABLE IF EXISTS metrics",
        "DELETE FROM run_meta WHERE key IN ('state', 'state_at')",
        "UPDATE actions SET wall_time = 0",
    )
    with closing(open_readonly(run_copy)) as conn:
        pulse = HeaderReader().read(conn)
    assert (pulse.state, pulse.online_measured, pulse.agents_online) == ("unknown", False, 6)
    write(run_copy, f"UPDATE actions SET wall_time = {time.time()}")
    with closing(open_readonly(run_copy)) as conn:
        assert HeaderReader().read(conn).state == "active"  # the ledger is growing
    end = 1_800_000_000.0 + 14 * 3600 + 120
    set_meta(run_copy / "run.db", end=str(end))
    with closing(open_readonly(run_copy)) as conn:
        assert HeaderReader().read(conn).state == "finished"  # it reached the scenario's end


def test_no_prices_no_cost(run_copy: Path) -> None:
    set_meta(run_copy / "run.db", scenario='name = "x"\n')
    with closing(open_readonly(run_copy)) as conn:
        assert HeaderReader().read(conn).cost_usd is None
    set_meta(run_copy / "run.db", scenario="this is [not toml")
    with closing(open_readonly(run_copy)) as conn:
        assert HeaderReader().read(conn).cost_usd is None


def test_ledger_events_leave_out_queries_and_page_forward(source: RunSource) -> None:
    events = source.read(lambda conn: ledger_events(conn, limit=5))
    assert len(events) == 5 and [e.type for e in events[-2:]] == ["llm_call", "llm_call"]
    assert events[0].id < events[-1].id
    refusal = next(e for e in events if e.outcome != "ok")
    assert refusal.summary == "m/nowhere: Lost (no submolt m/nowhere)"
    after = source.read(lambda conn: ledger_events(conn, after_id=events[0].id))
    assert [e.id for e in after] == [e.id for e in events[1:]]
    first = source.read(lambda conn: ledger_events(conn, after_id=0, limit=3))
    assert [e.summary for e in first] == ["@alice joined", "@bob joined", "@carol joined"]


def test_submolt_rows_count_members_posts_and_last_day(source: RunSource) -> None:
    rows = {row.name: row for row in source.read(submolt_rows)}
    assert set(rows) == {"general", "lobsters", "shells"}
    assert (rows["shells"].owner, rows["shells"].members, rows["shells"].posts) == ("alice", 3, 3)
    assert rows["general"].posts_last_day == 5


def test_new_since_counts_visible_rows_after_an_id(source: RunSource) -> None:
    assert source.read(lambda c: new_since(c, "posts", 10)) == 2
    assert source.read(lambda c: new_since(c, "comments", 0, post_id=1)) == 5
    with pytest.raises(ValueError, match="unknown table"):
        source.read(lambda c: new_since(c, "agents", 0))


def test_persona_summary_tolerates_anything() -> None:
    assert persona_summary(None) == "" and persona_summary("not json") == ""
    assert persona_summary("[1, 2]") == ""
    assert persona_summary('{"interests": ["a", "b"], "brain": "openai"}') == (
        "interests: a, b · brain: openai"
    )
