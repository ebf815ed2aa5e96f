"""JSONL export speed on a generated run of about a million records.

The run file is written straight through SQLite with the real schema: agents, submolts, posts,
comments, votes, follows, DMs and a ledger row for every write, with plausible text lengths.
Ledger signatures are random bytes of the right size: the export copies them and never checks
them, so signing a million envelopes would only slow the setup down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moltsim.engine.ranking import hot
from moltsim.export import ExportOptions, export_run
from moltsim.store.runfile import RunFile

T0 = 1_800_000_000.0
_VOCABULARY = (
    "molt shell claw reef tide current agent prompt token karma thread vote post"
    " signal noise lobster crab kelp deep sand"
)
WORDS = _VOCABULARY.split()

SHARES = {"posts": 0.12, "comments": 0.28, "votes": 0.28, "follows": 0.02, "dms": 0.03}
"""Each entity's share of the records; the ledger (one row per write) makes up the rest."""


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


async def _create(path: Path) -> None:
    runfile = await RunFile.open(path)
    await runfile.set_meta(scenario_name="bench-export", seed="1")
    await runfile.close()


def generate(path: Path, records: int, seed: int = 1) -> int:
    """Write a run of about ``records`` records to ``path``; returns the exact count."""
    asyncio.run(_create(path))
    rng = random.Random(seed)
    agents, submolts = max(10, records // 500), 50
    n = {k: int(records * share) for k, share in SHARES.items()}
    n_posts, n_comments = max(1, n["posts"]), n["comments"]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO agents (id, handle, display_name, bio, public_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ((i, f"agent_{i}", f"Agent {i}", _text(rng, 12), rng.randbytes(32), T0)
             for i in range(1, agents + 1)),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO submolts (id, name, title, description, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            ((i, f"sub-{i}", f"Submolt {i}", _text(rng, 8), T0) for i in range(1, submolts + 1)),
        )
        step = 86_400.0 * 7 / max(1, n_posts + n_comments)
        ledger: list[tuple[Any, ...]] = []

        def note(at: float, agent: int, kind: str, payload: dict[str, Any], result: Any) -> None:
            sig = base64.b64encode(rng.randbytes(64)).decode()
            ledger.append((at, at, agent, len(ledger) + 1, kind, json.dumps(payload), sig, "ok",
                           "", json.dumps(result)))  # fmt: skip

        def posts() -> Iterator[tuple[Any, ...]]:
            for pid in range(1, n_posts + 1):
                at, author, title = T0 + pid * step, rng.randint(1, agents), _text(rng, 7)
                body, sub = _text(rng, rng.randint(10, 60)), rng.randint(1, submolts)
                action = {"type": "post", "submolt": f"sub-{sub}", "title": title, "body": body}
                note(at, author, "post", action, {"post_id": pid})
                yield (pid, sub, author, title, body, at, hot(0, at))

        conn.executemany(
            "INSERT INTO posts (id, submolt_id, author_id, title, body, created_at, hot)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            posts(),
        )

        def comments() -> Iterator[tuple[Any, ...]]:
            for cid in range(1, n_comments + 1):
                at, author = T0 + (n_posts + cid) * step, rng.randint(1, agents)
                post, body = rng.randint(1, n_posts), _text(rng, rng.randint(5, 40))
                note(at, author, "comment", {"type": "comment", "post_id": post, "body": body},
                     {"comment_id": cid, "post_id": post})  # fmt: skip
                yield (cid, post, None, author, body, at, 0)

        conn.executemany(
            "INSERT INTO comments (id, post_id, parent_id, author_id, body, created_at, depth)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            comments(),
        )
        votes = {(rng.randint(1, n_posts), rng.randint(1, agents)) for _ in range(n["votes"])}
        conn.executemany(
            "INSERT INTO votes (target_kind, target_id, agent_id, value, voted_at)"
            " VALUES ('post', ?, ?, ?, ?)",
            ((p, a, rng.choice((1, 1, 1, -1)), T0 + p * step) for p, a in sorted(votes)),
        )
        follows = {(rng.randint(1, agents), rng.randint(1, agents)) for _ in range(n["follows"])}
        conn.executemany(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)",
            ((a, b, T0) for a, b in sorted(follows) if a != b),
        )
        conn.executemany(
            "INSERT INTO dms (id, sender_id, recipient_id, body, created_at, proactive)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            ((i, rng.randint(1, agents), rng.randint(1, agents), _text(rng, 15), T0 + i)
             for i in range(1, n["dms"] + 1)),
        )  # fmt: skip
        remaining = records - sum(
            conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("agents", "submolts", "posts", "comments", "votes", "follows", "dms")
        )
        conn.executemany(
            "INSERT INTO actions (sim_time, wall_time, agent_id, seq, type, payload, sig, outcome,"
            " message, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ledger[: max(0, remaining)],
        )
    total = sum(
        conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("agents", "submolts", "posts", "comments", "votes", "follows", "dms", "actions")
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return int(total)


def run(records: int = 1_000_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="moltsim-bench-export-") as tmp:
        path = Path(tmp) / "run.db"
        started = time.perf_counter()
        total = generate(path, records)
        print(f"  generated {total:,} records in {time.perf_counter() - started:.1f} s")
        started, cpu = time.perf_counter(), time.process_time()
        manifest = export_run(path, Path(tmp) / "out", ExportOptions())
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert sum(manifest["records"].values()) == total
    return {
        "export_jsonl_records_per_s": total / seconds,
        "export_jsonl_cpu_us_per_record": cpu / total * 1e6,
    }
