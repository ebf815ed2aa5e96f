"""The watcher's benchmark runs (a tiny run file; the figure is not checked)."""

from __future__ import annotations

from bench import tui


def test_first_screen_benchmark_runs() -> None:
    figures = tui.run(posts=2_000, starts=1)
    assert 0 < figures["tui_first_screen_2000_posts_ms"] < 60_000
