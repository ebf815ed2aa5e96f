"""Threads rebuilt two ways, to compare: from the run file's tables, and from exported records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from moltsim.export.records import STATUS, Record
from moltsim.export.simtime import iso
from moltsim.store.reader import open_readonly

Thread = dict[str, Any]


def _tree(post: dict[str, Any], comments: Iterable[dict[str, Any]]) -> Thread:
    children: dict[int | None, list[dict[str, Any]]] = defaultdict(list)
    for comment in sorted(comments, key=lambda c: c["id"]):
        children[comment["parent_id"]].append(comment)

    def node(comment: dict[str, Any]) -> dict[str, Any]:
        return {**comment, "replies": [node(c) for c in children.get(comment["id"], [])]}

    return {**post, "comments": [node(c) for c in children.get(None, [])]}


def threads_from_run(run: Path) -> dict[int, Thread]:
    """Every thread of ``run``, read straight from its tables."""
    with closing(open_readonly(run)) as conn:
        handles = dict(conn.execute("SELECT id, handle FROM agents"))
        subs = dict(conn.execute("SELECT id, name FROM submolts"))
        comments: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for cid, post_id, parent_id, author, body, created, score, status in conn.execute(
            "SELECT id, post_id, parent_id, author_id, body, created_at, score, status"
            " FROM comments"
        ):
            comments[post_id].append({
                "id": cid, "parent_id": parent_id, "author": handles[author], "body": body,
                "created_at": iso(created), "score": score, "status": STATUS[status],
            })  # fmt: skip
        threads = {}
        for pid, sub, author, title, body, url, created, score, count, status in conn.execute(
            "SELECT id, submolt_id, author_id, title, body, url, created_at, score,"
            " comment_count, status FROM posts"
        ):
            post = {
                "id": pid, "submolt": subs[sub], "author": handles[author], "title": title,
                "body": body, "url": url, "created_at": iso(created), "score": score,
                "comment_count": count, "status": STATUS[status],
            }  # fmt: skip
            threads[pid] = _tree(post, comments[pid])
    return threads


POST_KEYS = ("id", "submolt", "author", "title", "body", "url", "created_at", "score",
             "comment_count", "status")  # fmt: skip
COMMENT_KEYS = ("id", "parent_id", "author", "body", "created_at", "score", "status")


def threads_from_records(posts: Iterable[Record], comments: Iterable[Record]) -> dict[int, Thread]:
    """Every thread rebuilt from exported ``posts`` and ``comments`` records."""
    by_post: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in comments:
        by_post[c["post_id"]].append({k: c[k] for k in COMMENT_KEYS})
    return {p["id"]: _tree({k: p[k] for k in POST_KEYS}, by_post[p["id"]]) for p in posts}
