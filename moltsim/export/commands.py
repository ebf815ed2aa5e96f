"""The ``export``, ``verify`` and ``report`` commands: arguments in, one-line errors out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moltsim.export.options import ExportError, ExportOptions
from moltsim.export.simtime import parse_iso


def _time(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise ExportError(f"{option}: {exc}") from None


def export(args: argparse.Namespace) -> int:
    from moltsim.export.exporter import export_run

    options = ExportOptions(
        format=args.format,
        purpose=args.purpose,
        since=_time("--since", args.since),
        until=_time("--until", args.until),
        submolt=args.submolt,
    )
    manifest = export_run(args.run, args.out, options, force=args.force)
    total = sum(manifest["records"].values())
    print(f"exported {total:,} records ({options.format}, for {options.purpose}) to {args.out}")
    for entity, count in manifest["records"].items():
        print(f"  {entity:<10}{count:>12,}")
    left_out = manifest["consent"].get("left_out") or {}
    if left_out:
        print(f"  left out  {sum(left_out.values()):>12,}  (see consent in manifest.json)")
    print(f"check it with: moltsim verify {args.out}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from moltsim.export.verify import verify_export

    result = verify_export(args.export_dir)
    print(f"export {args.export_dir}")
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def report(args: argparse.Namespace) -> int:
    from moltsim.export.report import write_report

    out: Path = args.out
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; name the HTML file to write")
    write_report(args.run, out)
    print(f"wrote {out}: open it in any browser (it needs no network)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the command ``args.command``; bad input is one line on stderr and exit 2."""
    commands = {"export": export, "verify": verify, "report": report}
    try:
        return commands[args.command](args)
    except ExportError as exc:
        print(f"moltsim {args.command}: {exc}", file=sys.stderr)
        return 2
