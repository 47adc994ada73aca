"""Load's half of the lake: what the warehouse committed, written to the lake zone after it did.

Every export runs after the commit it follows, holding the table's lock, from a
watermark kept in the lake (``lake/_state/<table>.json``, an :class:`ExportState`), and
writes objects whose names follow from the watermark: a crash between the objects and
the watermark makes the next export rewrite the same objects, never add others.

- Facts (:func:`export_facts`): the rows whose surrogate key lies above the watermark.
  Loads of a table hold its lock, which numbers its rows in commit order, so "above the
  watermark" is exactly what the lake lacks. Rows a load numbered itself and just
  committed are written from memory when they are exactly what the lake lacks next
  (:func:`export_committed_facts`): the same objects, without reading them back.
- Dimensions (:func:`export_dimension`): one *change* per gold file the ledger records
  since the watermark (``loaded_at``, stamped after the lock: commit order), holding
  that file's rows, numbered in order within a *generation*.
- dim_date (:func:`export_dimension` too) only grows: when it has more rows than the
  watermark says, it is written whole as its next change.

A generation begins with the whole table as the warehouse holds it, the first time the
lake sees the table (a first load, a lake started beside a loaded warehouse, or one
whose state was lost with its bucket): from the gold files the ledger records, a
change per file, when there are few, all still there, and their keys are exactly the
table's rows (a Parquet read, where reading the table back costs a ``COPY`` of every
row); else read back from the warehouse, a bite of rows per change. Generations are
named by time, so a newer one sorts after an older one and the catalog knows to
rebuild from it.

Examples
--------
>>> with conn.transaction():  # doctest: +SKIP
...     warehouse_sql.lock_target(conn, "fact_sales_order")
...     export_facts(conn, s3, "totes-processed", "fact_sales_order")
11175
"""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError
from psycopg import sql
from pyarrow import csv as pa_csv

from totes.conditional_writes import put_if
from totes.errors import LakeExportConflictError, StarFileSchemaError, StarFileUnreadableError
from totes.lake.layout import (
    FACT_RECORD_KEYS,
    TIME_TEXT_PATTERN,
    ExportState,
    change_key,
    fact_files,
    key_of,
    lake_schema,
    read_state,
    state_key,
    to_lake,
)
from totes.load import warehouse_sql
from totes.load.star_zone import StarFileKey, read_star_file
from totes.parquet_objects import parquet_bytes
from totes.warehouse.star import STAR_SCHEMAS


def _save_state(s3: Any, bucket: str, table: str, state: ExportState) -> ExportState:
    """Compare-and-set the watermark; return it with its new ETag (the next write's condition)."""
    body = state.model_dump_json().encode()
    etag = put_if(s3, bucket, state_key(table), body, etag=state.etag)
    if etag is None:
        # Exports of a table hold its lock: another one got here meanwhile only if a load
        # ran without it. Its objects and ours have the same names: nothing is doubled.
        raise LakeExportConflictError(
            f"the lake's watermark of {table} changed during an export that held the "
            "table's lock; the next load exports again from the watermark that stands"
        )
    return state.model_copy(update={"etag": etag})


def _select_as_lake(table: str, where: sql.Composable, *, limit: int | None = None) -> sql.Composed:
    star = STAR_SCHEMAS[table]
    columns = [
        sql.SQL("to_char({}, {})").format(sql.Identifier(name), sql.Literal(TIME_TEXT_PATTERN))
        if name in star.names and pa.types.is_time(star.field(name).type)
        else sql.Identifier(name)
        for name in lake_schema(table).names
    ]
    return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY {key} {limit}").format(
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(table),
        where=where,
        key=sql.Identifier(key_of(table)),
        limit=sql.SQL("LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL(""),
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


#: Rows one export reads at a time (a fact's surrogate keys, a dimension's rows).
EXPORT_BITE = 200_000


#: A new generation is written from the ledger's gold files when it records at most this
#: many (a request each); from more, the table is read back from the warehouse.
GOLD_FILES_PER_NEW_GENERATION = 16


#: Month files of one bite encoded and uploaded at once: Parquet encoding runs in C++
#: without the GIL, and an upload mostly waits for S3.
PARALLEL_PUTS = 4


def _put(s3: Any, bucket: str, key: str, rows: pa.Table) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(rows))


