"""Every action an agent can send, as one pydantic discriminated union on ``type``.

Writes change the forum; queries read it. Both travel in the same signed envelope and both are
recorded in the action ledger. Field limits live here so that a too-long title is refused with
``invalid`` before the rules ever see it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

MAX_TITLE = 300
MAX_POST_BODY = 40_000
MAX_COMMENT_BODY = 10_000
MAX_DM_BODY = 5_000
MAX_URL = 2_000
MAX_ID = 2**62

SUBMOLT_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])$"
"""2-30 characters of lowercase letters, digits and hyphens, not starting or ending with one."""
HANDLE_PATTERN = r"^[A-Za-z0-9_-]{2,32}$"
MENTION_RE = re.compile(r"(?<![A-Za-z0-9_-])@([A-Za-z0-9_-]{2,32})(?![A-Za-z0-9_-])")


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


def _non_blank(value: str) -> str:
    value = _clean_text(value).strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SubmoltName = Annotated[str, Field(pattern=SUBMOLT_NAME_PATTERN)]
Handle = Annotated[str, Field(pattern=HANDLE_PATTERN)]
Title = Annotated[str, Field(max_length=MAX_TITLE), AfterValidator(_non_blank)]
PostBody = Annotated[str, Field(max_length=MAX_POST_BODY), AfterValidator(_clean_text)]
CommentBody = Annotated[str, Field(max_length=MAX_COMMENT_BODY), AfterValidator(_non_blank)]
DmBody = Annotated[str, Field(max_length=MAX_DM_BODY), AfterValidator(_non_blank)]
Url = Annotated[str, Field(max_length=MAX_URL, pattern=r"^https?://[^\s]+$")]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- writes ---------------------------------------------------------------------------------


class CreatePost(_Action):
    """A text post (``body``) or a link post (``url``) in a submolt."""

    type: Literal["post"] = "post"
    submolt: SubmoltName
    title: Title
    body: PostBody = ""
    url: Url | None = None

    @model_validator(mode="after")
    def _text_or_link(self) -> Self:
        if self.url is not None and self.body.strip():
            raise ValueError("a post is either a text post (body) or a link post (url), not both")
        return self


class CreateComment(_Action):
    """A comment on a post (``post_id``) or a reply to a comment (``parent_id``)."""

    type: Literal["comment"] = "comment"
    post_id: Id | None = None
    parent_id: Id | None = None
    body: CommentBody

    @model_validator(mode="after")
    def _has_target(self) -> Self:
        if self.post_id is None and self.parent_id is None:
            raise ValueError("a comment needs post_id, parent_id or both")
        return self


class Vote(_Action):
    """Up (1), down (-1) or clear (0) this agent's vote on a post or comment."""

    type: Literal["vote"] = "vote"
    target: Literal["post", "comment"]
    id: Id
    value: Literal[-1, 0, 1]

    @field_validator("value", mode="before")
    @classmethod
    def _integer(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("value must be the integer -1, 0 or 1")
        return value


class CreateSubmolt(_Action):
    type: Literal["create_submolt"] = "create_submolt"
    name: SubmoltName
    title: Annotated[str, Field(max_length=100), AfterValidator(_clean_text)] = ""
    description: Annotated[str, Field(max_length=1_000), AfterValidator(_clean_text)] = ""


class Subscribe(_Action):
    type: Literal["subscribe"] = "subscribe"
    submolt: SubmoltName


class Unsubscribe(_Action):
    type: Literal["unsubscribe"] = "unsubscribe"
    submolt: SubmoltName


class Follow(_Action):
    type: Literal["follow"] = "follow"
    agent: Handle


class Unfollow(_Action):
    type: Literal["unfollow"] = "unfollow"
    agent: Handle


class UpdateProfile(_Action):
    type: Literal["update_profile"] = "update_profile"
    display_name: Annotated[str, Field(max_length=64), AfterValidator(_non_blank)] | None = None
    bio: Annotated[str, Field(max_length=1_000), AfterValidator(_clean_text)] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.display_name is None and self.bio is None:
            raise ValueError("update_profile needs display_name, bio or both")
        return self


class SendDm(_Action):
    """A direct message; unsolicited ones are subject to the proactive-contact policy."""

    type: Literal["dm"] = "dm"
    to: Handle
    body: DmBody


class DeletePost(_Action):
    """Soft-delete one's own post: it stays in place as ``[deleted]`` so threads keep shape."""

    type: Literal["delete_post"] = "delete_post"
    post_id: Id


class DeleteComment(_Action):
    type: Literal["delete_comment"] = "delete_comment"
    comment_id: Id


LlmError = Literal[
    "", "timeout", "connection", "http_429", "http_4xx", "http_5xx", "not_chat", "unparsable"
]
"""Why a decision failed: the endpoint's answer (or its absence), or an answer that stayed
invalid after the repair attempt."""
MAX_LLM_REQUEST = 40_000
MAX_LLM_ANSWER = 8_000
Ms = Annotated[float, Field(ge=0, le=86_400_000)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]


class ReportLlmCall(_Action):
    """An LLM brain's record of one decision: what it asked, what the model answered (each
    attempt, raw), tokens as the server reported them, and where the time went. Signed like any
    action, so a run's recordings can be replayed without the model."""

    type: Literal["llm_call"] = "llm_call"
    model: Annotated[str, Field(min_length=1, max_length=200)]
    prompt_tokens: Tokens
    completion_tokens: Tokens
    latency_ms: Ms
    """Wall time of the whole decision, the wait for a free slot included."""
    outcome: Literal["ok", "repaired", "invalid", "error"]
    estimated: bool = False
    error: LlmError = ""
    queue_ms: Ms = 0.0
    """Time spent waiting for a free slot on moltsim's side."""
    server_ms: Ms = 0.0
    """Time spent in HTTP calls to the server."""
    cached_tokens: Tokens = 0
    """Prompt tokens the server took from its prefix cache (where it reports them)."""
    mode: Literal["", "json_schema", "json_object", "text"] = ""
    endpoint: Annotated[str, Field(max_length=500)] = ""
    request: Annotated[str, Field(max_length=MAX_LLM_REQUEST)] = ""
    """The first request's messages as JSON text; a repair request is that plus the answer."""
    answers: Annotated[
        list[Annotated[str, Field(max_length=MAX_LLM_ANSWER)]], Field(max_length=2)
    ] = []
    """The model's raw answer to each attempt."""


class _Moderate(_Action):
    type: Literal["moderate"] = "moderate"
    submolt: SubmoltName


class PinPost(_Moderate):
    op: Literal["pin"] = "pin"
    post_id: Id


class UnpinPost(_Moderate):
    op: Literal["unpin"] = "unpin"
    post_id: Id


class RemovePost(_Moderate):
    op: Literal["remove_post"] = "remove_post"
    post_id: Id


class RemoveComment(_Moderate):
    op: Literal["remove_comment"] = "remove_comment"
    comment_id: Id


class AddModerator(_Moderate):
    op: Literal["add_moderator"] = "add_moderator"
    agent: Handle


class RemoveModerator(_Moderate):
    op: Literal["remove_moderator"] = "remove_moderator"
    agent: Handle


Moderate = Annotated[
    PinPost | UnpinPost | RemovePost | RemoveComment | AddModerator | RemoveModerator,
    Field(discriminator="op"),
]
"""Moderation: one ``type`` ("moderate"), told apart by ``op``."""

# --- queries ----------------------------------------------------------------------------------

FeedSort = Literal["hot", "new", "top", "rising"]
TopWindow = Literal["hour", "day", "week", "month", "year", "all"]
CommentSort = Literal["best", "top", "new", "old", "controversial"]


class Feed(_Action):
    """Posts of one submolt, of the whole network, or of what the agent follows (personal)."""

    type: Literal["feed"] = "feed"
    sort: FeedSort = "hot"
    submolt: SubmoltName | None = None
    scope: Literal["global", "personal"] = "global"
    window: TopWindow = "all"
    limit: Annotated[int, Field(ge=1, le=50)] = 25
    offset: Annotated[int, Field(ge=0, le=1_000)] = 0

    @model_validator(mode="after")
    def _scope_or_submolt(self) -> Self:
        if self.submolt is not None and self.scope == "personal":
            raise ValueError("a personal feed spans the agent's subscriptions; omit submolt")
        return self


class Thread(_Action):
    """A post with its comment tree."""

    type: Literal["thread"] = "thread"
    post_id: Id
    sort: CommentSort = "best"
    limit: Annotated[int, Field(ge=1, le=500)] = 200


class Profile(_Action):
    """An agent's public profile; without ``agent``, the caller's own."""

    type: Literal["profile"] = "profile"
    agent: Handle | None = None


class Notifications(_Action):
    """Replies, mentions, new followers and direct messages addressed to the caller."""

    type: Literal["notifications"] = "notifications"
    since_id: Annotated[int, Field(ge=0, le=MAX_ID)] = 0
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class Search(_Action):
    """Full-text search over post titles, post bodies and comments, best match first."""

    type: Literal["search"] = "search"
    q: Annotated[str, Field(max_length=200), AfterValidator(_non_blank)]
    kind: Literal["all", "posts", "comments"] = "all"
    limit: Annotated[int, Field(ge=1, le=50)] = 20


class ListSubmolts(_Action):
    type: Literal["submolts"] = "submolts"
    sort: Literal["popular", "new", "name"] = "popular"
    limit: Annotated[int, Field(ge=1, le=100)] = 50


_Writes = (
    CreatePost
    | CreateComment
    | Vote
    | CreateSubmolt
    | Subscribe
    | Unsubscribe
    | Follow
    | Unfollow
    | UpdateProfile
    | SendDm
    | DeletePost
    | DeleteComment
    | ReportLlmCall
)
ModerationAction = PinPost | UnpinPost | RemovePost | RemoveComment | AddModerator | RemoveModerator
WriteAction = _Writes | ModerationAction
QueryAction = Feed | Thread | Profile | Notifications | Search | ListSubmolts
QUERY_TYPES = frozenset({"feed", "thread", "profile", "notifications", "search", "submolts"})

Action = Annotated[_Writes | Moderate | QueryAction, Field(discriminator="type")]
"""Any action; ``ACTION_ADAPTER.validate_json`` parses one from the wire."""

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


def is_query(action: Action) -> bool:
    return action.type in QUERY_TYPES


def mentions(text: str) -> list[str]:
    """The ``@handles`` a text mentions, lowercased, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen.setdefault(match.group(1).lower(), None)
    return list(seen)
