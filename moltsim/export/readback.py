"""Reading an export back: its manifest and the records of each entity, whatever the format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moltsim.export import csvfile, jsonl, manifest, parquetfile
from moltsim.export.options import ExportError
from moltsim.export.records import ENTITIES, Record

READERS = {"jsonl": jsonl, "csv": csvfile, "parquet": parquetfile}


class Export:
    """An export folder: its manifest and a reader for each entity file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = manifest.load(folder)
        self.format = str(self.manifest.get("format"))
        if self.format == "markdown":
            raise ExportError(
                f"{folder} is a Markdown export: transcripts carry no signatures;"
                " export as jsonl, csv or parquet to verify"
            )
        if self.format not in READERS:
            raise ExportError(f"{folder}: unknown export format {self.format!r}")

    def records(self, entity: str) -> Iterator[Record]:
        path = self.folder / f"{entity}.{self.format}"
        if not path.exists():
            raise ExportError(f"{path} is missing")
        reader = READERS[self.format]
        try:
            yield from reader.read(path, ENTITIES[entity])
        except (ValueError, OSError) as exc:
            raise ExportError(f"{path} is not readable: {exc}") from exc
