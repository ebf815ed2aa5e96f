"""First screen of ``moltsim watch`` on a run file with 1,000,000 posts.

The run file is generated like the feed benchmark's (same schema, stored ``hot`` scores).
The figure is the time from creating the app (which opens the run file) to the first feed
rows painted, in a headless terminal of 120x40; the median of a few starts.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import feed_reads
from moltsim.tui.app import WatchApp
from moltsim.tui.screens.feed import FeedScreen

CHUNK = 100_000
"""Posts generated per transaction (bounds the generator's memory)."""
STARTS = 5


def has_rows(app: WatchApp) -> bool:
    return isinstance(app.screen, FeedScreen) and app.screen.table.row_count > 0


async def first_screen_ms(path: Path) -> float:
    """Milliseconds from ``WatchApp(...)`` to the first feed rows on screen."""
    started = time.perf_counter()
    app = WatchApp(path, poll_s=None)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            while not has_rows(app):  # noqa: ASYNC110 (a widget's state, not an event)
                await asyncio.sleep(0.002)
            await pilot.pause()  # the rows are painted
            elapsed = time.perf_counter() - started
    finally:
        app.close()
    return elapsed * 1000


def run(posts: int = 1_000_000, starts: int = STARTS) -> dict[str, float]:
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="moltsim-tui-") as tmp:
        path = Path(tmp) / "run.db"
        t0 = time.perf_counter()
        asyncio.run(feed_reads.create(path))
        for start in range(1, posts + 1, CHUNK):
            feed_reads.grow(path, start, min(start + CHUNK, posts + 1), rng)
        print(f"tui: {posts:,} posts (generated in {time.perf_counter() - t0:.1f} s)")
        times = [asyncio.run(first_screen_ms(path)) for _ in range(starts)]
    label = feed_reads.LABELS.get(posts, str(posts))
    print(f"tui: first screen {', '.join(f'{t:.0f}' for t in times)} ms")
    return {f"tui_first_screen_{label}_posts_ms": statistics.median(times)}


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:<48} {value:>10,.0f}")
