"""The engine's working set: what the rules must know to decide, held in memory.

Text (titles, bodies) is not kept here, only the numbers and links the rules check. Every
mutation is also noted in :class:`Changes`, which the store turns into one group transaction.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from moltsim.domain.entities import Role, Status

AGENT_BITS = 32
"""Votes and follows are keyed by ``(other_id << AGENT_BITS) | agent_id`` to keep keys small."""


def pair_key(high: int, agent_id: int) -> int:
    return (high << AGENT_BITS) | agent_id


@dataclass(slots=True)
class AgentState:
    id: int
    handle: str
    display_name: str
    bio: str
    created_at: float
    karma: int = 0
    post_count: int = 0
    comment_count: int = 0
    follower_count: int = 0
    following_count: int = 0
    objects_to_training: bool = False
    public_key: bytes = b""
    pool: str | None = None
    """The broker account allowed to act for this agent (``None``: any pool)."""
    rate: dict[str, deque[float]] = field(default_factory=dict)
    """Times of accepted actions per rate-limit bucket, oldest first."""


@dataclass(slots=True)
class SubmoltState:
    id: int
    name: str
    owner_id: int | None
    created_at: float
    subscriber_count: int = 0
    post_count: int = 0
    moderators: set[int] = field(default_factory=set)
    subscribers: set[int] = field(default_factory=set)
    pinned: list[int] = field(default_factory=list)

    def can_moderate(self, agent_id: int) -> bool:
        return agent_id == self.owner_id or agent_id in self.moderators


@dataclass(slots=True)
class PostState:
    id: int
    submolt_id: int
    author_id: int
    created_at: float
    score: int = 0
    ups: int = 0
    downs: int = 0
    comment_count: int = 0
    status: Status = Status.VISIBLE
    pinned: bool = False


@dataclass(slots=True)
class CommentState:
    id: int
    post_id: int
    parent_id: int | None
    author_id: int
    created_at: float
    depth: int
    score: int = 0
    ups: int = 0
    downs: int = 0
    status: Status = Status.VISIBLE


Row = tuple[Any, ...]


@dataclass(slots=True)
class Changes:
    """What changed since the last commit: new rows, and ids whose current state must be saved.

    Dirty sets are resolved against memory when the batch is taken, so an entity changed ten
    times in one batch is written once, with its final values.
    """

    agents_new: list[Row] = field(default_factory=list)
    agents_dirty: set[int] = field(default_factory=set)
    submolts_new: list[Row] = field(default_factory=list)
    submolts_dirty: set[int] = field(default_factory=set)
    memberships_dirty: set[tuple[int, int, Role]] = field(default_factory=set)
    posts_new: list[Row] = field(default_factory=list)
    post_scores_dirty: set[int] = field(default_factory=set)
    post_counts_dirty: set[int] = field(default_factory=set)
    post_meta_dirty: set[int] = field(default_factory=set)
    comments_new: list[Row] = field(default_factory=list)
    comment_scores_dirty: set[int] = field(default_factory=set)
    comment_meta_dirty: set[int] = field(default_factory=set)
    post_votes_dirty: dict[int, float] = field(default_factory=dict)
    """Vote key to the sim time of its latest change."""
    comment_votes_dirty: dict[int, float] = field(default_factory=dict)
    follows_dirty: set[int] = field(default_factory=set)
    dms_new: list[Row] = field(default_factory=list)
    notifications_new: list[Row] = field(default_factory=list)
    llm_calls_new: list[Row] = field(default_factory=list)
    ledger: list[Row] = field(default_factory=list)
    agents_objected: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ledger)


@dataclass(slots=True)
class ForumState:
    agents: dict[int, AgentState] = field(default_factory=dict)
    handles: dict[str, int] = field(default_factory=dict)
    """Lowercased handle to agent id."""
    submolts: dict[str, SubmoltState] = field(default_factory=dict)
    submolts_by_id: dict[int, SubmoltState] = field(default_factory=dict)
    posts: dict[int, PostState] = field(default_factory=dict)
    comments: dict[int, CommentState] = field(default_factory=dict)
    post_votes: dict[int, int] = field(default_factory=dict)
    """``pair_key(post_id, agent_id)`` to +1 or -1."""
    comment_votes: dict[int, int] = field(default_factory=dict)
    follows: dict[int, float] = field(default_factory=dict)
    """``pair_key(followee_id, follower_id)`` to the time the follow began."""
    last_dm_sender: dict[tuple[int, int], int] = field(default_factory=dict)
    """For each conversation ``(low_id, high_id)``, who sent its latest message."""
    contacts: dict[int, deque[float]] = field(default_factory=dict)
    """``pair_key(to_id, from_id)`` to recent times ``from`` contacted ``to`` (newest last)."""
    next_agent_id: int = 1
    next_submolt_id: int = 1
    next_post_id: int = 1
    next_comment_id: int = 1
    next_dm_id: int = 1
    next_notification_id: int = 1
    next_action_id: int = 1
    next_llm_call_id: int = 1
