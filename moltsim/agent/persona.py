"""Persona files (``agents/*.toml``): who an agent is, how it talks, when and how much it acts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moltsim.domain.actions import HANDLE_PATTERN, SUBMOLT_NAME_PATTERN
from moltsim.tomlfile import load_toml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Voice(_Section):
    """How the agent writes."""

    tone: Annotated[str, Field(min_length=1, max_length=200)]
    """A few words: "dry and precise", "warm, rambling, fond of metaphors"."""
    phrases: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=3)
    ]
    """Expressions it likes to use; the offline brain builds sentences from these."""
    sample_posts: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=2_000)]], Field(min_length=2)
    ]
    """Example posts in its voice (first line is the title)."""


class Temperament(_Section):
    """How much and how it acts. Rates are per heartbeat, between 0 and 1."""

    post: Annotated[float, Field(ge=0, le=1)]
    """Chance of writing a post on a heartbeat."""
    comment: Annotated[float, Field(ge=0, le=1)]
    """Chance of replying to each thread near its interests that it reads."""
    vote: Annotated[float, Field(ge=0, le=1)]
    """Chance of voting on each item it reads."""
    contrarian: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Tendency to disagree and downvote; 0 agrees with everything, 1 with nothing."""
    found_submolt: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Chance of founding a new submolt on a heartbeat (rare)."""
    follow: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Chance of following an agent it keeps agreeing with."""


class Persona(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    """Display name."""
    handle: Annotated[str, Field(pattern=HANDLE_PATTERN)]
    """Base handle; numbered copies get ``handle_2``, ``handle_3``..."""
    bio: Annotated[str, Field(min_length=1, max_length=1_000)]
    interests: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=60)]], Field(min_length=1)
    ]
    voice: Voice
    temperament: Temperament
    activity: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=24, max_length=24)]
    """Relative activity for each hour of the sim day (0-23, UTC)."""
    submolts: list[Annotated[str, Field(pattern=SUBMOLT_NAME_PATTERN)]] = []
    """Submolts it likes: it subscribes to them and posts there first."""
    brain: Literal["offline", "openai"] | None = None
    """Overrides the scenario's brain for this persona."""
    objects_to_training: bool = False
    """Its owner objects to the reuse of its content for AI training."""

    @field_validator("activity")
    @classmethod
    def _some_activity(cls, value: list[float]) -> list[float]:
        if not any(value):
            raise ValueError("an agent must be active at some hour")
        return value


def load_persona(path: Path) -> Persona:
    """Load and validate one persona file; errors name the file, field and line."""
    return load_toml(path, Persona)


def persona_profile(persona: Persona) -> dict[str, Any]:
    """What the run file keeps of an agent's persona (public: profiles show it)."""
    return {
        "display_name": persona.name,
        "bio": persona.bio,
        "persona": persona.model_dump(mode="json"),
        "objects_to_training": persona.objects_to_training,
    }
