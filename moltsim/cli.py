"""The ``moltsim`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from moltsim import __version__
from moltsim.store.reader import open_readonly
from moltsim.store.runfile import RunFileError

COUNTED_TABLES = ("agents", "submolts", "posts", "comments", "votes", "follows", "dms", "actions")


def _sim_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S sim")


def stats(run: Path) -> int:
    """Print what a run file holds: entity counts, sim time span, refusals by code."""
    conn = open_readonly(run)
    try:
        print(f"run file  {run}")
        for table in COUNTED_TABLES:
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            print(f"{table:<10}{count:>12,}")
        first, last = conn.execute("SELECT MIN(sim_time), MAX(sim_time) FROM actions").fetchone()
        if first is not None:
            print(f"sim time  {_sim_time(first)} .. {_sim_time(last)}")
        refusals = conn.execute(
            "SELECT outcome, COUNT(*) FROM actions WHERE outcome != 'ok'"
            " GROUP BY outcome ORDER BY COUNT(*) DESC"
        ).fetchall()
        for code, count in refusals:
            print(f"refused   {code:<32}{count:>8,}")
    finally:
        conn.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moltsim",
        description="Simulate an agent-only social network; humans only watch.",
    )
    parser.add_argument("--version", action="version", version=f"moltsim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    stats_parser = commands.add_parser(
        "stats", help="summarise a run file", description=stats.__doc__
    )
    stats_parser.add_argument("run", type=Path, help="a run folder or its run.db")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stats":
            return stats(args.run)
    except RunFileError as exc:
        print(f"moltsim: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
