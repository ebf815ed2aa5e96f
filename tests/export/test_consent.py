"""``--purpose training``: nothing an objecting agent wrote, and no mention of its handle,
remains in any exported file, in any format; ``--purpose analysis`` keeps everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltsim.export import ExportOptions, export_run
from moltsim.export.readback import Export
from moltsim.export.records import REDACTED
from tests.export.conftest import HANDLE_RE, LOOKALIKE, OBJECTOR, SECRETS, Forum, SmokeRuns


def _texts(out: Path) -> dict[str, str]:
    """Every exported file as text (Parquet files as the text of all their values)."""
    import pyarrow.parquet as pq

    texts = {}
    for file in sorted(p for p in out.rglob("*") if p.is_file()):
        if file.suffix == ".parquet":
            rows = pq.read_table(file).to_pylist()
            texts[file.name] = "\n".join(str(v) for row in rows for v in row.values())
        else:
            texts[str(file.relative_to(out))] = file.read_text(encoding="utf-8")
    return texts


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "markdown"])
def test_training_export_holds_no_text_or_handle_of_an_objecting_agent(
    forum: Forum, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / fmt
    export_run(forum.path, out, ExportOptions(format=fmt, purpose="training"))  # type: ignore[arg-type]
    texts = _texts(out)
    assert len(texts) > 3
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {name}"
        assert not HANDLE_RE.search(text), f"{OBJECTOR} mentioned in {name}"
    everything = "\n".join(texts.values())
    assert LOOKALIKE in everything, "a handle that merely starts with the objector's survives"
    assert REDACTED in everything
    assert "Nice one, @[redacted]!" in everything and "I agree with [redacted] here." in everything
    if fmt == "jsonl":
        calls = [r for r in Export(out).records("actions") if r["type"] == "llm_call"]
        assert calls and all(r["redacted"] for r in calls), "prompts quote what agents read"
        assert all('"prompt_tokens"' in r["payload"] for r in calls), "the figures are kept"


def test_the_same_files_for_analysis_keep_everything(forum: Forum, tmp_path: Path) -> None:
    manifest = export_run(forum.path, tmp_path / "out", ExportOptions(purpose="analysis"))
    everything = "\n".join(_texts(tmp_path / "out").values())
    for secret in SECRETS:
        assert secret in everything
    assert HANDLE_RE.search(everything)
    assert manifest["purpose"] == "analysis"
    assert manifest["consent"]["left_out"] == {}
    assert "everything is kept" in manifest["consent"]["note"]


def test_training_keeps_others_replies_under_tombstones_and_counts_what_it_left_out(
    forum: Forum, tmp_path: Path
) -> None:
    manifest = export_run(forum.path, tmp_path / "out", ExportOptions(purpose="training"))
    export = Export(tmp_path / "out")
    posts = {p["id"]: p for p in export.records("posts")}
    comments = {c["id"]: c for c in export.records("comments")}
    ids = forum.ids
    silent = posts[ids["post:silent"]]
    assert (silent["author"], silent["title"], silent["body"], silent["redacted"]) == (
        REDACTED, REDACTED, "", True)  # fmt: skip
    assert ids["post:lonely"] not in posts
    assert comments[ids["comment:nice"]]["post_id"] == ids["post:silent"]
    assert ids["comment:thanks"] not in comments
    tomb = comments[ids["comment:hush_reply"]]
    assert (tomb["author"], tomb["body"], tomb["redacted"]) == (REDACTED, REDACTED, True)
    assert comments[ids["comment:agree"]]["parent_id"] == ids["comment:hush_reply"]
    agents = {a["name"] for a in export.records("agents")}
    assert OBJECTOR not in agents and {"alice", "bob", "carol", LOOKALIKE} <= agents
    voters = {v["voter"] for v in export.records("votes")}
    assert REDACTED not in voters and OBJECTOR not in voters
    dms = list(export.records("dms"))
    assert [(d["sender"], d["recipient"]) for d in dms] == [("alice", REDACTED), ("bob", "carol")]
    assert {(f["follower"], f["followee"]) for f in export.records("follows")} == {
        ("bob", REDACTED), ("alice", "bob")}  # fmt: skip
    club = next(s for s in export.records("submolts") if s["name"] == "hush-club")
    assert (club["owner"], club["title"], club["description"]) == (REDACTED, REDACTED, "")
    assert all(a["agent"] != OBJECTOR for a in export.records("actions"))
    consent = manifest["consent"]
    assert consent["purpose"] == "training" and consent["objecting_agents"] == 1
    assert consent["left_out"] == {
        "actions: ledger row of an objecting agent": 12,
        "agents: objecting agent (profile and keys)": 1,
        "comments: written by an objecting agent": 1,
        "dms: written by an objecting agent": 1,
        "follows: made by an objecting agent": 1,
        "posts: written by an objecting agent": 1,
        "votes: cast by an objecting agent": 2,
        "votes: on content that is left out": 1,
    }
    assert OBJECTOR not in (tmp_path / "out" / "manifest.json").read_text()


@pytest.mark.slow
def test_training_export_of_a_real_run_leaves_out_the_objecting_personas(
    smoke_runs: SmokeRuns, tmp_path: Path
) -> None:
    analysis = export_run(smoke_runs.first, tmp_path / "a", ExportOptions())
    objectors = [a for a in Export(tmp_path / "a").records("agents") if a["objects_to_training"]]
    assert objectors, "the smoke personas include agents whose owners object"
    training = export_run(smoke_runs.first, tmp_path / "t", ExportOptions(purpose="training"))
    assert training["consent"]["objecting_agents"] == len(objectors)
    assert training["records"]["agents"] == analysis["records"]["agents"] - len(objectors)
    texts = "\n".join(_texts(tmp_path / "t").values())
    import re

    for agent in objectors:
        handle = re.compile(
            rf"(?<![A-Za-z0-9_-]){re.escape(agent['name'])}(?![A-Za-z0-9_-])", re.IGNORECASE
        )
        assert not handle.search(texts), agent["name"]
