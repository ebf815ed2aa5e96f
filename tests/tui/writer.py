"""A writer that keeps a run going for the watcher's live tests: every ``--interval`` wall
seconds one post (titled ``PREFIX N``) and a vote on it, through the real engine; with
``--comment-on POST`` also a comment on that post; with ``--upvote POST`` (or
``--upvote-comment COMMENT``) frank first votes that post (or comment) up.

``python -m tests.tui.writer RUN_DB --posts N --interval S``; it prints ``ready`` once the
engine is open and ``posted N`` after each commit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from moltsim.domain import actions as a
from moltsim.engine.service import Engine
from tests.tui.runs import RULES


async def write(
    path: Path,
    posts: int,
    interval: float,
    prefix: str,
    comment_on: int | None = None,
    upvote: int | None = None,
    upvote_comment: int | None = None,
) -> None:
    engine = await Engine.open(path, RULES)
    try:
        handles = engine.forum.state.handles
        alice, bob = handles["alice"], handles["bob"]
        now = engine.last_sim_time
        print("ready", flush=True)
        if upvote is not None:
            vote = a.Vote(target="post", id=upvote, value=1)
            assert (await engine.submit(handles["frank"], vote, now)).ok
        if upvote_comment is not None:
            vote = a.Vote(target="comment", id=upvote_comment, value=1)
            assert (await engine.submit(handles["frank"], vote, now)).ok
        for i in range(posts):
            now += 60
            post = a.CreatePost(submolt="general", title=f"{prefix} {i}", body="written live")
            outcome = await engine.submit(alice, post, now)
            assert outcome.ok, outcome
            vote = a.Vote(target="post", id=outcome.data["post_id"], value=1)
            assert (await engine.submit(bob, vote, now)).ok
            if comment_on is not None:
                comment = a.CreateComment(post_id=comment_on, body=f"{prefix} comment {i}")
                assert (await engine.submit(bob, comment, now)).ok
            print(f"posted {i}", flush=True)
            await asyncio.sleep(interval)
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_db", type=Path)
    parser.add_argument("--posts", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--prefix", default="Live post")
    parser.add_argument("--comment-on", type=int)
    parser.add_argument("--upvote", type=int)
    parser.add_argument("--upvote-comment", type=int)
    args = parser.parse_args(argv)
    asyncio.run(
        write(args.run_db, args.posts, args.interval, args.prefix, args.comment_on, args.upvote,
              args.upvote_comment)
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
