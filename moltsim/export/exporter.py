"""``moltsim export``: a run file's records, one file per entity (or transcripts), plus the
manifest, all from one consistent snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moltsim.export import csvfile, jsonl, manifest, markdown, parquetfile
from moltsim.export.options import ExportError, ExportOptions
from moltsim.export.records import ENTITIES
from moltsim.export.selection import Selection
from moltsim.export.snapshot import Snapshot

WRITERS = {"jsonl": jsonl, "csv": csvfile, "parquet": parquetfile}
"""Formats with one file per entity: the module with ``write`` and ``read`` for each."""


def prepare_folder(out: Path, force: bool) -> None:
    """Create ``out``; refuse a folder that already holds files unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"--out {out} is not empty; choose a new folder or pass --force to write into it"
        )
    out.mkdir(parents=True, exist_ok=True)


def export_run(
    run: str | Path, out: Path, options: ExportOptions, *, force: bool = False
) -> dict[str, Any]:
    """Export ``run`` into ``out``; returns the manifest (also written as manifest.json)."""
    with Snapshot.open(run) as snap:
        selection = Selection(snap, options)
        prepare_folder(out, force)
        files: dict[str, dict[str, Any]] = {}
        if options.format == "markdown":
            for name, (kind, count) in markdown.write(out, selection).items():
                files[name] = {"entity": kind, "records": count}
        else:
            writer = WRITERS[options.format]
            for entity, fields in ENTITIES.items():
                name = f"{entity}.{options.format}"
                count = writer.write(out / name, fields, selection.records(entity))
                files[name] = {"entity": entity, "records": count}
        meta = snap.meta
    for name, entry in files.items():
        entry["sha256"] = manifest.sha256(out / name)
    document = manifest.build(
        meta=meta,
        format=options.format,
        purpose=options.purpose,
        filters=options.filters(),
        files=files,
        consent=selection.consent.summary(),
    )
    manifest.write(out, document)
    return document
