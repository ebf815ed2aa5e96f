"""``moltsim run scenarios/smoke.toml`` as a real process: the run folder, the run file's
invariants, JSON-lines logs, and reproducibility of a stepped offline run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scenario.conftest import (
    SCENARIOS,
    START_S,
    Running,
    canonical_dump,
    count,
    meta,
    problems,
    run_db,
    running,
    scenario_toml,
    squash,
)

pytestmark = pytest.mark.slow

SMOKE = SCENARIOS / "smoke.toml"


@dataclass(frozen=True)
class Finished:
    run_dir: Path
    returncode: int
    output: str
    wall_s: float


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Three smoke runs at once: ``first`` and ``again`` with the scenario's seed, ``seed8``
    with ``--seed 8``."""
    base = tmp_path_factory.mktemp("smoke")
    extras = {"first": [], "again": [], "seed8": ["--seed", "8"]}
    finished: dict[str, Finished] = {}
    with (
        running(SMOKE, base / "first", *extras["first"]) as first,
        running(SMOKE, base / "again", *extras["again"]) as again,
        running(SMOKE, base / "seed8", *extras["seed8"]) as seed8,
    ):
        runs: dict[str, Running] = {"first": first, "again": again, "seed8": seed8}
        for name, run in runs.items():
            code = run.wait(timeout=120)
            finished[name] = Finished(run.run_dir, code, run.text, time.monotonic() - run.started)
    return finished


def test_smoke_run_finishes_and_says_where_the_run_is(smoke: dict[str, Finished]) -> None:
    run = smoke["first"]
    assert run.returncode == 0, run.output[-3000:]
    assert run.wall_s < 60, f"took {run.wall_s:.0f} s"
    out = squash(run.output)
    assert "duration was reached" in run.output
    assert squash(f"run folder: {run.run_dir}") in out
    for command in ("watch", "export", "report", "stats"):
        assert squash(f"moltsim {command} {run.run_dir}") in out
    assert "--resume" not in out, "a finished run has nothing to resume"
    assert "Traceback" not in run.output


def test_smoke_run_folder_holds_what_the_issue_lists(smoke: dict[str, Finished]) -> None:
    folder = smoke["first"].run_dir
    for name in ("run.db", "keys", "broker", "logs", "pools", "scenario.toml"):
        assert (folder / name).exists(), name
    assert (folder / "scenario.toml").read_text() == SMOKE.read_text()
    keys = sorted(p.name for p in (folder / "keys").iterdir())
    assert len(keys) == 10
    assert (folder / "keys").stat().st_mode & 0o077 == 0
    for key in (folder / "keys").iterdir():
        assert key.stat().st_mode & 0o077 == 0, key
    # The run file and the logs hold DMs and prompts: nothing in the folder is anyone else's.
    assert folder.stat().st_mode & 0o077 == 0
    shared = [p for p in folder.rglob("*") if p.stat().st_mode & 0o077]
    assert not shared, f"readable by others: {shared}"


def test_smoke_run_file_holds_a_small_world(smoke: dict[str, Finished]) -> None:
    with run_db(smoke["first"].run_dir) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        info = meta(conn)
        assert info["scenario_name"] == "smoke"
        assert info["seed"] == "7"
        assert count(conn, "SELECT COUNT(*) FROM agents") == 10
        assert count(conn, "SELECT COUNT(*) FROM submolts") >= 2
        assert count(conn, "SELECT COUNT(*) FROM posts") > 0
        assert count(conn, "SELECT COUNT(*) FROM comments") > 0
        assert count(conn, "SELECT COUNT(*) FROM votes") > 0
        active = count(
            conn, "SELECT COUNT(DISTINCT agent_id) FROM actions WHERE type = 'hello'"
        )  # fmt: skip
        assert active == 10


def test_smoke_run_file_is_consistent(smoke: dict[str, Finished]) -> None:
    """Threads intact, scores equal their votes, karma equals scores, rate limits kept in sim
    time, every acknowledged action applied once and every seq present."""
    with run_db(smoke["first"].run_dir) as conn:
        limits = json.loads(meta(conn)["rules"])["rate_limits"]
        assert limits["enabled"]
        assert limits["post_interval_s"] == 1800 and limits["comment_interval_s"] == 20
        assert problems(conn) == []


