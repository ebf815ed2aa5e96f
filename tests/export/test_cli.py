"""``moltsim export`` and ``moltsim report`` as commands: output, filters, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moltsim.export import ExportError, ExportOptions, export_run
from moltsim.export.readback import Export
from tests.export.conftest import T0, Forum
from tests.scenario.conftest import cli


def test_export_command_writes_the_files_and_says_how_to_check_them(
    forum: Forum, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = cli("export", forum.path, "--out", out, "--purpose", "training")
    assert done.returncode == 0, done.stderr
    assert "for training" in done.stdout and f"moltsim verify {out}" in done.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"{e}.jsonl" for e in ("agents", "submolts", "posts", "comments", "votes", "follows",
                                "dms", "actions")] + ["manifest.json"]
    )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["purpose"] == "training" and manifest["format"] == "jsonl"
    assert set(manifest["files"]) == set(names) - {"manifest.json"}


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(forum: Forum, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    cases = {
        "no run file": ("export", tmp_path / "missing", "--out", tmp_path / "o1"),
        "not a moltsim run file": ("export", corrupt, "--out", tmp_path / "o2"),
        "pass --force": ("export", forum.path, "--out", full),
        "not an ISO-8601 sim time": (
            "export",
            forum.path,
            "--out",
            tmp_path / "o3",
            "--since",
            "last tuesday",
        ),
        "later than --since": (
            "export",
            forum.path,
            "--out",
            tmp_path / "o4",
            "--since",
            "2027-01-16",
            "--until",
            "2027-01-15",
        ),
        "no submolt 'nope'": ("export", forum.path, "--out", tmp_path / "o5", "--submolt", "nope"),
        "no run file ": ("report", tmp_path / "missing", "--out", tmp_path / "r.html"),
    }
    for expected, args in cases.items():
        done = cli(*args)
        assert done.returncode == 2, (expected, done.stdout, done.stderr)
        assert expected.strip() in done.stderr, (expected, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "o3").exists()
    forced = cli("export", forum.path, "--out", full, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (full / "keep.txt").read_text() == "mine" and (full / "posts.jsonl").exists()


def test_since_until_and_submolt_select_records(forum: Forum, tmp_path: Path) -> None:
    start = T0 + 20 * 60  # the clock moves a minute per action
    until = T0 + 40 * 60
    export_run(forum.path, tmp_path / "window",
               ExportOptions(since=start, until=until))  # fmt: skip
    window = Export(tmp_path / "window")
    for entity in ("posts", "comments", "votes", "follows", "dms", "actions"):
        for record in window.records(entity):
            assert "2027-01-15T08:20:00" <= record["created_at"] < "2027-01-15T08:40:00", entity
    assert len(list(window.records("agents"))) == 5, "agents are kept whole"
    assert list(window.records("actions"))
    export_run(forum.path, tmp_path / "poetry", ExportOptions(submolt="poetry"))
    poetry = Export(tmp_path / "poetry")
    assert [s["name"] for s in poetry.records("submolts")] == ["poetry"]
    posts = list(poetry.records("posts"))
    assert [p["id"] for p in posts] == [forum.ids["post:alice"]]
    assert {c["post_id"] for c in poetry.records("comments")} == {forum.ids["post:alice"]}
    assert {v["target_type"] for v in poetry.records("votes")} == {"post", "comment"}
    assert list(poetry.records("follows")) == [] and list(poetry.records("dms")) == []
    kinds = {r["type"] for r in poetry.records("actions")}
    assert kinds == {"create_submolt", "post", "comment", "vote"}
    manifest = json.loads((tmp_path / "poetry" / "manifest.json").read_text())
    assert manifest["filters"] == {"since": None, "until": None, "submolt": "poetry"}
    done = cli("verify", tmp_path / "poetry")
    assert done.returncode == 0, done.stdout


def test_an_out_path_that_is_a_file_is_refused(forum: Forum, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_run(forum.path, target, ExportOptions(), force=True)
