"""Loading TOML files into pydantic models with errors that name the file, field and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, not TOML, or breaks its schema. Lists every problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}:{p}" for p in problems))


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of the TOML key at ``loc``: the key's own line inside its table, else
    the line of the nearest enclosing table header (for a missing key), else ``None``."""
    lines = text.splitlines()
    keys = [k for k in loc if isinstance(k, str)]
    if not keys:
        return None
    table_path, key = keys[:-1], keys[-1]
    # The index of an array-of-tables entry ([[agents]] number N) picks its Nth header.
    nth = next((k for k in loc if isinstance(k, int)), 0)
    start, end, header_line = 0, len(lines), None
    any_header = re.compile(r"^\s*\[")
    for depth in range(len(table_path), 0, -1):
        header = re.compile(
            r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, table_path[:depth])) + r"\s*\]\]?"
        )
        matches = [i for i, line in enumerate(lines) if header.match(line)]
        found = matches[min(nth, len(matches) - 1)] if matches else None
        if found is not None:
            start, header_line = found + 1, found + 1
            end = next(
                (i for i in range(found + 1, len(lines)) if any_header.match(lines[i])), len(lines)
            )
            break
    else:
        end = next((i for i, line in enumerate(lines) if any_header.match(line)), len(lines))
    key_re = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for i in range(start, end):
        if key_re.match(lines[i]):
            return i + 1
    table = re.compile(r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, keys)) + r"\s*\]\]?")
    for i, line in enumerate(lines):
        if table.match(line):
            return i + 1
    return header_line


def format_errors(exc: ValidationError, text: str) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        field = ".".join(str(part) for part in loc) or "(file)"
        line = _line_of(text, loc)
        where = f"{line}:" if line is not None else ""
        problems.append(f"{where} {field}: {error['msg']}")
    return problems


def load_toml(path: Path, model: type[M], *, context: dict[str, Any] | None = None) -> M:
    """Parse ``path`` as TOML and validate it as ``model``; :class:`ConfigError` lists problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [" file not found"]) from None
    except OSError as exc:
        raise ConfigError(path, [f" cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f" not valid TOML: {exc}"]) from None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(path, format_errors(exc, text)) from None
