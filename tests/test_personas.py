"""The persona library (``agents/personas/``) and the forum skill (``agents/skills/forum.md``)."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from moltsim.agent.persona import Persona, load_persona
from moltsim.agent.skill import load_skill
from moltsim.domain.actions import (
    ACTION_ADAPTER,
    MAX_TITLE,
    SUBMOLT_NAME_PATTERN,
    QueryAction,
    WriteAction,
)
from moltsim.domain.errors import ErrorCode
from moltsim.tomlfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PERSONA_DIR = ROOT / "agents" / "personas"
SKILL_FILE = ROOT / "agents" / "skills" / "forum.md"
PERSONA_FILES = sorted(PERSONA_DIR.glob("*.toml"))


def _all_personas() -> list[Persona]:
    return [load_persona(path) for path in PERSONA_FILES]


# --- the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PERSONA_FILES, ids=[p.name for p in PERSONA_FILES])
def test_persona_file_loads(path: Path) -> None:
    persona = load_persona(path)
    assert persona.handle == path.stem, "a persona file is named after its handle"
    for post in persona.voice.sample_posts:
        title, _, body = post.partition("\n\n")
        assert title.strip(), f"{path.name}: a sample post starts with a title line"
        assert "\n" not in title, f"{path.name}: the title is one line, then a blank line"
        assert len(title) <= MAX_TITLE
        assert body.strip(), f"{path.name}: a sample post has a body after the blank line"


def test_there_are_enough_personas() -> None:
    assert len(PERSONA_FILES) >= 24


def test_handles_are_unique() -> None:
    # The engine looks handles up case-insensitively, so uniqueness is case-insensitive too.
    handles = [p.handle.lower() for p in _all_personas()]
    assert len(handles) == len(set(handles))


def test_some_personas_object_to_training() -> None:
    assert sum(p.objects_to_training for p in _all_personas()) >= 2


def test_some_personas_pin_the_offline_brain() -> None:
    assert any(p.brain == "offline" for p in _all_personas())


def test_liked_submolts_are_valid_names() -> None:
    for persona in _all_personas():
        assert persona.submolts, f"{persona.handle} likes no submolt"
        for name in persona.submolts:
            assert re.fullmatch(SUBMOLT_NAME_PATTERN, name), f"{persona.handle}: {name!r}"


# --- broken personas --------------------------------------------------------------------------

VALID = """\
# A persona for the error tests.
name = "Test Agent"
handle = "test_agent"
bio = "Exists to be broken."
interests = ["testing"]
submolts = ["general"]
activity = [
  0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0,
  1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0,
]

[voice]
tone = "plain"
phrases = ["one", "two", "three"]
sample_posts = ["Title\\n\\nBody.", "Another\\n\\nBody."]

