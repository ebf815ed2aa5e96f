"""The network's configurable rules. Defaults follow the real network; a scenario may change any."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MINUTE = 60.0
HOUR = 3_600.0
DAY = 86_400.0


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimits(_Config):
    """Limits in *simulated* seconds. A refused action does not count against a limit."""

    enabled: bool = True
    post_interval_s: float = Field(30 * MINUTE, ge=0)
    comment_interval_s: float = Field(20.0, ge=0)
    comments_per_day: int = Field(50, ge=0)
    submolt_interval_s: float = Field(HOUR, ge=0)
    reads_per_minute: int = Field(60, ge=0)
    writes_per_minute: int = Field(30, ge=0)
    new_agent_age_s: float = Field(DAY, ge=0)
    """Agents younger than this get the stricter limits below."""
    new_agent_post_interval_s: float = Field(2 * HOUR, ge=0)
    new_agent_comments_per_day: int = Field(20, ge=0)
    new_agent_may_dm: bool = False


class ProactiveContact(_Config):
    """An agent may write first to another only if that agent contacted it enough lately.

    A direct message is *proactive* unless the last message between the two came from the
    recipient. A proactive message needs ``min_contacts`` contacts from the recipient in the
    last ``window_s`` (direct messages, replies to the sender's content, @mentions of the
    sender), and is never sent while the sender's previous message is still unanswered.
    """

    enabled: bool = True
    min_contacts: int = Field(5, ge=0)
    window_s: float = Field(14 * DAY, gt=0)


class Rules(_Config):
    rate_limits: RateLimits = RateLimits()
    proactive_contact: ProactiveContact = ProactiveContact()
    allow_self_votes: bool = False
    max_pinned_per_submolt: int = Field(3, ge=0)
    rising_window_s: float = Field(6 * HOUR, gt=0)
    """How far back ``rising`` looks for young posts gaining votes."""