def _put_all(s3: Any, bucket: str, files: dict[str, pa.Table]) -> None:
    """Write every file, a few at once; return when all are written (or raise the first error)."""
    with ThreadPoolExecutor(max_workers=PARALLEL_PUTS) as pool:
        writes = [pool.submit(_put, s3, bucket, key, rows) for key, rows in files.items()]
        try:
            for written in writes:
                written.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the export fails: write no more of it
            raise


def export_facts(conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str) -> int:
    """Write the rows of a fact table the lake lacks; return how many.

    Call it holding the table's lock (:func:`totes.load.warehouse_sql.lock_target`), in
    a transaction, after the loads it follows committed.

    Raises
    ------
    LakeExportConflictError
        The watermark changed meanwhile (a load without the lock).
    """
    key = sql.Identifier(FACT_RECORD_KEYS[table])
    row = conn.execute(
        sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(key, sql.Identifier(table))
    ).fetchone()
    newest = int(row[0]) if row else 0
    state = read_state(s3, bucket, table)
    exported = 0
    # A bite at a time, each followed by its watermark: memory is bounded by the bite,
    # whatever the lake lacks (a whole warehouse, when the lake begins beside it).
    while state.exported_through < newest:
        through = min(newest, state.exported_through + EXPORT_BITE)
        above = sql.SQL("{key} > {after} AND {key} <= {through}").format(
            key=key, after=sql.Literal(state.exported_through), through=sql.Literal(through)
        )
        rows = _copy_out(conn, _select_as_lake(table, above), table)
        _put_all(s3, bucket, fact_files(table, rows, state.exported_through + 1))
        state = _save_state(
            s3, bucket, table, state.model_copy(update={"exported_through": through})
        )
        exported += rows.num_rows
    return exported


def export_committed_facts(
    conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str, rows: pa.Table
) -> int:
    """Write fact rows a load numbered and just committed, if the lake lacks exactly them.

    ``rows`` hold the star columns and consecutive surrogate keys (see
    :func:`totes.load.warehouse_sql.reserve_record_keys`). When the lake's watermark is
    the newest key below them and they are the table's newest rows, they are written in
    the bites, and under the names,
    :func:`export_facts` would read them back in; otherwise nothing is written (0) and
    :func:`export_facts` catches up from the warehouse. Call it holding the table's lock,
    in a transaction, after the commit of the rows.

    Raises
    ------
    LakeExportConflictError
        The watermark changed meanwhile (a load without the lock).
    """
    key = FACT_RECORD_KEYS[table]
    first = int(rows.column(key)[0].as_py())
    last = first + rows.num_rows - 1
    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT coalesce(max({key}), 0) FROM {table} WHERE {key} < %s), "
            "(SELECT max({key}) FROM {table})"
        ).format(key=sql.Identifier(key), table=sql.Identifier(table)),
        (first,),
    ).fetchone()
    state = read_state(s3, bucket, table)
    # Rows above them (an overlapping load's) would be in the bite the read-back writes
    # under the same name: an export of theirs that crashed before its watermark could
    # have left objects that these rows alone would not overwrite.
    if row is None or (state.exported_through, last) != (row[0], row[1]):
        return 0
    lake_rows = to_lake(rows, table).select(lake_schema(table).names).cast(lake_schema(table))
    written = 0
    while state.exported_through < last:
        through = min(last, state.exported_through + EXPORT_BITE)
        bite = lake_rows.slice(written, through - first + 1 - written)
        _put_all(s3, bucket, fact_files(table, bite, state.exported_through + 1))
        state = _save_state(
            s3, bucket, table, state.model_copy(update={"exported_through": through})
        )
        written += bite.num_rows
    return written


