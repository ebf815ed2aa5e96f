"""The export benchmark behind ``make bench`` still runs (a tiny run; the figure is not
checked)."""

from __future__ import annotations

from pathlib import Path

from bench import export as export_bench


def test_generated_run_has_the_records_asked_for(tmp_path: Path) -> None:
    assert export_bench.generate(tmp_path / "run.db", 3_000) == 3_000


def test_export_benchmark_runs() -> None:
    figures = export_bench.run(records=3_000)
    assert figures["export_jsonl_records_per_s"] > 0
