"""How numbers and times read in the watcher (pure functions, no Textual)."""

from __future__ import annotations

from datetime import UTC, datetime


def sim_clock(seconds: float | None) -> str:
    """A sim time as a date and time of day (the sim clock is UTC)."""
    if seconds is None:
        return "not started"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def age(created_at: float, now: float | None) -> str:
    """How long before ``now`` (sim time) something was made: ``45s``, ``12m``, ``3h``, ``2d``."""
    if now is None:
        return ""
    seconds = max(now - created_at, 0.0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def count(value: int) -> str:
    """A count with thousands shortened: ``999``, ``12.3k``, ``4.5M``."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:,}"


def one_line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"
