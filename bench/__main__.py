"""``python -m bench [NAME ...] [--quick]``: run moltsim's benchmarks and record their figures.

Figures are merged into ``bench-results.json`` at the repository root. Compare figures as
ratios within one run: absolute times on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time

from bench import agents, e2e, engine_mix, feed_reads, gateway, hostile, offline, resume
from bench import export as export_bench
from bench.results import RESULTS, record

ALL = [
    "engine", "feed", "gateway", "e2e", "agents", "offline", "hostile", "export", "tui", "resume",
]  # fmt: skip
EXTRA = ["llm"]
"""Not in the default set: they fetch and run a real model (``make bench-llm``)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*ALL, *EXTRA, []],
        help="benchmarks to run (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for checking that the benchmarks work"
    )
    args = parser.parse_args(argv)
    names = args.names or ALL
    print(f"moltsim benchmarks on {platform.machine()} Python {platform.python_version()}")
    started = time.perf_counter()
    if "engine" in names:
        rows, steady = (100_000, 20_000) if args.quick else (1_000_000, 200_000)
        record(asyncio.run(engine_mix.run(rows_target=rows, steady_actions=steady)))
    if "feed" in names:
        sizes = (1_000, 10_000) if args.quick else feed_reads.SIZES
        record(feed_reads.run(sizes=sizes, seconds=0.5 if args.quick else 2.0))
    if "gateway" in names:
        record(gateway.run(envelopes=5_000 if args.quick else 20_000))
    if "e2e" in names:
        record(e2e.run(seconds=2.0 if args.quick else 8.0))
    if "agents" in names:
        record(agents.run())
    if "offline" in names:
        size = (500, 6.0) if args.quick else (10_000, 24.0)
        record(offline.run(agents=size[0], hours=size[1]))
    if "hostile" in names:
        fuzz, forgeries = (3_000, 1_000) if args.quick else (100_000, 10_000)
        record(hostile.run(fuzz=fuzz, forgeries=forgeries))
    if "export" in names:
        record(export_bench.run(records=50_000 if args.quick else 1_000_000))
    if "tui" in names:
        from bench import tui  # loads Textual

        record(tui.run(posts=100_000 if args.quick else 1_000_000))
    if "llm" in names:
        from bench import llm  # fetches the local model on first use

        record(llm.run(per_set=2 if args.quick else 6, duration=None if args.quick else "24h"))
    if "resume" in names:
        record(resume.run(agents=100, rounds=1) if args.quick else resume.run())
    print(f"done in {time.perf_counter() - started:.0f} s; figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
