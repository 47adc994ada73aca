"""Load's half of the lake: what the warehouse committed, committed to the lake's Iceberg tables.

Every export runs after the warehouse commits the rows it follows, holding the table's
lock (:func:`totes.load.warehouse_sql.lock_target`), so exports of a table never race
each other. What a lake table holds of the warehouse is written in its own properties
by the commit that writes the rows (:mod:`totes.lake.iceberg`), and every export starts
from there: a crash between the warehouse's commit and the lake's leaves the lake where
it was, and the next export writes what it lacks, once.

- Facts: the rows whose surrogate key lies above :data:`~totes.lake.iceberg.EXPORTED_THROUGH`,
  appended (loads number a table's rows in commit order, under its lock, so "above" is
  exactly what the lake lacks), a bite at a time. Rows this invocation numbered and
  committed are appended from memory when they are exactly what the lake lacks.
- Dimensions: the rows of every gold file the ledger recorded after
  :data:`~totes.lake.iceberg.LOADED_THROUGH`, the last of each key, in place of the
  table's rows of those keys (more than :data:`UPSERT_MAX_ROWS` of them: the whole table
  rewritten instead).
- dim_date only grows: when the warehouse holds more dates than
  :data:`~totes.lake.iceberg.DATE_ROWS`, all of them are upserted (only the new ones are
  written).

A table the lake lacks (a first load, a lake deleted out of band, or a table of an
earlier release's layout) is made afresh and written whole from the warehouse.

Examples
--------
``conn`` is a connection to a warehouse whose ``dim_currency`` holds three rows, and
``lake`` a lake that has no table yet. The first export makes the table and writes
it whole; the second finds nothing the lake lacks:

>>> with conn.transaction():
...     warehouse_sql.lock_target(conn, "dim_currency")
...     export_to_lake(conn, lake, "dim_currency", run_id="run-1")
3
>>> with conn.transaction():
...     warehouse_sql.lock_target(conn, "dim_currency")
...     export_to_lake(conn, lake, "dim_currency", run_id="run-2")
0
>>> lake.table("dim_currency").scan().to_arrow().num_rows
3
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError
from psycopg import sql
from pyarrow import csv as pa_csv

from totes.errors import GoldFileSchemaError, GoldFileUnreadableError
from totes.key_runs import last_of_each_key
from totes.lake.iceberg import (
    COMMITS_SINCE_MAINTENANCE,
    DATE_ROWS,
    EXPORTED_THROUGH,
    LOADED_THROUGH,
    RUN,
    Lake,
)
from totes.lake.layout import (
    TIME_TEXT_PATTERN,
    lake_schema,
    to_lake,
)
from totes.load import warehouse_sql
from totes.load.gold_files import read_gold_file
from totes.tables import FACT_TABLES, WAREHOUSE
from totes.warehouse.star import STAR_SCHEMAS
from totes.zones.gold import GoldFileKey

if TYPE_CHECKING:
    from pyiceberg.table import Transaction

#: Fact rows one commit appends at most: memory is bounded by the bite, whatever the
#: lake lacks (a whole warehouse, when the lake begins beside it).
EXPORT_BITE: Final = 200_000
#: Changed dimension rows upserted at most; a larger change rewrites the whole table.
UPSERT_MAX_ROWS: Final = 10_000


def _select_as_lake(table: str, where: sql.Composable) -> sql.Composed:
    star = STAR_SCHEMAS[table]
    columns = []
    for name in lake_schema(table).names:
        if name == WAREHOUSE[table].lake_partition:
            column: sql.Composable = sql.SQL("to_char(last_updated_date, 'YYYY-MM')")
        elif name in star.names and pa.types.is_time(star.field(name).type):
            column = sql.SQL("to_char({}, {})").format(
                sql.Identifier(name), sql.Literal(TIME_TEXT_PATTERN)
            )
        else:
            column = sql.Identifier(name)
        columns.append(column)
    return sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY {key}").format(
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(table),
        where=where,
        key=sql.Identifier(WAREHOUSE[table].lake_key),
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


def export_to_lake(
    conn: psycopg.Connection[Any],
    lake: Lake,
    table: str,
    *,
    run_id: str,
    committed: Sequence[pa.Table] = (),
) -> int:
    """Commit to the lake what it lacks of a warehouse table; return how many rows.

    Call it holding the table's lock, in a transaction, after the loads it follows
    committed. ``committed`` are the rows this invocation copied straight into the table
    and committed: a fact's numbered, in key order (star columns and surrogate keys),
    appended from memory when they are exactly what the lake lacks; a dimension's whole
    file copied into its empty table, written from memory to a table made afresh when
    the table holds that file alone.

    Raises
    ------
    LakeCommitError
        Another writer kept committing first, or the table's files could not be read or
        written (the next export starts from what stands).
    """
    properties = lake.properties(table)
    if table in FACT_TABLES:
        newest = _newest_record(conn, table)
        if properties is not None and int(properties.get(EXPORTED_THROUGH, "0")) >= newest:
            return 0
        exported, lacking = 0, True
        while lacking:
            appended, lacking = lake.write(
                table,
                lambda staged: _append_facts(
                    conn, staged, table, newest=newest, run_id=run_id, committed=committed
                ),
            )
            exported += appended
        return exported
    if _dimension_holds_all(conn, table, properties):
        return 0
    return lake.write(
        table,
        lambda staged: _upsert_dimension(conn, lake, staged, table, run_id, committed=committed),
    )


def _dimension_holds_all(
    conn: psycopg.Connection[Any], table: str, properties: Mapping[str, str] | None
) -> bool:
    """Whether the lake's dimension, by the properties Glue mirrors, lacks nothing of the
    warehouse's.

    What an idle run asks of every table (a fact compares its last record, above):
    answered without reading the table's metadata.
    """
    if properties is None:
        return False
    if table == warehouse_sql.DATE_DIMENSION:
        return properties.get(DATE_ROWS) == str(warehouse_sql.count_rows(conn, table))
    if LOADED_THROUGH not in properties:
        return False
    loaded_through = properties[LOADED_THROUGH]
    after = datetime.fromisoformat(loaded_through) if loaded_through else None
    return not warehouse_sql.files_loaded_after(conn, table, after)


def _newest_record(conn: psycopg.Connection[Any], table: str) -> int:
    key = sql.Identifier(_record_key(table))
    row = conn.execute(
        sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(key, sql.Identifier(table))
    ).fetchone()
    return int(row[0]) if row else 0


def _commits(properties: Mapping[str, str]) -> str:
    return str(int(properties.get(COMMITS_SINCE_MAINTENANCE, "0")) + 1)


def _append_facts(
    conn: psycopg.Connection[Any],
    transaction: Transaction,
    table: str,
    *,
    newest: int,
    run_id: str,
    committed: Sequence[pa.Table],
) -> tuple[int, bool]:
    """Stage the next bite of fact rows the table lacks, up to ``newest``: how many, and
    whether it still lacks rows after them (so the last bite ends the export without
    reading the table again)."""
    properties = transaction.table_metadata.properties
    through = int(properties.get(EXPORTED_THROUGH, "0"))
    if through >= newest:
        return 0, False
    upto = min(newest, through + EXPORT_BITE)
    rows = _from_memory(committed, table, through, upto)
    if rows is None:
        key = sql.Identifier(_record_key(table))
        above = sql.SQL("{key} > {after} AND {key} <= {upto}").format(
            key=key, after=sql.Literal(through), upto=sql.Literal(upto)
        )
        rows = _copy_out(conn, _select_as_lake(table, above), table)
    if rows.num_rows:
        transaction.append(rows, snapshot_properties={RUN: run_id})
    transaction.set_properties(
        {EXPORTED_THROUGH: str(upto), COMMITS_SINCE_MAINTENANCE: _commits(properties)}
    )
    return int(rows.num_rows), upto < newest


def _from_memory(
    committed: Sequence[pa.Table], table: str, through: int, upto: int
) -> pa.Table | None:
    """The committed rows with keys ``through + 1 .. upto`` as the lake's, if they are
    exactly those."""
    rows = committed_bite(committed, _record_key(table), through, upto)
    return None if rows is None else to_lake(rows, table).cast(lake_schema(table))


def committed_bite(
    committed: Sequence[pa.Table], key: str, through: int, upto: int
) -> pa.Table | None:
    """The rows of ``committed`` keyed ``through + 1 .. upto``, if they hold exactly those.

    ``committed`` are tables of rows numbered in increasing order as they committed.

    Examples
    --------
    Keys 1 to 5 committed: the second of two bites is the rows keyed 4 and 5; rows
    keyed 6 and 7 are not in memory, and neither is a bite with a key missing:

    >>> committed = [pa.table({"id": [1, 2, 3]}), pa.table({"id": [4, 5]})]
    >>> committed_bite(committed, "id", 3, 5).column("id").to_pylist()
    [4, 5]
    >>> committed_bite(committed, "id", 5, 7) is None
    True
    >>> committed_bite([pa.table({"id": [1, 2, 4]})], "id", 0, 3) is None
    True
    """
    if not committed:
        return None
    rows = pa.concat_tables(committed)
    start = pc.index(rows.column(key), through + 1).as_py()
    if start < 0 or start + (upto - through) > rows.num_rows:
        return None
    rows = rows.slice(start, upto - through)
    keys = rows.column(key)
    # Increasing keys: with the first and the last where they should be, the keys
    # between are exactly the ones the lake lacks.
    if (keys[0].as_py(), keys[-1].as_py()) != (through + 1, upto):
        return None
    return rows


def _upsert_dimension(
    conn: psycopg.Connection[Any],
    lake: Lake,
    transaction: Transaction,
    table: str,
    run_id: str,
    *,
    committed: Sequence[pa.Table],
) -> int:
    """Stage the rows the dimension table lacks; return how many.

    The changed rows replace the table's rows of their keys (dim_date's are upserted:
    every date is given, and few are new). An empty table is appended to instead, and a
    change of more than :data:`UPSERT_MAX_ROWS` rows replaces the whole table with the
    warehouse's: replacing keys matches every row it is given against the table, which
    costs more than rewriting a table the size of a dimension.
    """
    whole = sql.SQL("true")
    properties = transaction.table_metadata.properties
    if table == warehouse_sql.DATE_DIMENSION:
        held = int(properties.get(DATE_ROWS, "-1"))
        if warehouse_sql.count_rows(conn, table) == held:
            return 0
        dates = _copy_out(conn, _select_as_lake(table, whole), table)
        rows: pa.Table | None = dates
        position = {DATE_ROWS: str(dates.num_rows)}
    elif LOADED_THROUGH not in properties:  # a table made afresh
        newest = warehouse_sql.newest_loaded_at(conn, table)
        rows = _copied_whole(conn, table, committed)
        position = {LOADED_THROUGH: newest.isoformat() if newest else ""}
    else:
        loaded_through = properties[LOADED_THROUGH]
        files = warehouse_sql.files_loaded_after(
            conn, table, datetime.fromisoformat(loaded_through) if loaded_through else None
        )
        if not files:
            return 0
        # None, if a gold file is gone or unreadable: the warehouse knows the rows.
        rows = _gold_rows(lake, table, [key for key, _ in files])
        position = {LOADED_THROUGH: files[-1][1].isoformat()}
    empty = transaction.table_metadata.current_snapshot() is None
    snapshot = {RUN: run_id}
    if rows is None or (rows.num_rows > UPSERT_MAX_ROWS and not empty):
        rows = _copy_out(conn, _select_as_lake(table, whole), table)
        if empty:
            transaction.append(rows, snapshot_properties=snapshot)
        else:
            transaction.overwrite(rows, snapshot_properties=snapshot)
    elif empty:
        transaction.append(rows, snapshot_properties=snapshot)
    elif table == warehouse_sql.DATE_DIMENSION:
        # Every date, of which few are new: the upsert writes only those.
        transaction.upsert(
            rows, join_cols=[WAREHOUSE[table].lake_key], snapshot_properties=snapshot
        )
    elif rows.num_rows:
        _replace_keys(transaction, rows, WAREHOUSE[table].lake_key, snapshot)
    transaction.set_properties({**position, COMMITS_SINCE_MAINTENANCE: _commits(properties)})
    return int(rows.num_rows)


def _replace_keys(
    transaction: Transaction, rows: pa.Table, key: str, snapshot: Mapping[str, str]
) -> None:
    """Stage the rows, one per key (the last of each, as :func:`_gold_rows` gives them), in
    place of the table's rows of the same keys: what an upsert would leave. pyiceberg's
    upsert plans the files that may hold the keys three times (to compare their rows,
    then to delete and to rewrite them) and makes a snapshot more when some keys are
    new; this plans them twice."""
    from pyiceberg.expressions import In  # noqa: PLC0415

    keys = In(key, rows.column(key).to_pylist())  # type: ignore[call-arg, arg-type]
    transaction.overwrite(rows, overwrite_filter=keys, snapshot_properties=dict(snapshot))


def _copied_whole(
    conn: psycopg.Connection[Any], table: str, committed: Sequence[pa.Table]
) -> pa.Table | None:
    """A dimension's rows as the lake's, from memory: the file this invocation copied into
    the empty table, if the ledger records no other file of it (so the table holds that
    file's rows alone); else None, and the table is read back."""
    if len(committed) != 1 or len(warehouse_sql.files_loaded_after(conn, table, None)) != 1:
        return None
    rows = to_lake(committed[0], table).cast(lake_schema(table))
    return rows.sort_by(WAREHOUSE[table].lake_key)


def _gold_rows(lake: Lake, table: str, keys: list[str]) -> pa.Table | None:
    """The rows of these gold files, the last of each key in file order; None if one is missing."""
    parts = []
    for key in keys:
        gold = GoldFileKey.parse(key)
        if gold is None:  # pragma: no cover - the ledger holds only gold files' keys
            return None
        try:
            parts.append(to_lake(read_gold_file(lake.s3, lake.settings.bucket, gold), table))
        except (GoldFileUnreadableError, GoldFileSchemaError):
            return None
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            return None
    rows = pa.concat_tables(parts).cast(lake_schema(table))
    # A stable sort by key keeps file order within a key: the last row of a run is newest.
    key = WAREHOUSE[table].lake_key
    in_order = rows.take(pc.sort_indices(rows, [(key, "ascending")]))
    return in_order.filter(last_of_each_key(in_order, [key]))


def _record_key(fact: str) -> str:
    key = WAREHOUSE[fact].record_key
    if key is None:
        raise ValueError(f"{fact} is not a fact: it has no record key")
    return key
