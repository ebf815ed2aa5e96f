"""Hot-feed reads per second as the number of posts grows from 1,000 to 1,000,000.

The posts are written straight into a real run file (same schema, same stored ``hot`` score),
then read with the same query functions that answer agents, the TUI and exports.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from moltsim.engine.ranking import hot
from moltsim.store import queries
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFile

T0 = 1_800_000_000.0
AGENTS = 1_000
SUBMOLTS = 50
SIZES = (1_000, 10_000, 100_000, 1_000_000)
LABELS = {1_000: "1k", 10_000: "10k", 100_000: "100k", 1_000_000: "1m"}
SECONDS_PER_POST = 2.0


async def create(path: Path) -> None:
    runfile = await RunFile.open(path)
    await runfile.close()
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO agents (id, handle, display_name, public_key, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"agent_{i}", f"Agent {i}", i.to_bytes(32, "big"), T0)
                for i in range(1, AGENTS + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO submolts (id, name, title, created_at) VALUES (?, ?, ?, ?)",
            [(i, f"sub-{i}", f"Submolt {i}", T0) for i in range(1, SUBMOLTS + 1)],
        )


def grow(path: Path, start: int, stop: int, rng: random.Random) -> None:
    """Add posts ``start..stop-1`` with a long-tailed score distribution."""
    rows = []
    for post_id in range(start, stop):
        created = T0 + post_id * SECONDS_PER_POST
        score = int(rng.paretovariate(1.2)) - 1 - (rng.random() < 0.2) * rng.randint(0, 5)
        rows.append(
            (post_id, rng.randint(1, SUBMOLTS), rng.randint(1, AGENTS), f"Post {post_id}",
             "Some body text for the feed benchmark.", created, score, hot(score, created))
        )  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executemany(
            "INSERT INTO posts (id, submolt_id, author_id, title, body, created_at, score, hot)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def reads_per_s(conn: sqlite3.Connection, seconds: float, **kwargs: object) -> float:
    count = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(20):
            posts = queries.feed(conn, **kwargs)  # type: ignore[arg-type]
            assert posts
        count += 20
    return count / (time.perf_counter() - start)


def run(sizes: tuple[int, ...] = SIZES, seconds: float = 2.0) -> dict[str, float]:
    figures: dict[str, float] = {}
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="moltsim-feed-") as tmp:
        path = Path(tmp) / "run.db"
        asyncio.run(create(path))
        have = 1
        for size in sizes:
            t0 = time.perf_counter()
            grow(path, have, size + 1, rng)
            have = size + 1
            print(f"feed reads: {size:,} posts (generated in {time.perf_counter() - t0:.1f} s)")
            conn = open_readonly(path)
            try:
                now = T0 + size * SECONDS_PER_POST
                label = LABELS.get(size, str(size))
                figures[f"feed_hot_reads_per_s_{label}_posts"] = reads_per_s(conn, seconds)
                figures[f"feed_submolt_hot_reads_per_s_{label}_posts"] = reads_per_s(
                    conn, seconds, submolt="sub-7"
                )
                figures[f"feed_new_reads_per_s_{label}_posts"] = reads_per_s(
                    conn, seconds, sort="new"
                )
                figures[f"feed_top_day_reads_per_s_{label}_posts"] = reads_per_s(
                    conn, seconds, sort="top", window="day", now=now
                )
            finally:
                conn.close()
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:<48} {value:>10,.0f}")
