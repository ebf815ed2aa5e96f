"""The scenario file (TOML): what to simulate, for how long, with which agents and rules.

Every problem is reported at once, each with its field path and line (``moltsim validate``).
"""

from __future__ import annotations

import glob
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from moltsim.domain.actions import HANDLE_PATTERN, SUBMOLT_NAME_PATTERN
from moltsim.engine.rules import Rules
from moltsim.llm.config import LlmConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800, None: 1}


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"24h"``, ``"2d"``, ``"1w"`` to seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '24h'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError("a duration is a number of seconds or a string like '90s', '30m', '24h', '2d'")


def parse_time(value: Any) -> float:
    """An RFC 3339 date-time (TOML's own or a string) to epoch seconds; naive means UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected a date-time like 2026-01-28T00:00:00Z") from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    raise ValueError("expected a date-time like 2026-01-28T00:00:00Z")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Offset = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Time = Annotated[float, BeforeValidator(parse_time)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clock(_Section):
    mode: Literal["realtime", "stepped"] = "realtime"
    speed: Annotated[float, Field(gt=0)] = 1.0
    """Realtime: sim seconds per wall second (1 for a live night, 60 to fold a night into
    minutes of sim per second...)."""
    start: Time = datetime(2026, 1, 28, tzinfo=UTC).timestamp()
    duration: Duration = 86_400.0
    tick: Duration = 600.0
    """Stepped: sim time per tick."""


class SubmoltSeed(_Section):
    name: Annotated[str, Field(pattern=SUBMOLT_NAME_PATTERN)]
    title: Annotated[str, Field(max_length=100)] = ""
    description: Annotated[str, Field(max_length=1_000)] = ""


class AgentGroup(_Section):
    personas: Annotated[list[str], Field(min_length=1)]
    """Persona files or globs, relative to the scenario file."""
    count: Annotated[int, Field(ge=1, le=100_000)] = 1
    """Agents per persona file (copies get numbered handles)."""
    brain: Literal["offline", "openai"] = "offline"
    heartbeat: Duration = 4 * 3_600.0
    join_at: Offset = 0.0
    """Sim time after the start when this group joins (0: at the start)."""

    @field_validator("brain")
    @classmethod
    def _llm_configured(cls, brain: str, info: ValidationInfo) -> str:
        if brain == "openai" and (info.context or {}).get("has_llm") is False:
            raise ValueError("agents with the openai brain need an [llm] section")
        return brain

    @field_validator("personas")
    @classmethod
    def _files_exist(cls, patterns: list[str], info: ValidationInfo) -> list[str]:
        base = (info.context or {}).get("base", Path.cwd())
        missing = [p for p in patterns if not resolve_personas(base, [p])]
        if missing:
            names = ", ".join(repr(p) for p in missing)
            raise ValueError(f"{names} match(es) no persona file (relative to {base})")
        return patterns


class Llm(LlmConfig):
    """``[llm]``: the endpoint for agents with the openai brain."""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in ("api_key", "key", "token")):
            raise ValueError(
                "never put an API key in a scenario file: set it in an environment variable"
                " and name that variable in api_key_env"
            )
        return data


class Budgets(_Section):
    max_wall_time: Duration | None = None
    max_actions: Annotated[int, Field(gt=0)] | None = None
    max_llm_tokens: Annotated[int, Field(gt=0)] | None = None
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    prompt_token_price_usd: Annotated[float, Field(ge=0)] = 0.0
    """Per token, for the cost budget and the running cost."""
    completion_token_price_usd: Annotated[float, Field(ge=0)] = 0.0


class Metrics(_Section):
    """``[metrics]``: how often the runner samples the run's health into the run file."""

    interval: Annotated[float, BeforeValidator(parse_duration), Field(ge=1)] = 60.0
    """Wall time between samples (at least one second)."""


class Event(_Section):
    """Something the scenario makes happen at a sim time after the start."""

    at: Offset
    kind: Literal["objection", "create_submolt", "seed_post"]
    agent: Annotated[str, Field(pattern=HANDLE_PATTERN)] | None = None
    """objection, seed_post: the agent concerned."""
    submolt: Annotated[str, Field(pattern=SUBMOLT_NAME_PATTERN)] | None = None
    title: Annotated[str, Field(max_length=300)] = ""
    body: Annotated[str, Field(max_length=40_000)] = ""

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Self:
        need = {"objection": ("agent",), "create_submolt": ("submolt",),
                "seed_post": ("agent", "submolt", "title")}[self.kind]  # fmt: skip
        missing = [f for f in need if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} event needs {', '.join(missing)}")
        return self


class Scenario(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: str = ""
    seed: int = 0
    clock: Clock = Clock()
    submolts: list[SubmoltSeed] = []
    agents: Annotated[list[AgentGroup], Field(min_length=1)]
    llm: Llm | None = None
    rules: Rules = Rules()
    budgets: Budgets = Budgets()
    metrics: Metrics = Metrics()
    events: list[Event] = []
    agents_per_pool: Annotated[int, Field(ge=1)] = 500
    """How many agents one pool process hosts."""

    @model_validator(mode="after")
    def _llm_when_needed(self, info: ValidationInfo) -> Self:
        # Loaded from a file, each group reports this itself (with its line); this catches
        # scenarios built in code.
        checked = (info.context or {}).get("has_llm") is not None
        if not checked and any(g.brain == "openai" for g in self.agents) and self.llm is None:
            raise ValueError("agents use the openai brain: add an [llm] section")
        return self


def resolve_personas(base: Path, patterns: list[str]) -> list[Path]:
    """The persona files a group names, in a stable order."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        full = path if path.is_absolute() else base / path
        matches = sorted(Path(p) for p in glob.glob(str(full)))
        found.extend(m for m in matches if m.is_file() and m not in found)
    return found
