"""JSON Lines: one record per line, UTF-8 (not ASCII-escaped), keys in contract order.

Records are serialised by pydantic-core's JSON encoder, several times faster than ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from pydantic_core import to_json

from moltsim.export.records import Field, Record

BATCH = 5_000


def write(path: Path, fields: tuple[Field, ...], records: Iterable[Record]) -> int:
    """Write ``records`` to ``path``; returns how many."""
    count = 0
    it = iter(records)
    with path.open("wb") as out:
        while batch := list(islice(it, BATCH)):
            out.write(b"\n".join(map(to_json, batch)))
            out.write(b"\n")
            count += len(batch)
    return count


def read(path: Path, fields: tuple[Field, ...]) -> Iterator[Record]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path.name}:{number}: not a JSON object")
            yield record
