"""``moltsim report``: one self-contained HTML file with the run's figures and plots.

Everything is inline (SVG plots, CSS), so the file opens offline and can be mailed around.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from moltsim import __version__
from moltsim.export import plots
from moltsim.export.analysis import RunFigures, compute
from moltsim.export.simtime import iso
from moltsim.export.snapshot import Snapshot

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6rem 0; }
td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; } .muted { color: #777; }
svg { max-width: 100%; height: auto; }
"""


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(figures: RunFigures) -> str:
    """The report as one HTML document."""
    span = "no actions yet"
    if figures.start is not None and figures.end is not None:
        span = f"{iso(figures.start)} to {iso(figures.end)} (sim time)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>moltsim report: {escape(str(figures.scenario))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Run report: {escape(str(figures.scenario))}</h1>",
        f'<p class="muted">seed {figures.seed} · {escape(span)} · moltsim {__version__}</p>',
        _table(["entity", "records"], [[k, v] for k, v in figures.counts.items()]),
        "<h2>Activity over sim time</h2>",
        plots.activity(figures),
        "<h2>Submolts: posts and members</h2>",
        plots.submolts(figures) if figures.submolts else "<p>No submolts.</p>",
        "<h2>Votes and karma</h2>",
        f"<p>Karma Gini <b>{figures.karma_gini:.3f}</b> (negative karma counted as 0) ·"
        f" upvotes-received Gini <b>{figures.upvotes_gini:.3f}</b>"
        " (0: all agents equal; 1: one agent has everything)</p>",
        '<div class="row">',
        plots.histogram(figures.post_scores, "post score", plots.COLORS[0]),
        plots.histogram(figures.comment_scores, "comment score", plots.COLORS[1]),
        plots.histogram(figures.karma, "agent karma", plots.COLORS[4], log=False),
        "</div>",
        "<h2>Conversation depth</h2>",
        plots.depths(figures) if figures.depths else "<p>No comments.</p>",
        "<h2>Reply network</h2>",
        _table(
            ["agents who replied or were replied to", "directed reply pairs", "reciprocity"],
            [[figures.reply_nodes, figures.reply_edges, f"{figures.reply_reciprocity:.1%}"]],
        ),
        '<p class="muted">Reciprocity: the share of "A replied to B" pairs where B also'
        " replied to A.</p>",
        "<h2>Recurring phrases shared across agents</h2>",
        _table(["phrase", "agents", "uses"], [list(p) for p in figures.phrases])
        if figures.phrases
        else "<p>No phrase is shared by two agents yet.</p>",
        "<h2>LLM tokens and cost</h2>",
        plots.llm(figures) if figures.llm else "<p>No LLM calls in this run.</p>",
        ""
        if figures.prices is not None or not figures.llm
        else '<p class="muted">The scenario names no token prices, so no cost is shown.</p>',
        *_llm_health(figures),
        "<h2>Refusals</h2>",
        _table(["code", "count"], [list(r) for r in figures.refusals])
        if figures.refusals
        else "<p>None.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _llm_health(figures: RunFigures) -> list[str]:
    h = figures.llm_health
    if not h.calls:
        return []
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(h.errors_by_kind.items())) or "none"
    header = ["decisions", "failed", "repaired", "model actions", "accepted", "valid rate",
              "not_found rate", "prompt tokens from cache"]  # fmt: skip
    row: list[object] = [
        h.calls, h.errors, h.repaired, h.proposed_actions, h.valid_actions,
        f"{h.valid_action_rate:.1%}", f"{h.not_found_rate:.1%}", f"{h.cache_hit_rate:.1%}",
    ]  # fmt: skip
    return [
        "<h2>How the model did</h2>",
        _table(header, [row]),
        f"<p>Failures by kind: {escape(kinds)}. Server time p50 {h.server_ms_p50 / 1000:.1f} s,"
        f" p95 {h.server_ms_p95 / 1000:.1f} s; waiting for a free slot p50"
        f" {h.queue_ms_p50 / 1000:.1f} s, p95 {h.queue_ms_p95 / 1000:.1f} s.</p>",
        '<p class="muted">Valid rate: the model\'s writes the engine accepted, over its writes'
        " and its answers that stayed invalid after one repair.</p>",
    ]


def write_report(run: str | Path, out: Path) -> None:
    """Read ``run`` (one snapshot) and write the report to ``out``."""
    with Snapshot.open(run) as snap:
        figures = compute(snap)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(figures), encoding="utf-8")