[temperament]
post = 0.1
comment = 0.2
vote = 0.3
"""


def _line(text: str, content: str) -> int:
    """The 1-based number of the line of ``text`` that is exactly ``content``."""
    return text.splitlines().index(content) + 1


def _load_broken(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "persona.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_persona(path)
    assert info.value.path == path
    return path, str(info.value)


def test_the_valid_template_loads(tmp_path: Path) -> None:
    path = tmp_path / "persona.toml"
    path.write_text(VALID, encoding="utf-8")
    assert load_persona(path).handle == "test_agent"


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    text = VALID.replace("interests =", 'mood = "x"\ninterests =')
    path, message = _load_broken(tmp_path, text)
    line = _line(text, 'mood = "x"')
    assert line == 5
    assert f"{path}:{line}: mood: Extra inputs are not permitted" in message


def test_wrong_type_is_named_with_its_section_and_line(tmp_path: Path) -> None:
    text = VALID.replace("post = 0.1", 'post = "often"')
    path, message = _load_broken(tmp_path, text)
    line = _line(text, 'post = "often"')
    assert f"persona.toml:{line}: temperament.post: " in message
    assert message.startswith(f"{path}:{line}: ")
    assert "valid number" in message


def test_wrong_item_type_in_a_list_names_the_list(tmp_path: Path) -> None:
    text = VALID.replace('phrases = ["one", "two", "three"]', 'phrases = ["one", 2, "three"]')
    path, message = _load_broken(tmp_path, text)
    line = _line(text, 'phrases = ["one", 2, "three"]')
    assert f"{path}:{line}: voice.phrases.1: " in message


def test_activity_of_23_hours_is_refused(tmp_path: Path) -> None:
    text = VALID.replace(" 0.0, 0.0,\n]", " 0.0,\n]")
    assert text != VALID
    path, message = _load_broken(tmp_path, text)
    line = _line(text, "activity = [")
    assert f"{path}:{line}: activity: " in message
    assert "24" in message


def test_activity_that_is_all_zero_is_refused(tmp_path: Path) -> None:
    text = re.sub(r"activity = \[.*?\]", "activity = [" + "0, " * 24 + "]", VALID, flags=re.S)
    path, message = _load_broken(tmp_path, text)
    line = _line(text, "activity = [" + "0, " * 24 + "]")
    assert f"{path}:{line}: activity: " in message
    assert "active at some hour" in message


def test_missing_voice_section_is_named(tmp_path: Path) -> None:
    start = VALID.index("[voice]")
    end = VALID.index("[temperament]")
    text = VALID[:start] + VALID[end:]
    path, message = _load_broken(tmp_path, text)
    # A missing top-level section has no line of its own: the problem names file and field.
    assert f"{path}: voice: Field required" in message


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = VALID.replace("post = 0.1", "post = 2.0").replace('tone = "plain"', "tone = 7")
    path, message = _load_broken(tmp_path, text)
    assert f"{path}:{_line(text, 'tone = 7')}: voice.tone: " in message
    assert f"{path}:{_line(text, 'post = 2.0')}: temperament.post: " in message
    assert len(message.splitlines()) == 2


def test_not_toml_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path, message = _load_broken(tmp_path, VALID + "\nthis is not toml\n")
    assert message.startswith(f"{path}:")
    assert "not valid TOML" in message


# --- the skill --------------------------------------------------------------------------------


def _literal(model: type[BaseModel], field: str) -> str:
    (value,) = typing.get_args(model.model_fields[field].annotation)
    assert isinstance(value, str)
    return value


WRITE_MODELS: list[type[BaseModel]] = list(typing.get_args(WriteAction))
QUERY_MODELS: list[type[BaseModel]] = list(typing.get_args(QueryAction))
ACTION_TYPES = sorted({_literal(m, "type") for m in WRITE_MODELS + QUERY_MODELS})
SKILL_TYPES = [t for t in ACTION_TYPES if t != "llm_call"]
"""What the skill teaches: ``llm_call`` records are the host's, and a brain drops any it writes."""
MODERATION_OPS = sorted(_literal(m, "op") for m in WRITE_MODELS if "op" in m.model_fields)


def _skill_text() -> str:
    return SKILL_FILE.read_text(encoding="utf-8")


def _json_examples(text: str) -> list[Any]:
    """Each line of a ``json`` block is one example (JSON Lines)."""
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_action_types_are_all_found() -> None:
    # Guards the introspection below: a change to the unions should be noticed here.
    assert len(ACTION_TYPES) == 20
    assert "post" in ACTION_TYPES and "submolts" in ACTION_TYPES and "moderate" in ACTION_TYPES
    assert len(MODERATION_OPS) == 6


def test_skill_starts_with_its_version() -> None:
    text = _skill_text()
    assert text.splitlines()[0] == "skill-version: 3"
    assert load_skill(SKILL_FILE).version == 3


@pytest.mark.parametrize("kind", SKILL_TYPES)
def test_skill_shows_every_action_and_query(kind: str) -> None:
    assert f'"type": "{kind}"' in _skill_text()


@pytest.mark.parametrize("op", MODERATION_OPS)
def test_skill_shows_every_moderation_op(op: str) -> None:
    assert f'"op": "{op}"' in _skill_text()


@pytest.mark.parametrize("code", [c.value for c in ErrorCode])
def test_skill_explains_every_refusal_code(code: str) -> None:
    assert f"`{code}`" in _skill_text()


def test_skill_examples_are_valid_actions() -> None:
    """Every JSON example that is an action (or a decision) parses as one, and all are shown."""
    shown: set[str] = set()
    decisions = 0
    for example in _json_examples(_skill_text()):
        assert isinstance(example, dict)
        if "actions" in example:
            decisions += 1
            assert isinstance(example["thoughts"], str)
            assert 0 <= len(example["actions"]) <= 5
            candidates = example["actions"]
        elif "type" in example:
            candidates = [example]
        else:
            continue
        for candidate in candidates:
            action = ACTION_ADAPTER.validate_python(candidate)
            shown.add(getattr(action, "op", action.type))
    assert decisions >= 1
    assert shown >= set(SKILL_TYPES) - {"moderate"} | set(MODERATION_OPS)


def test_skill_covers_limits_policy_and_security() -> None:
    text = _skill_text()
    for needle in (
        "retry_after",
        "proactive",
        "security",
        "untrusted",
        "impersonation",
        "Never reveal keys",
    ):
        assert needle in text
    # The skill opens every LLM prompt: the whole prompt's goal is 1,500 tokens.
    assert len(text) // 4 <= 900, "the skill becomes a system prompt: keep it short"
