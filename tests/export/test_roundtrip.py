"""Exports rebuild the run exactly: threads, record counts, and the same records in every
format."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest

from moltsim.export import ExportOptions, export_run
from moltsim.export.readback import Export
from moltsim.export.records import ENTITIES
from moltsim.store.reader import open_readonly
from tests.export.conftest import Forum, SmokeRuns
from tests.export.threads import threads_from_records, threads_from_run

TABLES = {"agents": "agents", "submolts": "submolts", "posts": "posts", "comments": "comments",
          "votes": "votes", "follows": "follows", "dms": "dms", "actions": "actions"}  # fmt: skip


def _counts(run: Path) -> dict[str, int]:
    with closing(open_readonly(run)) as conn:
        return {
            e: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for e, t in TABLES.items()
        }


def test_every_thread_of_the_forum_rebuilds_from_the_export(forum: Forum, tmp_path: Path) -> None:
    manifest = export_run(forum.path, tmp_path / "out", ExportOptions())
    export = Export(tmp_path / "out")
    rebuilt = threads_from_records(export.records("posts"), export.records("comments"))
    expected = threads_from_run(forum.path)
    assert rebuilt == expected
    assert manifest["records"] == _counts(forum.path)
    nested = expected[forum.ids["post:alice"]]["comments"][0]["replies"][0]["replies"]
    assert [c["body"] for c in nested] == ["Two lines\nof reply."]


@pytest.mark.slow
def test_every_thread_of_a_real_run_rebuilds_from_the_export(
    smoke_runs: SmokeRuns, tmp_path: Path
) -> None:
    manifest = export_run(smoke_runs.first, tmp_path / "out", ExportOptions())
    export = Export(tmp_path / "out")
    rebuilt = threads_from_records(export.records("posts"), export.records("comments"))
    assert rebuilt == threads_from_run(smoke_runs.first / "run.db")
    assert manifest["records"] == _counts(smoke_runs.first / "run.db")
    assert manifest["records"]["comments"] > 0
    assert manifest["scenario"] == "smoke" and manifest["seed"] == 7
    assert manifest["consent"]["purpose"] == "analysis"
    assert manifest["consent"]["left_out"] == {}


def test_records_follow_the_field_contract(forum: Forum, tmp_path: Path) -> None:
    export_run(forum.path, tmp_path / "out", ExportOptions())
    export = Export(tmp_path / "out")
    for entity, fields in ENTITIES.items():
        for record in export.records(entity):
            assert list(record) == [f.name for f in fields], entity
            assert record["id"] is not None and record["created_at"].endswith("Z")
    posts = {p["id"]: p for p in export.records("posts")}
    link = posts[forum.ids["post:link"]]
    assert link["url"] == "https://example.org/molt" and link["body"] == ""
    assert posts[forum.ids["post:deleted"]]["status"] == "deleted"
    alice = posts[forum.ids["post:alice"]]
    assert (alice["score"], alice["upvotes"], alice["downvotes"]) == (3, 3, 0)
    votes = {v["id"]: v for v in export.records("votes")}
    assert votes[f"post:{forum.ids['post:alice']}:agent:{forum.ids['agent:carol']}"]["value"] == 1
    assert f"comment:{forum.ids['comment:agree']}:agent:{forum.ids['agent:bob']}" not in votes
    actions = list(export.records("actions"))
    statuses = {(r["status"], r["error_code"]) for r in actions}
    assert ("refused", "bad_signature") in statuses and ("refused", "not_found") in statuses
    agents = {r["name"]: r for r in export.records("agents")}
    assert agents["hush_hollow"]["objects_to_training"] is True
    assert agents["hush_hollow"]["objected_at"] is not None
    assert (agents["alice"]["brain"], agents["bob"]["brain"]) == ("openai", "offline")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_hold_the_same_records_as_jsonl(
    forum: Forum, tmp_path: Path, fmt: str
) -> None:
    export_run(forum.path, tmp_path / "jsonl", ExportOptions())
    export_run(forum.path, tmp_path / fmt, ExportOptions(format=fmt))  # type: ignore[arg-type]
    reference, other = Export(tmp_path / "jsonl"), Export(tmp_path / fmt)
    for entity in ENTITIES:
        assert list(other.records(entity)) == list(reference.records(entity)), entity


def test_markdown_writes_a_transcript_per_thread_and_an_index_per_submolt(
    forum: Forum, tmp_path: Path
) -> None:
    out = tmp_path / "md"
    manifest = export_run(forum.path, out, ExportOptions(format="markdown"))
    assert (out / "index.md").read_text().startswith("# Submolts")
    for sub in ("general", "poetry", "hush-club"):
        assert (out / sub / "index.md").exists()
    poetry = (out / "poetry" / "index.md").read_text()
    assert f"]({forum.ids['post:alice']}.md)" in poetry
    thread = (out / "poetry" / f"{forum.ids['post:alice']}.md").read_text().splitlines()
    assert thread[0] == "# Ask me about meter"
    assert "m/poetry · posted by @alice · 2027-01-15" in thread[2] and "score 3" in thread[2]
    assert "Line two, for HUSH_HOLLOW." in thread
    top = [line for line in thread if line.startswith("- **@hush_hollow**")]
    reply = [line for line in thread if line.startswith("  - **@carol**")]
    deeper = [line for line in thread if line.startswith("    - **@alice**")]
    assert len(top) == len(reply) == len(deeper) == 1
    at = thread.index(deeper[0])
    assert thread[at + 1 : at + 3] == ["      Two lines", "      of reply."]
    assert thread.index(top[0]) < thread.index(reply[0]) < thread.index(deeper[0])
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert files == manifest["files"] and f"poetry/{forum.ids['post:alice']}.md" in files
