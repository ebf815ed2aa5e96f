"""``moltsim verify``: an untouched export passes; any tampered record fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moltsim.export import ExportOptions, export_run, verify_export
from moltsim.export.manifest import sha256
from tests.export.conftest import Forum
from tests.scenario.conftest import cli


def _rewrite_jsonl(path: Path, change: object) -> None:
    """Apply ``change(record)`` to every record of a JSONL file (keeping everything else)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        change(record)  # type: ignore[operator]
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reseal(out: Path) -> None:
    """Make the manifest's checksums match the files again, as a careful forger would."""
    manifest = json.loads((out / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = sha256(out / name)
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_an_untouched_export_verifies(forum: Forum, tmp_path: Path, fmt: str) -> None:
    export_run(forum.path, tmp_path / "out", ExportOptions(format=fmt))  # type: ignore[arg-type]
    result = verify_export(tmp_path / "out")
    assert result.ok, result.failures
    assert result.signatures_ok == 38
    assert result.unsigned == {"register": 5, "seed_submolt": 1, "objection": 1, "post": 1}
    assert result.refused_envelopes == {"bad_signature": 1, "malformed": 1, "unknown_agent": 1}
    assert result.content_ok == {"posts": 7, "comments": 5, "votes": 8, "follows": 3, "dms": 3}


def test_a_training_export_verifies_except_what_redaction_changed(
    forum: Forum, tmp_path: Path
) -> None:
    export_run(forum.path, tmp_path / "out", ExportOptions(purpose="training"))
    result = verify_export(tmp_path / "out")
    assert result.ok, result.failures
    assert result.redacted > 0 and result.signatures_ok > 0


@pytest.mark.parametrize("reseal", [False, True], ids=["manifest-kept", "manifest-resealed"])
def test_an_edited_post_fails(forum: Forum, tmp_path: Path, reseal: bool) -> None:
    out = tmp_path / "out"
    export_run(forum.path, out, ExportOptions())
    target = forum.ids["post:alice"]

    def edit(record: dict[str, object]) -> None:
        if record["id"] == target:
            record["body"] = "Line one.\nSomething the author never wrote."

    _rewrite_jsonl(out / "posts.jsonl", edit)
    if reseal:
        _reseal(out)
    result = verify_export(out)
    assert not result.ok
    assert any(f"post #{target}: body differ" in f for f in result.failures), result.failures
    assert any("posts.jsonl: changed" in f for f in result.failures) is not reseal


def test_an_edited_signed_action_fails(forum: Forum, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_run(forum.path, out, ExportOptions())

    def edit(record: dict[str, object]) -> None:
        if record["type"] == "dm" and record["agent"] == "bob":
            record["payload"] = str(record["payload"]).replace("Seen", "Loved")

    _rewrite_jsonl(out / "actions.jsonl", edit)
    _reseal(out)
    failures = verify_export(out).failures
    assert any("(dm, @bob, seq" in f and "signature does not verify" in f for f in failures)
    assert any(f.startswith("dm #") for f in failures), "the DM lost its signed action"


def test_forged_votes_follows_and_redaction_marks_fail(forum: Forum, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_run(forum.path, out, ExportOptions())
    _rewrite_jsonl(out / "votes.jsonl", lambda r: r.update(value=-r["value"]))
    _rewrite_jsonl(out / "follows.jsonl", lambda r: r.update(followee="carol"))
    _rewrite_jsonl(out / "actions.jsonl", lambda r: r.update(redacted=r["type"] == "post"))
    _reseal(out)
    failures = verify_export(out).failures
    assert sum(f.startswith("vote ") for f in failures) == 8
    assert sum(f.startswith("follow ") for f in failures) >= 2
    assert any("marked redacted in an export made for analysis" in f for f in failures)


@pytest.mark.slow
def test_verify_command_exit_codes(forum: Forum, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_run(forum.path, out, ExportOptions(format="csv"))
    ok = cli("verify", out)
    assert ok.returncode == 0, ok.stderr
    assert "ok: every signature and record checks out" in ok.stdout
    text = (out / "comments.csv").read_text().replace("Two lines", "Ten lines")
    (out / "comments.csv").write_text(text)
    bad = cli("verify", out)
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and "body differ" in bad.stdout
    missing = cli("verify", tmp_path / "nowhere")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    export_run(forum.path, tmp_path / "md", ExportOptions(format="markdown"))
    markdown = cli("verify", tmp_path / "md")
    assert markdown.returncode == 2 and "carry no signatures" in markdown.stderr
