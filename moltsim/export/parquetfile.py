"""Parquet (via pyarrow): one column per contract field, written in row groups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from moltsim.export.records import Field, Record

ROW_GROUP = 100_000


def _schema(fields: tuple[Field, ...]) -> Any:
    import pyarrow as pa

    types = {"int": pa.int64(), "bool": pa.bool_(), "str": pa.string(), "time": pa.string(),
             "json": pa.string()}  # fmt: skip
    return pa.schema([pa.field(f.name, types[f.type], nullable=f.nullable) for f in fields])


def write(path: Path, fields: tuple[Field, ...], records: Iterable[Record]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(fields)
    names = [f.name for f in fields]
    count = 0
    it = iter(records)
    with pq.ParquetWriter(path, schema) as writer:
        while batch := list(islice(it, ROW_GROUP)):
            columns = [[r[name] for r in batch] for name in names]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def read(path: Path, fields: tuple[Field, ...]) -> Iterator[Record]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    yield from table.to_pylist()