def test_smoke_run_denormalised_counters_match_their_rows(smoke: dict[str, Finished]) -> None:
    checks = {
        "post comment_count": "SELECT p.id FROM posts p WHERE p.comment_count !="
        " (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id)",
        "agent post_count": "SELECT a.id FROM agents a WHERE a.post_count !="
        " (SELECT COUNT(*) FROM posts WHERE author_id = a.id)",
        "agent comment_count": "SELECT a.id FROM agents a WHERE a.comment_count !="
        " (SELECT COUNT(*) FROM comments WHERE author_id = a.id)",
        "agent follower_count": "SELECT a.id FROM agents a WHERE a.follower_count !="
        " (SELECT COUNT(*) FROM follows WHERE followee_id = a.id)",
        "agent following_count": "SELECT a.id FROM agents a WHERE a.following_count !="
        " (SELECT COUNT(*) FROM follows WHERE follower_id = a.id)",
        "submolt post_count": "SELECT s.id FROM submolts s WHERE s.post_count !="
        " (SELECT COUNT(*) FROM posts WHERE submolt_id = s.id)",
        "submolt subscriber_count": "SELECT s.id FROM submolts s WHERE s.subscriber_count !="
        " (SELECT COUNT(*) FROM memberships WHERE submolt_id = s.id AND role = 'subscriber')",
        "ok posts vs posts": "SELECT 1 WHERE (SELECT COUNT(*) FROM posts) !="
        " (SELECT COUNT(*) FROM actions WHERE type = 'post' AND outcome = 'ok')",
        "ok comments vs comments": "SELECT 1 WHERE (SELECT COUNT(*) FROM comments) !="
        " (SELECT COUNT(*) FROM actions WHERE type = 'comment' AND outcome = 'ok')",
    }
    with run_db(smoke["first"].run_dir) as conn:
        wrong = {
            what: rows for what, sql in checks.items() if (rows := conn.execute(sql).fetchall())
        }
    assert wrong == {}


def test_smoke_run_ledger_reaches_the_end_of_the_scenario(smoke: dict[str, Finished]) -> None:
    with run_db(smoke["first"].run_dir) as conn:
        end = float(meta(conn)["end"])
        first, last = conn.execute("SELECT MIN(sim_time), MAX(sim_time) FROM actions").fetchone()
    assert end == START_S + 4 * 3600
    assert first == START_S
    assert end - 600 <= last <= end  # the last tick, never past the end


def test_smoke_run_logs_are_json_lines(smoke: dict[str, Finished]) -> None:
    logs = smoke["first"].run_dir / "logs"
    files = sorted(logs.glob("*.jsonl"))
    assert {f.name for f in files} >= {"engine.jsonl", "pool-1.jsonl"}
    for file in files:
        lines = file.read_text().splitlines()
        assert lines, f"{file.name} is empty"
        for number, line in enumerate(lines, 1):
            record = json.loads(line)  # raises on a line that is not JSON
            assert isinstance(record, dict), f"{file.name}:{number}"
            assert {"ts", "level", "logger", "msg"} <= record.keys(), f"{file.name}:{number}"


def test_same_scenario_and_seed_give_the_same_run(smoke: dict[str, Finished]) -> None:
    assert smoke["again"].returncode == 0, smoke["again"].output[-3000:]
    first, again = canonical_dump(smoke["first"].run_dir), canonical_dump(smoke["again"].run_dir)
    assert first.keys() == again.keys()
    for table in first:
        assert first[table] == again[table], f"{table} differs between two runs of one seed"
    assert first["posts"] and first["actions"]


def test_another_seed_gives_another_run(smoke: dict[str, Finished]) -> None:
    assert smoke["seed8"].returncode == 0, smoke["seed8"].output[-3000:]
    first, other = canonical_dump(smoke["first"].run_dir), canonical_dump(smoke["seed8"].run_dir)
    assert first["actions"] != other["actions"]
    assert first["posts"] != other["posts"]
    with run_db(smoke["seed8"].run_dir) as conn:
        assert meta(conn)["seed"] == "8"
        assert problems(conn) == []


def test_a_realtime_run_records_nothing_after_the_scenarios_end(tmp_path: Path) -> None:
    scenario = tmp_path / "fast.toml"
    scenario.write_text(
        scenario_toml("fast", mode="realtime", speed=20_000, duration="8h", heartbeat="30m")
    )
    with running(scenario, tmp_path / "run") as run:
        assert run.wait(timeout=90) == 0, run.text[-3000:]
    with run_db(tmp_path / "run") as conn:
        end = float(meta(conn)["end"])
        late = conn.execute(
            "SELECT type, sim_time - ? FROM actions WHERE sim_time > ? ORDER BY sim_time",
            (end, end),
        ).fetchall()
    assert late == [], f"{len(late)} actions after the end, the last {late[-1][1]:.0f} sim-s late"