def _new_generation() -> str:
    """A generation's name: the time it began (so newer ones sort after) and a nonce."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"


def export_dimension(conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str) -> int:
    """Write a dimension's (or dim_date's) changes the lake lacks; return their rows.

    Call it holding the table's lock, in a transaction, after the loads it follows
    committed.

    Raises
    ------
    LakeExportConflictError
        The watermark changed meanwhile (a load without the lock).
    """
    state = read_state(s3, bucket, table)
    if state.generation is None:
        return _begin_generation(conn, s3, bucket, table, state)
    if table == warehouse_sql.DATE_DIMENSION:
        return _export_dates(conn, s3, bucket, state)
    exported = 0
    for file_key, loaded_at in warehouse_sql.files_loaded_after(conn, table, state.loaded_through):
        gold = StarFileKey.parse(file_key)
        if gold is None:  # pragma: no cover - the ledger holds only gold files' keys
            continue
        try:
            rows = read_star_file(s3, bucket, gold)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            # A gold file the ledger has is gone (removed by hand): the lake starts over
            # from the table as the warehouse holds it.
            return _begin_generation(conn, s3, bucket, table, state)
        _put(s3, bucket, change_key(table, str(state.generation), state.changes), rows)
        state = state.model_copy(update={"changes": state.changes + 1, "loaded_through": loaded_at})
        exported += rows.num_rows
    if exported:
        _save_state(s3, bucket, table, state)
    return exported


def _begin_generation(
    conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str, state: ExportState
) -> int:
    """Write the whole table, as the warehouse holds it, as a new generation's first changes."""
    # The files applied so far are in what is written now: changes follow the newest.
    loaded_through = warehouse_sql.newest_loaded_at(conn, table)
    generation = _new_generation()
    written = _generation_from_gold_files(conn, s3, bucket, table, generation)
    if written is None:
        written = _generation_from_warehouse(conn, s3, bucket, table, generation)
    changes, rows = written
    begun = state.model_copy(
        update={
            "generation": generation,
            "changes": changes,
            "loaded_through": loaded_through,
            "rows": rows,
        }
    )
    _save_state(s3, bucket, table, begun)
    return rows


def _generation_from_gold_files(
    conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str, generation: str
) -> tuple[int, int] | None:
    """Write a change per gold file the ledger records, in its order; (changes, rows) or None.

    None, with nothing of it left in the lake, unless every file is there and readable
    and their keys are as many as the table's rows, with the same sum, minimum and
    maximum: then the table holds what upserting the files in order gives, which the
    catalog's merge of the changes gives too. ``rows`` is the table's.
    """
    if table == warehouse_sql.DATE_DIMENSION:  # no gold files: load derives it
        return None
    ledger = warehouse_sql.files_loaded_after(conn, table, None)
    files = [file for key, _ in ledger if (file := StarFileKey.parse(key)) is not None]
    if not files or len(files) != len(ledger) or len(files) > GOLD_FILES_PER_NEW_GENERATION:
        return None
    written: list[str] = []
    keys: list[pa.Array] = []
    for number, file in enumerate(files):
        try:
            gold = read_star_file(s3, bucket, file)
        except (StarFileUnreadableError, StarFileSchemaError):
            break  # a file of another release, or damaged: the warehouse knows the rows
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            break  # a gold file removed by hand
        written.append(change_key(table, generation, number))
        _put(s3, bucket, written[-1], gold)
        keys.extend(gold.column(key_of(table)).chunks)
    else:
        unique = pc.unique(pa.chunked_array(keys, STAR_SCHEMAS[table].field(key_of(table)).type))
        in_files = (
            len(unique),
            pc.sum(unique.cast(pa.int64())).as_py() or 0,
            pc.min(unique).as_py(),
            pc.max(unique).as_py(),
        )
        # Rows that came or went outside the ledger: only the warehouse knows them.
        if in_files == warehouse_sql.key_summary(conn, table, key_of(table)):
            return len(files), in_files[0]
    for key in written:
        s3.delete_object(Bucket=bucket, Key=key)
    return None


def _generation_from_warehouse(
    conn: psycopg.Connection[Any], s3: Any, bucket: str, table: str, generation: str
) -> tuple[int, int]:
    """Write the table read back from the warehouse, a bite of rows per change, in key order,
    so memory is bounded by the bite; (changes, rows)."""
    key = sql.Identifier(key_of(table))
    written = changes = 0
    after: sql.Composable = sql.SQL("true")
    while True:
        rows = _copy_out(conn, _select_as_lake(table, after, limit=EXPORT_BITE), table)
        if rows.num_rows or not changes:
            _put(s3, bucket, change_key(table, generation, changes), rows)
            changes += 1
            written += rows.num_rows
        if rows.num_rows < EXPORT_BITE:
            break
        last = rows.column(key_of(table))[-1].as_py()
        after = sql.SQL("{} > {}").format(key, sql.Literal(last))
    return changes, written


def _export_dates(conn: psycopg.Connection[Any], s3: Any, bucket: str, state: ExportState) -> int:
    table = warehouse_sql.DATE_DIMENSION
    if warehouse_sql.count_rows(conn, table) <= state.rows:
        return 0
    rows = _copy_out(conn, _select_as_lake(table, sql.SQL("true")), table)
    _put(s3, bucket, change_key(table, str(state.generation), state.changes), rows)
    _save_state(
        s3,
        bucket,
        table,
        state.model_copy(update={"changes": state.changes + 1, "rows": rows.num_rows}),
    )
    return int(rows.num_rows)
