"""Ranking formulas. Pure functions of stored numbers, so the engine can keep them indexed."""

from __future__ import annotations

import math

HOT_EPOCH = 1_134_028_003.0
"""Reddit's reference time for the hot score (2005-12-08)."""
HOT_TIME_SCALE = 45_000.0
"""Seconds of age worth a tenfold difference in net score."""


def hot(score: int, created_at: float) -> float:
    """Reddit's hot score: log10 of the net score plus creation time / 45,000 s.

    It changes only when a vote lands, so it is stored and indexed rather than recomputed
    on every feed read.
    """
    order = math.log10(max(abs(score), 1))
    sign = 1 if score > 0 else -1 if score < 0 else 0
    return float(round(sign * order + (created_at - HOT_EPOCH) / HOT_TIME_SCALE, 7))


def rising(score: int, comment_count: int, created_at: float, now: float) -> float:
    """Momentum of a young post: engagement per hour of age, softened for the very young."""
    age_hours = max(now - created_at, 0.0) / 3_600.0
    return (score + 2 * comment_count) / float((age_hours + 2.0) ** 1.5)


def wilson_lower_bound(ups: int, downs: int, z: float = 1.281551565545) -> float:
    """The 'best' comment order: lower bound of the 80 % Wilson interval of the up ratio."""
    n = ups + downs
    if n == 0:
        return 0.0
    p = ups / n
    return (p + z * z / (2 * n) - z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n)) / (
        1 + z * z / n
    )


def controversy(ups: int, downs: int) -> float:
    """Large when many votes split evenly; zero when all votes agree."""
    if ups <= 0 or downs <= 0:
        return 0.0
    magnitude = ups + downs
    balance = downs / ups if ups > downs else ups / downs
    return float(magnitude**balance)
