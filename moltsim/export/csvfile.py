"""CSV: a header of the contract's field names, then one row per record.

Booleans are ``true``/``false``; an empty cell is null for nullable fields (and the empty
string for the others); ``payload`` and ``result`` are JSON text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from moltsim.export.records import Field, Record


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def write(path: Path, fields: tuple[Field, ...], records: Iterable[Record]) -> int:
    names = [f.name for f in fields]
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for record in records:
            writer.writerow([_cell(record[name]) for name in names])
            count += 1
    return count


def _value(field: Field, text: str) -> Any:
    if text == "" and (field.nullable or field.type in ("int", "bool")):
        return None
    if field.type == "int":
        return int(text)
    if field.type == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{field.name}: {text!r} is not true or false")
        return text == "true"
    return text


def read(path: Path, fields: tuple[Field, ...]) -> Iterator[Record]:
    by_name = {f.name: f for f in fields}
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        header = next(reader, None)
        if header is None:
            return
        unknown = [name for name in header if name not in by_name]
        if unknown:
            raise ValueError(f"{path.name}: unknown columns {unknown}")
        for row in reader:
            yield {
                name: _value(by_name[name], text) for name, text in zip(header, row, strict=True)
            }
