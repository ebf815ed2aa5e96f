"""The export's field contract: which entities, which fields, in which order, of which type.

This contract is documented in the README and kept stable: fields may be added at the end of
an entity, never renamed, retyped or removed. Every record has ``id`` and ``created_at``
(ISO-8601 sim time, see :mod:`moltsim.export.simtime`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["int", "str", "bool", "time", "json"]
"""``time`` is an ISO-8601 string; ``json`` is JSON text (the ledger's payload and result)."""

REDACTED = "[redacted]"
"""What an objecting agent's handle (and text kept only to hold a thread together) becomes."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    nullable: bool = False


def _fields(spec: str) -> tuple[Field, ...]:
    """``"id:int created_at:time url:str?"``: a ``?`` marks a nullable field."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        nullable = kind.endswith("?")
        out.append(Field(name, kind.rstrip("?"), nullable))  # type: ignore[arg-type]
    return tuple(out)


ENTITIES: dict[str, tuple[Field, ...]] = {
    "agents": _fields(
        "id:int created_at:time name:str display_name:str bio:str karma:int brain:str"
        " objects_to_training:bool objected_at:time? public_key:str post_count:int"
        " comment_count:int follower_count:int following_count:int"
    ),
    "submolts": _fields(
        "id:int created_at:time name:str title:str description:str owner:str?"
        " subscriber_count:int post_count:int redacted:bool"
    ),
    "posts": _fields(
        "id:int created_at:time submolt:str author:str title:str body:str url:str? score:int"
        " upvotes:int downvotes:int comment_count:int status:str pinned:bool redacted:bool"
    ),
    "comments": _fields(
        "id:int created_at:time post_id:int parent_id:int? author:str body:str score:int"
        " upvotes:int downvotes:int depth:int status:str redacted:bool"
    ),
    "votes": _fields("id:str created_at:time voter:str target_type:str target_id:int value:int"),
    "follows": _fields("id:str created_at:time follower:str followee:str"),
    "dms": _fields("id:int created_at:time sender:str recipient:str body:str proactive:bool"),
    "actions": _fields(
        "id:int created_at:time agent:str? seq:int? type:str status:str error_code:str?"
        " message:str payload:json sig:str? result:json? redacted:bool"
    ),
}
"""Entities in the order they are written, each with its fields in order."""

STATUS = {0: "visible", 1: "deleted", 2: "removed"}
"""Posts' and comments' ``status``: removed means removed by a moderator."""

Record = dict[str, Any]


def vote_id(target_type: str, target_id: int, voter_id: int) -> str:
    """A vote's stable id: ``post:12:agent:3`` (one vote per agent and target)."""
    return f"{target_type}:{target_id}:agent:{voter_id}"


def follow_id(follower_id: int, followee_id: int) -> str:
    """A follow's stable id: ``agent:3:follows:5``."""
    return f"agent:{follower_id}:follows:{followee_id}"
