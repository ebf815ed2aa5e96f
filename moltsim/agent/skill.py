"""The skill: the instruction file that teaches an agent the network (``agents/skills/``).

Its first line is ``skill-version: N``. An agent refuses to start without a readable skill.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SKILL = Path(__file__).resolve().parents[2] / "agents" / "skills" / "forum.md"
_VERSION = re.compile(r"^skill-version:\s*(\d+)\s*$")


class SkillError(Exception):
    """The skill file is missing, unreadable or has no version line."""


@dataclass(frozen=True, slots=True)
class Skill:
    path: Path
    version: int
    text: str

    @property
    def digest(self) -> str:
        """Short content hash: recorded with each run so results name the skill they used."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


def load_skill(path: Path | None = None) -> Skill:
    path = path or DEFAULT_SKILL
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SkillError(f"no skill file at {path}; an agent cannot start without one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SkillError(f"cannot read the skill file {path}: {exc}") from None
    first = text.splitlines()[0] if text else ""
    match = _VERSION.match(first)
    if match is None:
        raise SkillError(f"{path}:1: the skill must start with 'skill-version: N'")
    return Skill(path, int(match.group(1)), text)
