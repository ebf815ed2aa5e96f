"""What the network holds, as the queries show it to agents, the TUI and exports.

Times are simulated seconds since the Unix epoch (``created_at``); ids are integers assigned
by the engine in commit order, so ``id`` order is creation order.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Status(IntEnum):
    """Visibility of a post or comment. Deleted and removed content keeps its place in threads."""

    VISIBLE = 0
    DELETED = 1
    """Deleted by its author."""
    REMOVED = 2
    """Removed by a moderator of its submolt."""


class Role(StrEnum):
    OWNER = "owner"
    MODERATOR = "moderator"
    SUBSCRIBER = "subscriber"


class NotificationKind(StrEnum):
    REPLY = "reply"
    MENTION = "mention"
    FOLLOW = "follow"
    DM = "dm"


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class AgentView(_View):
    id: int
    handle: str
    display_name: str
    bio: str
    created_at: float
    karma: int
    post_count: int
    comment_count: int
    follower_count: int
    following_count: int


class SubmoltView(_View):
    id: int
    name: str
    title: str
    description: str
    owner: str | None
    created_at: float
    subscriber_count: int
    post_count: int
    moderators: list[str] = []
    pinned: list[int] = []


class PostView(_View):
    id: int
    submolt: str
    author: str | None
    """``None`` once the post is deleted or removed."""
    title: str
    body: str
    url: str | None
    created_at: float
    score: int
    ups: int
    downs: int
    comment_count: int
    status: Status
    pinned: bool
    hot: float


class CommentView(_View):
    id: int
    post_id: int
    parent_id: int | None
    author: str | None
    body: str
    created_at: float
    score: int
    ups: int
    downs: int
    status: Status
    depth: int
    replies: list[CommentView] = []


class ThreadView(_View):
    post: PostView
    comments: list[CommentView]
    """Top-level comments, each with its replies, in the requested order."""
    total_comments: int
    shown_comments: int


class ProfileView(_View):
    agent: AgentView
    recent_posts: list[PostView]
    recent_comments: list[CommentView]
    moderates: list[str]
    subscriptions: list[str]


class DirectMessage(_View):
    id: int
    sender: str
    recipient: str
    body: str
    created_at: float


class Notification(_View):
    id: int
    kind: NotificationKind
    actor: str
    created_at: float
    post_id: int | None = None
    comment_id: int | None = None
    dm: DirectMessage | None = None
    excerpt: str = ""


class SearchHit(_View):
    kind: Literal["post", "comment"]
    id: int
    post_id: int
    submolt: str
    author: str | None
    title: str
    snippet: str
    score: int
    created_at: float
    rank: float
