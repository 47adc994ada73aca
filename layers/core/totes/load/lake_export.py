"""Load's half of the lake: what the warehouse committed, written to the lake zone.

- A dimension file's rows are written as a change file in the transaction that applies
  the file, before its commit (:func:`write_dimension_change`). A retry of a file that
  did not commit rewrites the same object with the same rows, which it then applies.
- Fact rows are exported after they commit, by surrogate key: each load of a fact table
  ends by writing the rows whose key lies above the table's export watermark
  (``lake/_state/<fact>.json``) and moving the watermark (:func:`export_facts`). Loads
  of a table take its lock, which numbers its rows in commit order, so "above the
  watermark" is exactly what the lake lacks. A crash between the files and the
  watermark rewrites the same objects next time (they are named after the first key).
- dim_date only grows: it is written whole when it has more rows than last time
  (:func:`export_dim_date`).
- A dimension the lake has never seen (a lake started beside a loaded warehouse, or
  a bucket lost) is first written whole, as the warehouse holds it
  (:func:`start_dimension`); its changes follow.

The watermarks live in the lake itself: losing the bucket loses them too, and the next
loads export the warehouse's facts from the first row.

Examples
--------
>>> with conn.transaction():  # doctest: +SKIP
...     warehouse_sql.lock_target(conn, "fact_sales_order")
...     export_facts(conn, s3, "totes-processed", "fact_sales_order")
11175
"""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pyarrow as pa
from botocore.exceptions import ClientError
from psycopg import sql
from pyarrow import csv as pa_csv
from pydantic import BaseModel, Field, NonNegativeInt

from totes.conditional_writes import put_if
from totes.lake.layout import (
    FACT_RECORD_KEYS,
    INITIAL_CHANGE,
    TIME_TEXT_PATTERN,
    changes_prefix,
    fact_files,
    key_of,
    lake_schema,
    parquet_bytes,
    state_key,
    to_lake,
)
from totes.warehouse.star import STAR_SCHEMAS

DATE_DIMENSION = "dim_date"


class ExportState(BaseModel):
    """How far a table is in the lake: the last record id (a fact) or row count (dim_date)."""

    exported_through: NonNegativeInt = 0
    etag: str | None = Field(default=None, exclude=True)


def _read_state(s3: Any, bucket: str, table: str) -> ExportState:
    try:
        response = s3.get_object(Bucket=bucket, Key=state_key(table))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return ExportState()
        raise
    state = ExportState.model_validate_json(response["Body"].read())
    state.etag = response["ETag"]
    return state


def _save_state(s3: Any, bucket: str, table: str, state: ExportState, through: int) -> None:
    # The table's lock keeps other exporters out; a lost compare-and-set can only mean a
    # load that ran without it, and the next export catches up from whichever mark stands.
    body = ExportState(exported_through=through).model_dump_json().encode()
    put_if(s3, bucket, state_key(table), body, etag=state.etag, ContentType="application/json")


def write_dimension_change(s3: Any, bucket: str, table: str, file_stem: str, rows: pa.Table) -> str:
    """Write the rows of a dimension file about to be applied as one of its lake changes.

    Returns
    -------
    str
        The change object's key, named after the gold file (sorted: commit order).
    """
    key = f"{changes_prefix(table)}{file_stem}.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(to_lake(rows, table)))
    return key


def start_dimension(conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str) -> int:
    """Write a dimension whole as its first lake change, unless the lake has it; return rows.

    Call it holding the table's lock, in a transaction, before applying files: their
    changes then follow it.
    """
    state = _read_state(s3, bucket, table)
    if state.exported_through:
        return 0
    rows = _copy_out(conn, _select_as_lake(table, sql.SQL("true")), table)
    key = f"{changes_prefix(table)}{INITIAL_CHANGE}.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(rows))
    _save_state(s3, bucket, table, state, 1)
    started: int = rows.num_rows
    return started


def _select_as_lake(table: str, where: sql.Composable) -> sql.Composed:
    star = STAR_SCHEMAS[table]
    columns = [
        sql.SQL("to_char({}, {})").format(sql.Identifier(name), sql.Literal(TIME_TEXT_PATTERN))
        if name in star.names and pa.types.is_time(star.field(name).type)
        else sql.Identifier(name)
        for name in lake_schema(table).names
    ]
    key = sql.Identifier(key_of(table))
    return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY {key}").format(
        columns=sql.SQL(", ").join(columns), table=sql.Identifier(table), where=where, key=key
    )


def _copy_out(conn: psycopg.Connection[Any], query: sql.Composable, table: str) -> pa.Table:
    """The rows of ``query`` as an Arrow table with the lake's types, through COPY CSV."""
    schema = lake_schema(table)
    buffer = io.BytesIO()
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)").format(query)
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in copy:
            buffer.write(chunk)
    if not buffer.tell():
        return schema.empty_table()
    buffer.seek(0)
    return pa_csv.read_csv(
        buffer,
        read_options=pa_csv.ReadOptions(column_names=schema.names, use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={field.name: field.type for field in schema},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        ),
    ).cast(schema)


def export_facts(conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str) -> int:
    """Write the rows of a fact table the lake lacks; return how many.

    Call it holding the table's lock (:func:`totes.load.warehouse_sql.lock_target`), in
    a transaction.
    """
    key = sql.Identifier(FACT_RECORD_KEYS[table])
    row = conn.execute(
        sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(key, sql.Identifier(table))
    ).fetchone()
    newest = int(row[0]) if row else 0
    state = _read_state(s3, bucket, table)
    if newest <= state.exported_through:
        return 0
    above = sql.SQL("{key} > {after} AND {key} <= {through}").format(
        key=key, after=sql.Literal(state.exported_through), through=sql.Literal(newest)
    )
    rows = _copy_out(conn, _select_as_lake(table, above), table)
    for file_key, part in fact_files(table, rows, state.exported_through + 1).items():
        s3.put_object(Bucket=bucket, Key=file_key, Body=parquet_bytes(part))
    _save_state(s3, bucket, table, state, newest)
    exported: int = rows.num_rows
    return exported


def export_dim_date(conn: psycopg.Connection[Any], s3: Any, bucket: str) -> int:
    """Write dim_date whole when it has grown since it was last written; return its rows.

    Call it holding dim_date's lock, in a transaction.
    """
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(DATE_DIMENSION))
    ).fetchone()
    rows_now = int(row[0]) if row else 0
    state = _read_state(s3, bucket, DATE_DIMENSION)
    if rows_now <= state.exported_through:
        return 0
    rows = _copy_out(conn, _select_as_lake(DATE_DIMENSION, sql.SQL("true")), DATE_DIMENSION)
    key = f"{changes_prefix(DATE_DIMENSION)}{rows_now:012d}.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(rows))
    _save_state(s3, bucket, DATE_DIMENSION, state, rows_now)
    exported: int = rows.num_rows
    return exported
