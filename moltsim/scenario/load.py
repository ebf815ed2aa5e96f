"""Loading a scenario: the file, its persona files, and the agents it asks for."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltsim.agent.persona import Persona, load_persona
from moltsim.scenario.schema import Scenario, resolve_personas
from moltsim.tomlfile import ConfigError, load_toml


@dataclass(frozen=True, slots=True)
class PlannedAgent:
    handle: str
    persona: Persona
    brain: str
    heartbeat_s: float
    join_at: float
    """Sim seconds after the start."""


def load_scenario(path: Path) -> Scenario:
    """The scenario and every persona it names, checked; :class:`ConfigError` lists it all,
    the scenario's own problems and its persona files' together."""
    base = path.resolve().parent
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = None  # load_toml reports it
    context = {"base": base, "has_llm": isinstance(raw, dict) and "llm" in raw}
    problems: list[str] = []
    scenario: Scenario | None = None
    try:
        scenario = load_toml(path, Scenario, context=context)
    except ConfigError as exc:
        if raw is None:
            raise
        problems += exc.problems
    for file in _persona_files(raw, base):
        try:
            load_persona(file)
        except ConfigError as exc:
            problems += [f" persona {file}:{p.lstrip()}" for p in exc.problems]
    if problems or scenario is None:
        raise ConfigError(path, problems)
    return scenario


def _persona_files(raw: Any, base: Path) -> list[Path]:
    """Persona files named by the raw TOML's agent groups (even if the scenario is invalid)."""
    files: list[Path] = []
    groups = raw.get("agents") if isinstance(raw, dict) else None
    for group in groups if isinstance(groups, list) else []:
        patterns = group.get("personas") if isinstance(group, dict) else None
        if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
            files += [f for f in resolve_personas(base, patterns) if f not in files]
    return files


def plan_agents(scenario: Scenario, path: Path) -> list[PlannedAgent]:
    """Every agent of the run, with unique handles (copies get ``_2``, ``_3``...)."""
    base = path.resolve().parent
    cache: dict[Path, Persona] = {}
    planned: list[PlannedAgent] = []
    used: set[str] = set()
    for group in scenario.agents:
        for file in resolve_personas(base, group.personas):
            persona = cache.get(file) or cache.setdefault(file, load_persona(file))
            brain = persona.brain or group.brain
            for _ in range(group.count):
                n = 1
                while True:
                    suffix = "" if n == 1 else f"_{n}"
                    handle = persona.handle[: 32 - len(suffix)] + suffix
                    if handle.lower() not in used:
                        break
                    n += 1
                used.add(handle.lower())
                planned.append(PlannedAgent(handle, persona, brain, group.heartbeat, group.join_at))
    return planned
