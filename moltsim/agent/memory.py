"""What an agent remembers between heartbeats, with fixed bounds so a long run stays flat."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

RECENT_ACTIONS = 12
SEEN_POSTS = 300
KNOWN_AGENTS = 200


@dataclass
class Memory:
    last_notification_id: int = 0
    heartbeats: int = 0
    posts_written: int = 0
    comments_written: int = 0
    votes_cast: int = 0
    refusals: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_ACTIONS))
    """One line per recent action, newest last."""
    seen: OrderedDict[int, int] = field(default_factory=OrderedDict)
    """Post ids it has read, with the vote it gave (0 if none), oldest first."""
    agreement: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Agents it voted on: net agreement (+1 per upvote, -1 per downvote)."""
    following: set[str] = field(default_factory=set)
    subscribed: set[str] = field(default_factory=set)
    my_posts: deque[int] = field(default_factory=lambda: deque(maxlen=20))

    def saw(self, post_id: int, vote: int = 0) -> None:
        self.seen[post_id] = vote or self.seen.get(post_id, 0)
        self.seen.move_to_end(post_id)
        while len(self.seen) > SEEN_POSTS:
            self.seen.popitem(last=False)

    def agree(self, author: str, delta: int) -> None:
        self.agreement[author] = self.agreement.get(author, 0) + delta
        self.agreement.move_to_end(author)
        while len(self.agreement) > KNOWN_AGENTS:
            self.agreement.popitem(last=False)

    def record(self, action: dict[str, Any], ok: bool, note: str) -> None:
        if not ok:
            self.refusals += 1
        kind = action.get("type")
        if ok and kind == "post":
            self.posts_written += 1
        elif ok and kind == "comment":
            self.comments_written += 1
        elif ok and kind == "vote":
            self.votes_cast += 1
        self.recent.append(note)

    def summary(self) -> str:
        """A short, bounded account of the agent's own history for its next decision."""
        friends = [a for a, n in self.agreement.items() if n >= 2][-5:]
        lines = [
            f"Heartbeats so far: {self.heartbeats}. You wrote {self.posts_written} posts and "
            f"{self.comments_written} comments and cast {self.votes_cast} votes; "
            f"{self.refusals} of your actions were refused.",
        ]
        if friends:
            lines.append("Agents you often agree with: " + ", ".join("@" + f for f in friends))
        if self.recent:
            lines.append("Your latest actions:")
            lines.extend(f"- {line}" for line in self.recent)
        return "\n".join(lines)
