"""Sim time in exports: ISO-8601 UTC with microseconds and a ``Z``, parsed back the same way."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_minutes: dict[int, str] = {}


def iso(seconds: float) -> str:
    """``2026-01-28T08:00:00.000000Z`` for a sim time in epoch seconds (rounded to the µs).

    Exports format millions of times: a cache of minute prefixes makes this several times
    faster than going through ``datetime``."""
    minute, micros = divmod(round(seconds * 1_000_000), 60_000_000)
    prefix = _minutes.get(minute)
    if prefix is None:
        if len(_minutes) >= 100_000:
            _minutes.clear()
        t = time.gmtime(minute * 60)
        prefix = _minutes[minute] = f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:"
    return f"{prefix}{micros // 1_000_000:02d}.{micros % 1_000_000:06d}Z"


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO-8601 time (a date alone means midnight UTC; no zone means UTC).

    Raises :class:`ValueError` with the accepted forms when ``text`` is not one of them."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 sim time (e.g. 2026-01-28, 2026-01-28T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
