"""The report's plots: matplotlib (Agg, no display) figures rendered to inline SVG.

The SVG is stripped of its XML prologue, DOCTYPE, metadata and namespace declarations (HTML
parses inline SVG without them), so the report holds no URL at all and renders offline.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from moltsim.export.analysis import RunFigures

_PROLOGUE = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<metadata>.*?</metadata>", re.DOTALL)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
COLORS = ("#3b6ea5", "#d9822b", "#3f9b5a", "#b8443f", "#7a5ca8", "#8c6d4f", "#4f9aa8")


def svg(draw: Callable[[Axes], None], *, width: float = 7.5, height: float = 3.2) -> str:
    """Draw on a fresh figure and return it as inline SVG markup."""
    figure = Figure(figsize=(width, height))
    axes = figure.add_subplot()
    draw(axes)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = _PROLOGUE.sub("", buffer.getvalue())
    return _NAMESPACES.sub("", text).strip()


def _hours(figures: RunFigures, bucket: int) -> float:
    return bucket * figures.bucket_s / 3600.0


def activity(figures: RunFigures) -> str:
    def draw(ax: Axes) -> None:
        kinds = sorted(figures.activity, key=lambda k: -sum(figures.activity[k].values()))
        last = max((max(b) for b in figures.activity.values() if b), default=0)
        for color, kind in zip(COLORS * 3, kinds, strict=False):
            buckets = figures.activity[kind]
            xs = [_hours(figures, b) for b in range(last + 1)]
            ax.plot(xs, [buckets.get(b, 0) for b in range(last + 1)], label=kind, color=color)
        ax.set_xlabel("sim hours since the first action")
        ax.set_ylabel(f"actions per {figures.bucket_s / 3600:g} h")
        if kinds:
            ax.legend(fontsize=8, ncols=2)

    return svg(draw)


def submolts(figures: RunFigures) -> str:
    def draw(ax: Axes) -> None:
        names = [name for name, _, _ in figures.submolts]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [p for _, p, _ in figures.submolts], 0.4, label="posts",
               color=COLORS[0])  # fmt: skip
        ax.bar([x + 0.2 for x in xs], [m for _, _, m in figures.submolts], 0.4, label="members",
               color=COLORS[1])  # fmt: skip
        ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=8)
        ax.legend(fontsize=8)

    return svg(draw, height=3.6)


def histogram(values: list[int], label: str, color: str, *, log: bool = True) -> str:
    def draw(ax: Axes) -> None:
        counts = Counter(values)
        xs = sorted(counts)
        ax.bar(xs, [counts[x] for x in xs], color=color, width=0.9)
        ax.set_xlabel(label)
        ax.set_ylabel("how many")
        if log and counts and max(counts.values()) > 50:
            ax.set_yscale("log")

    return svg(draw, width=3.7, height=2.8)


def depths(figures: RunFigures) -> str:
    def draw(ax: Axes) -> None:
        xs = sorted(figures.depths)
        ax.bar(xs, [figures.depths[x] for x in xs], color=COLORS[2])
        ax.set_xlabel("comment depth (0: replies to the post)")
        ax.set_ylabel("comments")

    return svg(draw, width=5.0, height=2.8)


def llm(figures: RunFigures) -> str:
    def draw(ax: Axes) -> None:
        buckets = sorted(figures.llm)
        xs = [_hours(figures, b) for b in buckets]
        ax.plot(xs, [figures.llm[b][0] for b in buckets], label="prompt tokens", color=COLORS[0])
        ax.plot(xs, [figures.llm[b][1] for b in buckets], label="completion tokens",
                color=COLORS[1])  # fmt: skip
        ax.set_xlabel("sim hours since the first action")
        ax.set_ylabel(f"tokens per {figures.bucket_s / 3600:g} h")
        if figures.prices is not None:
            prompt, completion = figures.prices
            total, cumulative = 0.0, []
            for b in buckets:
                total += figures.llm[b][0] * prompt + figures.llm[b][1] * completion
                cumulative.append(total)
            cost = ax.twinx()
            cost.plot(xs, cumulative, label="cost (USD, cumulative)", color=COLORS[3],
                      linestyle="--")  # fmt: skip
            cost.set_ylabel("USD")
            cost.legend(fontsize=8, loc="upper right")
        ax.legend(fontsize=8, loc="upper left")

    return svg(draw)
