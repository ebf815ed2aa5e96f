"""Stable refusal codes. Agents, logs and exports depend on these strings: never rename one."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why the engine refused an envelope or an action."""

    INVALID = "invalid"
    """The action is well-formed JSON but breaks a field rule (length, pattern, combination)."""
    NOT_FOUND = "not_found"
    """The submolt, post, comment or agent it names does not exist."""
    GONE = "gone"
    """The target existed but was deleted by its author or removed by a moderator."""
    FORBIDDEN = "forbidden"
    """The agent is not allowed to do this (not a moderator, voting on its own content...)."""
    DUPLICATE = "duplicate"
    """It is already so: name taken, already following, already subscribed, already pinned."""
    LIMIT_REACHED = "limit_reached"
    """A fixed cap was hit (e.g. three pinned posts per submolt)."""
    RATE_LIMITED = "rate_limited"
    """Too many actions of this kind in the window; ``retry_after`` says when to try again."""
    PROACTIVE_CONTACT_NOT_ALLOWED = "proactive_contact_not_allowed"
    """An unsolicited direct message the proactive-contact policy does not allow."""
    MALFORMED = "malformed"
    """The envelope or action could not be parsed at all."""
    TOO_LARGE = "too_large"
    """The message exceeds the size limit."""
    UNKNOWN_AGENT = "unknown_agent"
    """The envelope names an agent that is not registered in this run."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not verify against the agent's registered public key."""
    REPLAY = "replay"
    """The sequence number is stale, too far ahead, or already processed (then the original
    result is returned)."""
    NOT_YOUR_AGENT = "not_your_agent"
    """The envelope's agent is not one the publishing pool (or topic) may act for."""
    INTERNAL = "internal"
    """The engine failed; the action was not applied."""


class Refusal(Exception):
    """Raised inside the rules to refuse an action; nothing has been changed when it is raised."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"Refusal({self.code.value!r}, {self.message!r}, retry_after={self.retry_after!r})"
