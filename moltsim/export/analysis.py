"""The figures a report shows, computed from one snapshot of a run file."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from moltsim.domain.actions import QUERY_TYPES
from moltsim.export.snapshot import Snapshot
from moltsim.store.llmstats import LlmFigures, llm_figures
from moltsim.store.metrics import token_prices

WORD = re.compile(r"[a-z0-9][a-z0-9'_-]*")
PHRASE_WORDS = 4
MAX_TEXTS = 200_000
"""Phrases are looked for in the most recent texts only, so reports of huge runs stay quick."""
_STOP = (
    "a an and are as at be but by for from has have i in is it its of on or that the "
    "this to was we were what when which who will with you your my me our they them "
    "their not no so do does did can could would should just than then there here"
)
STOPWORDS = frozenset(_STOP.split())


def gini(values: list[float]) -> float:
    """Gini coefficient of non-negative values: 0 when all equal, near 1 when one holds all."""
    xs = sorted(max(0.0, v) for v in values)
    total = sum(xs)
    n = len(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def reciprocity(edges: set[tuple[int, int]]) -> float:
    """Share of directed edges whose reverse edge exists too."""
    if not edges:
        return 0.0
    return sum((b, a) in edges for a, b in edges) / len(edges)


def shared_phrases(
    texts: list[tuple[int, str]], *, words: int = PHRASE_WORDS, top: int = 15
) -> list[tuple[str, int, int]]:
    """Phrases of ``words`` words that several agents use: ``(phrase, agents, uses)``, the
    most widely shared first. Phrases made only of stop words are skipped."""
    agents: defaultdict[tuple[str, ...], set[int]] = defaultdict(set)
    uses: Counter[tuple[str, ...]] = Counter()
    for author, text in texts:
        tokens = WORD.findall(text.lower())
        seen: set[tuple[str, ...]] = set()
        for i in range(len(tokens) - words + 1):
            gram = tuple(tokens[i : i + words])
            if gram in seen or all(t in STOPWORDS for t in gram):
                continue
            seen.add(gram)
            agents[gram].add(author)
            uses[gram] += 1
    shared = [(g, len(a)) for g, a in agents.items() if len(a) >= 2]
    shared.sort(key=lambda item: (-item[1], -uses[item[0]], item[0]))
    return [(" ".join(g), n, uses[g]) for g, n in shared[:top]]


@dataclass
class RunFigures:
    scenario: str | None
    seed: int | None
    start: float | None
    end: float | None
    counts: dict[str, int]
    bucket_s: float = 3600.0
    activity: dict[str, dict[int, int]] = field(default_factory=dict)
    """Accepted actions by type and time bucket (index from ``start``)."""
    submolts: list[tuple[str, int, int]] = field(default_factory=list)
    """``(name, posts, members)``, the biggest first."""
    post_scores: list[int] = field(default_factory=list)
    comment_scores: list[int] = field(default_factory=list)
    karma: list[int] = field(default_factory=list)
    karma_gini: float = 0.0
    upvotes_gini: float = 0.0
    depths: dict[int, int] = field(default_factory=dict)
    reply_nodes: int = 0
    reply_edges: int = 0
    reply_reciprocity: float = 0.0
    phrases: list[tuple[str, int, int]] = field(default_factory=list)
    llm: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Prompt and completion tokens by time bucket."""
    llm_health: LlmFigures = field(default_factory=LlmFigures)
    prices: tuple[float, float] | None = None
    refusals: list[tuple[str, int]] = field(default_factory=list)


def compute(snap: Snapshot) -> RunFigures:
    counts = {
        table: int(snap.scalar(f"SELECT COUNT(*) FROM {table}"))
        for table in ("agents", "submolts", "posts", "comments", "votes", "follows", "dms",
                      "actions")
    }  # fmt: skip
    start, end = snap.conn.execute("SELECT MIN(sim_time), MAX(sim_time) FROM actions").fetchone()
    figures = RunFigures(
        scenario=snap.meta.get("scenario_name"), seed=snap.seed(), start=start, end=end,
        counts=counts, prices=token_prices(snap.meta.get("scenario")),
    )  # fmt: skip
    span = (end - start) if start is not None and end is not None else 0.0
    figures.bucket_s = max(3600.0, 3600.0 * -(-span // (3600.0 * 96)))
    if start is not None:
        queries = ",".join(f"'{q}'" for q in sorted(QUERY_TYPES))
        for kind, bucket, n in snap.rows(
            "SELECT type, CAST((sim_time - ?) / ? AS INTEGER), COUNT(*) FROM actions"
            f" WHERE outcome = 'ok' AND type NOT IN ({queries}) AND agent_id IS NOT NULL"
            " GROUP BY 1, 2",
            (start, figures.bucket_s),
        ):
            figures.activity.setdefault(kind, {})[bucket] = n
        if "llm_calls" in snap.tables:
            for bucket, prompt, completion in snap.rows(
                "SELECT CAST((sim_time - ?) / ? AS INTEGER), SUM(prompt_tokens),"
                " SUM(completion_tokens) FROM llm_calls GROUP BY 1",
                (start, figures.bucket_s),
            ):
                figures.llm[bucket] = (int(prompt), int(completion))
            figures.llm_health = llm_figures(snap.conn)
    figures.submolts = list(
        snap.rows(
            "SELECT name, post_count, subscriber_count FROM submolts"
            " ORDER BY post_count DESC, name LIMIT 30"
        )
    )
    figures.post_scores = [s for (s,) in snap.rows("SELECT score FROM posts")]
    figures.comment_scores = [s for (s,) in snap.rows("SELECT score FROM comments")]
    figures.karma = [k for (k,) in snap.rows("SELECT karma FROM agents")]
    figures.karma_gini = gini([float(k) for k in figures.karma])
    upvotes = Counter(
        dict(
            snap.rows(
                "SELECT author_id, SUM(ups) FROM (SELECT author_id, ups FROM posts"
                " UNION ALL SELECT author_id, ups FROM comments) GROUP BY author_id"
            )
        )
    )
    figures.upvotes_gini = gini([float(upvotes.get(a, 0)) for a in snap.handles])
    figures.depths = dict(snap.rows("SELECT depth, COUNT(*) FROM comments GROUP BY depth"))
    edges = {
        (a, b)
        for a, b in snap.rows(
            "SELECT c.author_id, COALESCE(parent.author_id, p.author_id) FROM comments c"
            " JOIN posts p ON p.id = c.post_id LEFT JOIN comments parent ON parent.id = c.parent_id"
        )
        if a != b
    }
    figures.reply_edges = len(edges)
    figures.reply_nodes = len({n for edge in edges for n in edge})
    figures.reply_reciprocity = reciprocity(edges)
    texts: list[tuple[int, str]] = list(
        snap.rows(
            "SELECT author_id, text FROM (SELECT id, author_id, title || ' . ' || body AS text,"
            " 0 AS kind FROM posts UNION ALL SELECT id, author_id, body, 1 FROM comments)"
            " ORDER BY kind, id DESC LIMIT ?",
            (MAX_TEXTS,),
        )
    )
    figures.phrases = shared_phrases(texts)
    figures.refusals = list(
        snap.rows(
            "SELECT outcome, COUNT(*) FROM actions WHERE outcome != 'ok'"
            " GROUP BY outcome ORDER BY COUNT(*) DESC, outcome"
        )
    )
    return figures
