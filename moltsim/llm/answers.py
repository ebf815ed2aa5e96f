"""What a valid answer looks like, as a JSON schema a server can enforce.

Endpoints that take ``json_schema`` (llama.cpp, vLLM, OpenAI) turn it into a grammar, so the
model cannot write an id it was not shown: a comment on a post names one of the posts in its
feed, a reply names one of the comments in its notifications. A comment's target is one of two
shapes, never both, so a post's id cannot land in ``parent_id``. Only the first action may be a
piece of writing (post, comment, DM...); the others are votes, follows and subscriptions.
Lengths are capped so that an answer always fits in ``max_tokens`` and is never cut off
mid-string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moltsim.domain.actions import SUBMOLT_NAME_PATTERN

MAX_ANSWER_ACTIONS = 3
THOUGHTS_CHARS = 200
TITLE_CHARS = 120
BODY_CHARS = 500
BIO_CHARS = 200


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit}


def _action(kind: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": kind}, **fields},
        "required": ["type", *fields],
        "additionalProperties": False,
    }


def _one_of(values: Sequence[int | str]) -> dict[str, Any]:
    return {"enum": list(values)}


def answer_schema(
    posts: Sequence[int],
    comments: Sequence[int],
    submolts: Sequence[str],
    agents: Sequence[str],
    *,
    joinable: Sequence[str] | None = None,
    followable: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The answer ``{"thoughts", "actions"}`` with every id drawn from what the agent was
    shown: ``posts`` in its feed, ``comments`` in its notifications, ``submolts`` it knows,
    ``agents`` whose text it read; it subscribes only to ``joinable`` submolts and follows
    only ``followable`` agents (those it has not joined or followed yet; default: all)."""
    joinable = submolts if joinable is None else joinable
    followable = agents if followable is None else followable
    writing: list[dict[str, Any]] = []
    if submolts:
        writing.append(
            _action("post", submolt=_one_of(submolts), title=_text(TITLE_CHARS),
                    body=_text(BODY_CHARS))
        )  # fmt: skip
    if posts:
        writing.append(_action("comment", post_id=_one_of(posts), body=_text(BODY_CHARS)))
    if comments:
        writing.append(_action("comment", parent_id=_one_of(comments), body=_text(BODY_CHARS)))
    if agents:
        writing.append(_action("dm", to=_one_of(agents), body=_text(BODY_CHARS)))
    writing.append(
        _action(
            "create_submolt",
            name={"type": "string", "pattern": SUBMOLT_NAME_PATTERN},
            title=_text(60),
        )
    )
    writing.append(_action("update_profile", bio=_text(BIO_CHARS)))
    light: list[dict[str, Any]] = []
    vote = {"enum": [1, -1]}
    if posts:
        light.append(_action("vote", target={"const": "post"}, id=_one_of(posts), value=vote))
    if comments:
        light.append(_action("vote", target={"const": "comment"}, id=_one_of(comments), value=vote))
    if joinable:
        light.append(_action("subscribe", submolt=_one_of(joinable)))
    if followable:
        light.append(_action("follow", agent=_one_of(followable)))
    actions: dict[str, Any] = {
        "type": "array",
        "prefixItems": [{"anyOf": writing + light}],
        "maxItems": MAX_ANSWER_ACTIONS,
    }
    # After the first action only light ones: all of an answer lands at once, and the rate
    # limits (one post per 30 min, one comment per 20 s) would refuse a second piece of writing.
    actions["items"] = {"anyOf": light} if light else False
    return {
        "type": "object",
        "properties": {
            "thoughts": {"type": "string", "maxLength": THOUGHTS_CHARS},
            "actions": actions,
        },
        "required": ["thoughts", "actions"],
        "additionalProperties": False,
    }
