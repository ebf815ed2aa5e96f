"""Readable transcripts: one Markdown file per thread (the comment tree indented, with
authors, scores and sim times), an index per submolt, and an index of submolts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from moltsim.export.records import Record
from moltsim.export.selection import Selection


def _when(created_at: str) -> str:
    """``2026-01-28 08:10 sim`` from an ISO-8601 sim time."""
    return f"{created_at[:10]} {created_at[11:16]} sim"


def _quote_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}{line}".rstrip() for line in (text.splitlines() or [""])]


def thread_markdown(post: Record, comments: list[Record]) -> str:
    """One thread as Markdown: the post, then its comments as a nested list."""
    lines = [
        f"# {post['title']}",
        "",
        f"m/{post['submolt']} · posted by @{post['author']} · {_when(post['created_at'])}"
        f" · score {post['score']} (+{post['upvotes']}/-{post['downvotes']})"
        f" · {post['comment_count']} comments · post {post['id']}"
        + ("" if post["status"] == "visible" else f" · {post['status']}"),
        "",
    ]
    if post["url"]:
        lines += [f"<{post['url']}>", ""]
    if post["body"]:
        lines += [*post["body"].splitlines(), ""]
    lines += ["---", ""]
    children: dict[int | None, list[Record]] = defaultdict(list)
    ids = {c["id"] for c in comments}
    for comment in comments:
        parent = comment["parent_id"] if comment["parent_id"] in ids else None
        children[parent].append(comment)

    def walk(parent: int | None, depth: int) -> None:
        for c in children.get(parent, []):
            indent = "  " * depth
            status = "" if c["status"] == "visible" else f" · {c['status']}"
            lines.append(
                f"{indent}- **@{c['author']}** · {_when(c['created_at'])} · score {c['score']}"
                f" · comment {c['id']}{status}"
            )
            lines.extend(_quote_lines(c["body"], indent + "  "))
            walk(c["id"], depth + 1)

    walk(None, 0)
    if not comments:
        lines.append("*No comments.*")
    return "\n".join(lines).rstrip() + "\n"


def write(out: Path, selection: Selection) -> dict[str, tuple[str, int]]:
    """Write the transcripts; returns ``{relative path: (kind, records)}`` for the manifest."""
    posts_by_submolt: dict[str, list[Record]] = defaultdict(list)
    for post in selection.records("posts"):
        posts_by_submolt[post["submolt"]].append(post)
    comments: dict[int, list[Record]] = defaultdict(list)
    for comment in selection.records("comments"):
        comments[comment["post_id"]].append(comment)
    written: dict[str, tuple[str, int]] = {}
    submolts = list(selection.records("submolts"))
    top = ["# Submolts", ""]
    for sub in submolts:
        name = sub["name"]
        posts = posts_by_submolt.get(name, [])
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        index = [f"# m/{name}: {sub['title']}", ""]
        if sub["description"]:
            index += [sub["description"], ""]
        for post in posts:
            thread = comments.get(post["id"], [])
            file = f"{post['id']}.md"
            (folder / file).write_text(thread_markdown(post, thread), encoding="utf-8")
            written[f"{name}/{file}"] = ("thread", 1 + len(thread))
            index.append(
                f"- [{post['title']}]({file}) · @{post['author']} · {_when(post['created_at'])}"
                f" · score {post['score']} · {len(thread)} comments"
            )
        if not posts:
            index.append("*No posts.*")
        (folder / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
        written[f"{name}/index.md"] = ("index", len(posts))
        top.append(f"- [m/{name}]({name}/index.md) · {len(posts)} posts")
    (out / "index.md").write_text("\n".join(top) + "\n", encoding="utf-8")
    written["index.md"] = ("index", len(submolts))
    return written
