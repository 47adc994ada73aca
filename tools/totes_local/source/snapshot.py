"""Load a totesys snapshot stored as gzip JSON lines, one file per table.

The format is the one of ``shared/data/totesys-2024-11-14``: ``<table>.jsonl.gz``,
one JSON object per row, ISO timestamps, money as JSON numbers with two
decimals (parsed as :class:`~decimal.Decimal`, never float), NULL as ``null``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from totes.db import copy_field, copy_lines, table_columns
from totes.errors import SnapshotFormatError
from totes.source.schema import add_source_constraints, create_source_tables
from totes.tables import SOURCE_TABLES


@dataclass
class SnapshotLoad:
    """What a snapshot load did: rows per table, and the tables the snapshot lacks."""

    rows: dict[str, int] = field(default_factory=dict)
    missing_tables: list[str] = field(default_factory=list)


def snapshot_file(folder: Path, table: str) -> Path:
    """Path of a table's file inside a snapshot folder."""
    return folder / f"{table}.jsonl.gz"


def read_snapshot_rows(path: Path, table: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of one snapshot file, checked against the table's columns.

    Raises
    ------
    SnapshotFormatError
        A line is not JSON, or a record has a column the table does not have or lacks one.
    """
    expected = set(columns)
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                raise SnapshotFormatError(
                    f"{path.name} line {number}: not a JSON object ({exc.msg})"
                ) from exc
            if not isinstance(record, dict):
                raise SnapshotFormatError(f"{path.name} line {number}: not a JSON object")
            if record.keys() != expected:
                unexpected = sorted(record.keys() - expected)
                absent = sorted(expected - record.keys())
                raise SnapshotFormatError(
                    f"{path.name} line {number}: columns do not match table {table} "
                    f"(unexpected: {unexpected or 'none'}; missing: {absent or 'none'})"
                )
            yield record


def load_snapshot(
    conn: psycopg.Connection[Any],
    folder: Path,
    *,
    replace: bool = False,
    on_table: Callable[[str, int], None] | None = None,
) -> SnapshotLoad:
    """Create the totesys schema and load a snapshot folder into it, in one transaction.

    Tables without a file in the folder stay empty and are listed in the result
    (the 2024-11-14 snapshot has no ``payment`` file).

    Raises
    ------
    SnapshotFormatError
        The folder holds no snapshot file at all, or a file is malformed.

    Examples
    --------
    >>> with connect(dsn) as conn:  # doctest: +SKIP
    ...     load_snapshot(conn, Path("../shared/data/totesys-2024-11-14")).rows["sales_order"]
    11175
    """
    present = [table for table in SOURCE_TABLES if snapshot_file(folder, table).is_file()]
    if not present:
        raise SnapshotFormatError(f"{folder} holds no <table>.jsonl.gz file of a totesys table")
    result = SnapshotLoad(missing_tables=[t for t in SOURCE_TABLES if t not in present])
    with conn.transaction():
        create_source_tables(conn, replace=replace)
        for table in present:
            columns = table_columns(conn, table)
            records = read_snapshot_rows(snapshot_file(folder, table), table, columns)
            lines = (
                "\t".join(copy_field(record[column]) for column in columns) + "\n"
                for record in records
            )
            result.rows[table] = copy_lines(conn, table, columns, lines)
            if on_table:
                on_table(table, result.rows[table])
        add_source_constraints(conn)
    return result
