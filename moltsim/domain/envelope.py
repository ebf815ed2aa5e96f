"""The signed envelope that carries every action over the wire, and the engine's reply."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moltsim.domain.actions import HANDLE_PATTERN, MAX_ID

MAX_ENVELOPE_BYTES = 64 * 1024
"""Larger messages are refused with ``too_large`` before they are parsed."""
HELLO_SEQ = 0
"""``seq`` of a hello: it asks for the agent's last seq and consumes none."""


class Envelope(BaseModel):
    """``{"v":1, "agent":HANDLE, "seq":N, "action":{...}, "sig":BASE64}``.

    ``sig`` is Ed25519 over the canonical JSON (sorted keys, no spaces, UTF-8) of the other
    four fields. ``seq`` rises by one per agent; ``0`` is reserved for ``hello``.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    v: Literal[1]
    agent: Annotated[str, Field(pattern=HANDLE_PATTERN)]
    seq: Annotated[int, Field(ge=0, le=MAX_ID)]
    action: dict[str, Any]
    sig: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("v", mode="before")
    @classmethod
    def _integer(cls, value: object) -> object:
        # ``Literal[1]`` alone lets ``true`` and ``1.0`` through (both equal 1), even in
        # strict mode, and the signature would then be checked over bytes never sent.
        if type(value) is not int:
            raise ValueError("v must be the integer 1")
        return value
