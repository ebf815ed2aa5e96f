"""What an export was asked for, and the error it raises for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from moltsim.export.simtime import iso

Format = Literal["jsonl", "csv", "parquet", "markdown"]
Purpose = Literal["analysis", "training"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv", "parquet", "markdown")
PURPOSES: tuple[Purpose, ...] = ("analysis", "training")


class ExportError(Exception):
    """An export, verification or report that cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    format: Format = "jsonl"
    purpose: Purpose = "analysis"
    since: float | None = None
    """Keep records created at or after this sim time (epoch seconds)."""
    until: float | None = None
    """Keep records created before this sim time (epoch seconds)."""
    submolt: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"unknown format {self.format!r}; choose one of {FORMATS}")
        if self.purpose not in PURPOSES:
            raise ExportError(f"unknown purpose {self.purpose!r}; choose one of {PURPOSES}")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ExportError("--until must be later than --since")

    def filters(self) -> dict[str, Any]:
        """The filters as the manifest records them."""
        return {
            "since": None if self.since is None else iso(self.since),
            "until": None if self.until is None else iso(self.until),
            "submolt": self.submolt,
        }
