"""``moltsim report``: one self-contained HTML file with the plots, readable offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moltsim.export.analysis import gini, reciprocity, shared_phrases
from moltsim.export.report import write_report
from tests.export.conftest import Forum, SmokeRuns
from tests.scenario.conftest import cli


def _assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", html), "the report must not point anywhere"
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", html), "no external resources"
    assert "<script" not in html


def test_report_of_the_forum_is_self_contained(forum: Forum, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(forum.path, out)
    html = out.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert html.count("<svg") >= 6
    for heading in ("Activity over sim time", "Submolts: posts and members", "Votes and karma",
                    "Conversation depth", "Reply network", "Recurring phrases",
                    "LLM tokens and cost"):  # fmt: skip
        assert f"<h2>{heading}" in html
    assert re.search(r"Karma Gini <b>0\.\d{3}</b>", html)
    assert html.count("<svg") >= 7, "the LLM tokens plot too"
    assert "The scenario names no token prices" in html
    model = re.search(r"<h2>How the model did</h2>.*?</p>", html, re.DOTALL)
    assert model is not None, "the model's calls get their own section"
    assert '<td class="n">2</td>' in model.group(0), "two decisions"
    assert "Failures by kind: none" in model.group(0)


@pytest.mark.slow
def test_report_command_on_a_real_run(smoke_runs: SmokeRuns, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "report.html"
    done = cli("report", smoke_runs.first, "--out", out, timeout=120)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "Run report: smoke" in html and "seed 7" in html
    phrases = re.search(r"<h2>Recurring phrases.*?</table>", html, re.DOTALL)
    assert phrases is not None and html.count("<svg") >= 6


def test_gini_reciprocity_and_shared_phrases() -> None:
    assert gini([5, 5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert gini([]) == 0.0
    assert reciprocity({(1, 2), (2, 1), (1, 3)}) == pytest.approx(2 / 3)
    texts = [
        (1, "We say molt season is upon us every day"),
        (2, "Oh no, molt season is upon us again"),
        (3, "nothing shared here at all, really"),
        (1, "molt season is upon us"),
    ]
    assert shared_phrases(texts) == [("molt season is upon", 2, 3), ("season is upon us", 2, 3)]
