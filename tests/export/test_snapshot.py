"""Exporting a run that an engine is still writing gives one consistent snapshot."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

from moltsim.domain import actions as a
from moltsim.engine.rules import RateLimits, Rules
from moltsim.engine.service import Engine, Submission
from moltsim.export import ExportOptions, export_run
from moltsim.export.readback import Export

T0 = 1_800_000_000.0
AGENTS = ("ann", "ben", "cat")


def _write_until(path: Path, stop: threading.Event, ready: threading.Event) -> None:
    """Keep committing groups of one post and two comments until ``stop`` is set."""

    async def main() -> None:
        engine = await Engine.open(path, Rules(rate_limits=RateLimits(enabled=False)))
        try:
            ids = [
                await engine.register_agent(h, bytes([i + 1]) * 32, T0)
                for i, h in enumerate(AGENTS)
            ]
            await engine.seed_submolt("general", T0)
            now, round_ = T0, 0
            while not stop.is_set():
                round_ += 1
                now += 10.0
                post_id = round_
                group = [
                    Submission(ids[round_ % 3], a.CreatePost(submolt="general", title=f"p{round_}"),
                               now),
                    Submission(ids[(round_ + 1) % 3], a.CreateComment(post_id=post_id, body="c"),
                               now),
                    Submission(ids[(round_ + 2) % 3],
                               a.CreateComment(post_id=max(1, post_id // 2), body="older"), now),
                ]  # fmt: skip
                outcomes = await engine.submit_many(group)
                assert all(o.ok for o in outcomes), outcomes
                if round_ == 20:
                    ready.set()
        finally:
            ready.set()
            await engine.close()

    asyncio.run(main())


def _check_consistent(folder: Path) -> int:
    export = Export(folder)
    posts = {p["id"]: p for p in export.records("posts")}
    comments = list(export.records("comments"))
    per_post = Counter(c["post_id"] for c in comments)
    assert set(per_post) <= set(posts), "a comment whose post is not in the snapshot"
    for post_id, post in posts.items():
        assert post["comment_count"] == per_post[post_id], f"post {post_id} counts differ"
    ledger = Counter(r["type"] for r in export.records("actions") if r["status"] == "accepted")
    assert ledger["post"] == len(posts) and ledger["comment"] == len(comments)
    authored = sum(agent["post_count"] for agent in export.records("agents"))
    assert authored == len(posts)
    return len(posts)


def test_an_export_of_a_run_being_written_is_a_consistent_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    stop, ready = threading.Event(), threading.Event()
    writer = threading.Thread(target=_write_until, args=(path, stop, ready), daemon=True)
    writer.start()
    try:
        assert ready.wait(30), "the writer never got going"
        sizes = []
        for n in range(6):
            out = tmp_path / f"export-{n}"
            export_run(path, out, ExportOptions())
            sizes.append(_check_consistent(out))
    finally:
        stop.set()
        writer.join(30)
    assert not writer.is_alive()
    assert sizes[-1] > sizes[0], f"the run did not grow while exporting: {sizes}"
