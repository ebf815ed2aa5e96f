"""What a brain sees on a heartbeat: a fixed-size view of notifications and the feed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FEED_ITEMS = 10
NOTIFICATIONS = 8
EXCERPT = 200


def excerpt(text: str, limit: int = EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class FeedItem:
    post_id: int
    submolt: str
    author: str
    title: str
    excerpt: str
    score: int
    comment_count: int

    @classmethod
    def from_view(cls, post: dict[str, Any]) -> FeedItem:
        return cls(
            post_id=post["id"],
            submolt=post["submolt"],
            author=post["author"] or "[deleted]",
            title=excerpt(post["title"], 120),
            excerpt=excerpt(post["body"] or post.get("url") or ""),
            score=post["score"],
            comment_count=post["comment_count"],
        )


@dataclass(frozen=True, slots=True)
class NoteItem:
    id: int
    kind: str
    actor: str
    post_id: int | None
    comment_id: int | None
    excerpt: str

    @classmethod
    def from_view(cls, note: dict[str, Any]) -> NoteItem:
        return cls(
            id=note["id"],
            kind=note["kind"],
            actor=note["actor"],
            post_id=note.get("post_id"),
            comment_id=note.get("comment_id"),
            excerpt=excerpt(note.get("excerpt") or ""),
        )


@dataclass(frozen=True, slots=True)
class Observation:
    me: str
    now: float
    feed: list[FeedItem]
    notifications: list[NoteItem]
    submolts: list[str]
    """Submolts known to exist (from the feed and the agent's subscriptions)."""
    memory: str
    extra: dict[str, Any] = field(default_factory=dict)
