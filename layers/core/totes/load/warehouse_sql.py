"""The statements of the load stage, composed from the star-schema names with psycopg.sql.

Every identifier goes through :class:`psycopg.sql.Identifier` and every value is a
query parameter or a :class:`psycopg.sql.Literal`: no name or value is ever pasted
into SQL text. Each ``*_statement`` function only builds a statement; the function
of the same name without the suffix runs it on a connection inside the caller's
transaction.

A file's rows are copied into a temporary table, ``load_stage``, that has the
warehouse table's columns (and types) plus ``file_row``, the row's position in the
file; a fact file's version keys go first into ``load_keys``. Everything after that
is set-based SQL over these tables.

The examples run on ``conn``, a connection to a warehouse whose dimensions hold a few
rows (three currencies, four payment types, a counterparty, a transaction, a member of
staff and the day 2024-11-14) and whose facts hold none, inside a transaction that is
rolled back afterwards; ``payments`` are three gold rows of ``fact_payment`` that
reference them: payment 1 at 09:00 and again, paid, at 09:30, and payment 2 at 10:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Final

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from totes.db import identifiers
from totes.load.gold_files import (
    FILE_ROW,
    RejectedRow,
    binary_chunks,
    csv_chunks,
    fact_references,
    has_binary_form,
    rows_as_binary,
    rows_as_csv,
)
from totes.names import (
    LOAD_LEDGER_TABLE,
    LOAD_LISTING_TABLE,
    NEWEST_VERSIONS_TABLE,
)
from totes.tables import FACT_TABLES, WAREHOUSE
from totes.warehouse.star import STAR_SCHEMAS

#: The temporary table a file's rows are copied into; dropped when the transaction ends.
STAGE_TABLE: Final = "load_stage"
#: The temporary table a fact file's version keys are copied into first.
KEYS_TABLE: Final = "load_keys"
DATE_DIMENSION: Final = "dim_date"

_DAY = sql.Identifier("day_value")


def _date_attributes(day: sql.Composable) -> list[sql.Composable]:
    """SQL for every dim_date column but date_id, from a date expression (in column order).

    ``to_char`` without the ``TM`` prefix always gives English names; ``FM`` drops the
    padding to nine characters.
    """
    return [
        sql.SQL("EXTRACT(YEAR FROM {})::integer").format(day),
        sql.SQL("EXTRACT(MONTH FROM {})::integer").format(day),
        sql.SQL("EXTRACT(DAY FROM {})::integer").format(day),
        sql.SQL("EXTRACT(ISODOW FROM {})::integer").format(day),
        sql.SQL("to_char({}, {})").format(day, sql.Literal("FMDay")),
        sql.SQL("to_char({}, {})").format(day, sql.Literal("FMMonth")),
        sql.SQL("EXTRACT(QUARTER FROM {})::integer").format(day),
    ]


def _columns(target: str) -> list[str]:
    return list(STAR_SCHEMAS[target].names)


#: Memory for each hash and sort of a load statement: the hash of a large file's keys
#: then stays in memory instead of spilling to disk in batches.
LOAD_WORK_MEM: Final = "64MB"


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """Session settings of a load: more memory per hash, no JIT compilation.

    The planner's cost estimates for a large staged file run high enough to trigger
    JIT, whose compile time exceeds what it saves on these statements.

    Examples
    --------
    >>> prepare_session(conn)
    >>> conn.execute("SHOW jit").fetchone(), conn.execute("SHOW work_mem").fetchone()
    (('off',), ('64MB',))
    """
    conn.execute("SET jit = off")
    conn.execute(sql.SQL("SET work_mem = {}").format(sql.Literal(LOAD_WORK_MEM)))


# -- the ledger -------------------------------------------------------------------------------


def missing_tables(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[str]:
    """The tables of ``tables`` that do not exist in the connection's schema search path.

    Examples
    --------
    >>> missing_tables(conn, ["dim_staff", "load_ledger"])
    []
    >>> missing_tables(conn, ["dim_weather", "dim_staff", "dim_moon"])
    ['dim_weather', 'dim_moon']
    """
    wanted = list(tables)
    rows = conn.execute(
        "SELECT name FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, position) "
        "WHERE to_regclass(quote_ident(name)) IS NULL ORDER BY position",
        (wanted,),
    ).fetchall()
    return [row[0] for row in rows]


def loaded_keys(conn: psycopg.Connection[Any], keys: Iterable[str]) -> set[str]:
    """The keys among ``keys`` that the ledger records as loaded.

    Examples
    --------
    >>> claim_file(conn, "dim_staff/run=exec-1/part-0.parquet", "dim_staff", "exec-1", 1)
    True
    >>> loaded_keys(conn, ["dim_staff/run=exec-1/part-0.parquet",
    ...                    "dim_staff/run=exec-2/part-0.parquet"])
    {'dim_staff/run=exec-1/part-0.parquet'}
    """
    statement = sql.SQL("SELECT file_key FROM {} WHERE file_key = ANY(%s)").format(
        sql.Identifier(LOAD_LEDGER_TABLE)
    )
    return {row[0] for row in conn.execute(statement, (list(keys),))}


def listing_start(conn: psycopg.Connection[Any], table: str) -> str | None:
    """The key after which load lists ``table``'s gold files (None: from the start).

    Examples
    --------
    >>> listing_start(conn, "dim_staff") is None
    True
    >>> key = "dim_staff/seq=0000000042/run=2026-12-06T10:00:00.000Z-exec/0000000042-9f2c.parquet"
    >>> move_listing_start(conn, "dim_staff", key, 42)
    >>> listing_start(conn, "dim_staff") == key
    True
    """
    row = conn.execute(
        sql.SQL("SELECT file_key FROM {} WHERE warehouse_table = %s").format(
            sql.Identifier(LOAD_LISTING_TABLE)
        ),
        (table,),
    ).fetchone()
    return None if row is None else str(row[0])


def move_listing_start(conn: psycopg.Connection[Any], table: str, key: str, sequence: int) -> None:
    """Start ``table``'s next listings after ``key`` (the ``sequence``-th commit), unless a
    concurrent load has already moved further.

    Examples
    --------
    >>> move_listing_start(conn, "dim_staff", "dim_staff/seq=0000000042/run=b/1.parquet", 42)
    >>> move_listing_start(conn, "dim_staff", "dim_staff/seq=0000000041/run=a/1.parquet", 41)
    >>> listing_start(conn, "dim_staff")
    'dim_staff/seq=0000000042/run=b/1.parquet'
    """
    conn.execute(
        sql.SQL(
            "INSERT INTO {table} (warehouse_table, file_key, sequence) VALUES (%s, %s, %s) "
            "ON CONFLICT (warehouse_table) DO UPDATE SET file_key = EXCLUDED.file_key, "
            "sequence = EXCLUDED.sequence, updated_at = now() "
            "WHERE {table}.sequence < EXCLUDED.sequence"
        ).format(table=sql.Identifier(LOAD_LISTING_TABLE)),
        (table, key, sequence),
    )


def lock_target(conn: psycopg.Connection[Any], target: str) -> None:
    """Wait for other loads of ``target`` to end, then hold them off until this transaction ends.

    Two loaders of one table (overlapping executions) then apply files one after the
    other: neither can deadlock the other on the rows both insert.

    Examples
    --------
    >>> held = ("SELECT count(*) FROM pg_locks "
    ...         "WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    >>> conn.execute(held).fetchone()
    (0,)
    >>> with conn.transaction():
    ...     lock_target(conn, "fact_sales_order")
    ...     conn.execute(held).fetchone()
    (1,)
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"totes.load:{target}",))


def claim_file_statement() -> sql.Composed:
    """``INSERT`` of a file's ledger row that does nothing if the file is already there.

    ``loaded_at`` is the clock when the row is written, after the table's lock: the
    files of a table are then stamped in the order they commit (``now()``, the
    transaction's start, could be earlier for a transaction that waited for the lock),
    which is the order the lake export follows.

    Examples
    --------
    >>> claim_file_statement().as_string()[:26]
    'INSERT INTO "load_ledger" '
    """
    return sql.SQL(
        "INSERT INTO {} (file_key, warehouse_table, run_id, rows_in_file, rows_applied, "
        "loaded_at) VALUES (%s, %s, %s, %s, 0, clock_timestamp()) "
        "ON CONFLICT (file_key) DO NOTHING RETURNING file_key"
    ).format(sql.Identifier(LOAD_LEDGER_TABLE))


def newest_loaded_at(conn: psycopg.Connection[Any], target: str) -> datetime | None:
    """When the ledger recorded the newest file of a table (None: no file yet).

    Examples
    --------
    >>> newest_loaded_at(conn, "dim_staff") is None
    True
    >>> claim_file(conn, "dim_staff/run=exec-1/part-0.parquet", "dim_staff", "exec-1", 1)
    True
    >>> when = newest_loaded_at(conn, "dim_staff")
    >>> when.tzinfo is not None, files_loaded_after(conn, "dim_staff", None)[-1][1] == when
    (True, True)
    """
    statement = sql.SQL("SELECT max(loaded_at) FROM {} WHERE warehouse_table = %s").format(
        sql.Identifier(LOAD_LEDGER_TABLE)
    )
    row = conn.execute(statement, (target,)).fetchone()
    return row[0] if row else None


def files_loaded_after(
    conn: psycopg.Connection[Any], target: str, after: datetime | None
) -> list[tuple[str, datetime]]:
    """The files of a table the ledger records after ``after`` (all if None), in commit order.

    Examples
    --------
    >>> for run in ("exec-1", "exec-2"):
    ...     _ = claim_file(conn, f"dim_staff/run={run}/0000000001-ab.parquet", "dim_staff", run, 1)
    >>> [key for key, _ in files_loaded_after(conn, "dim_staff", None)]
    ['dim_staff/run=exec-1/0000000001-ab.parquet', 'dim_staff/run=exec-2/0000000001-ab.parquet']
    >>> first_loaded_at = files_loaded_after(conn, "dim_staff", None)[0][1]
    >>> [key for key, _ in files_loaded_after(conn, "dim_staff", first_loaded_at)]
    ['dim_staff/run=exec-2/0000000001-ab.parquet']
    """
    statement = sql.SQL(
        "SELECT file_key, loaded_at FROM {} WHERE warehouse_table = %s "
        "AND loaded_at > coalesce(%s, '-infinity'::timestamptz) ORDER BY loaded_at, file_key"
    ).format(sql.Identifier(LOAD_LEDGER_TABLE))
    return [(str(key), stamp) for key, stamp in conn.execute(statement, (target, after))]


def claim_file(
    conn: psycopg.Connection[Any], file_key: str, target: str, run_id: str, rows_in_file: int
) -> bool:
    """Record a file in the ledger; False if it was already there (another load has it).

    Examples
    --------
    >>> claim_file(conn, "dim_staff/run=exec-1/part-0.parquet", "dim_staff", "exec-1", 20)
    True
    >>> claim_file(conn, "dim_staff/run=exec-1/part-0.parquet", "dim_staff", "exec-2", 20)
    False
    """
    row = conn.execute(claim_file_statement(), (file_key, target, run_id, rows_in_file)).fetchone()
    return row is not None


def record_applied(conn: psycopg.Connection[Any], file_key: str, rows_applied: int) -> None:
    """Set how many of a claimed file's rows changed the warehouse.

    Examples
    --------
    >>> claim_file(conn, "dim_staff/run=exec-1/part-0.parquet", "dim_staff", "exec-1", 20)
    True
    >>> record_applied(conn, "dim_staff/run=exec-1/part-0.parquet", 1)
    >>> conn.execute("SELECT rows_in_file, rows_applied FROM load_ledger").fetchall()
    [(20, 1)]
    """
    conn.execute(
        sql.SQL("UPDATE {} SET rows_applied = %s WHERE file_key = %s").format(
            sql.Identifier(LOAD_LEDGER_TABLE)
        ),
        (rows_applied, file_key),
    )


# -- staging ----------------------------------------------------------------------------------


def _staged_columns(target: str, *, keys_only: bool) -> tuple[str, list[str]]:
    if keys_only:
        return KEYS_TABLE, list(WAREHOUSE[target].version_key)
    return STAGE_TABLE, _columns(target)


def create_stage_statement(target: str, *, keys_only: bool = False) -> sql.Composed:
    """A temporary table with the target's star columns and types, plus ``file_row``.

    With ``keys_only``, the table is ``load_keys`` and holds a fact's version key only.

    Examples
    --------
    >>> create_stage_statement("dim_payment_type").as_string()  # doctest: +NORMALIZE_WHITESPACE
    'CREATE TEMPORARY TABLE "load_stage" ON COMMIT DROP AS SELECT "payment_type_id",
     "payment_type_name", NULL::bigint AS "file_row" FROM "dim_payment_type" WITH NO DATA'
    """
    table, columns = _staged_columns(target, keys_only=keys_only)
    return sql.SQL(
        "CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS "
        "SELECT {columns}, NULL::bigint AS {file_row} FROM {target} WITH NO DATA"
    ).format(
        table=sql.Identifier(table),
        columns=identifiers(columns),
        file_row=sql.Identifier(FILE_ROW),
        target=sql.Identifier(target),
    )


def copy_stage_statement(target: str, *, binary: bool, keys_only: bool = False) -> sql.Composed:
    """``COPY ... FROM STDIN`` of the staged columns and ``file_row``, as CSV or binary.

    Examples
    --------
    >>> copy_stage_statement("fact_payment", binary=True, keys_only=True).as_string()
    ... # doctest: +NORMALIZE_WHITESPACE
    'COPY "load_keys" ("payment_id", "last_updated_date", "last_updated_time", "file_row")
     FROM STDIN (FORMAT binary)'
    """
    table, columns = _staged_columns(target, keys_only=keys_only)
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        sql.Identifier(table),
        identifiers([*columns, FILE_ROW]),
        sql.SQL("binary" if binary else "csv"),
    )


def stage_rows(
    conn: psycopg.Connection[Any],
    target: str,
    rows: pa.Table,
    positions: pa.Array | None = None,
    *,
    keys_only: bool = False,
) -> int:
    """Create the stage and COPY the rows into it, each with its position in its file;
    return how many went in.

    Rows whose every column has a binary form of one size (a fact's version keys, a
    sales order's or a payment's whole rows) go as binary COPY, the others as CSV
    (:func:`copy_rows` says why). Chunks are sent by a separate thread while the next
    one is rendered.

    Parameters
    ----------
    rows
        The staged columns: a table's star columns, or with ``keys_only`` a fact's
        version key.
    positions
        Each row's position in its file (``int64``, no nulls, for binary), when ``rows``
        are only some of the file's rows; by default the rows are the whole file, in
        order.
    keys_only
        Stage a fact's version keys into ``load_keys`` rather than whole rows.

    Examples
    --------
    >>> stage_rows(conn, "fact_payment", payments)
    3
    >>> keys = payments.select(["payment_id", "last_updated_date", "last_updated_time"])
    >>> stage_rows(conn, "fact_payment", keys, keys_only=True)
    3
    >>> conn.execute("SELECT payment_id, paid, file_row FROM load_stage").fetchall()
    [(1, False, 0), (1, True, 1), (2, False, 2)]
    """
    binary = has_binary_form(rows.schema) and (
        positions is None or (positions.type == pa.int64() and not positions.null_count)
    )
    chunks = binary_chunks(rows, positions) if binary else csv_chunks(rows, positions)
    conn.execute(create_stage_statement(target, keys_only=keys_only))
    with conn.cursor() as cursor:
        statement = copy_stage_statement(target, binary=binary, keys_only=keys_only)
        with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
            for chunk in chunks:
                copy.write(chunk)
        return cursor.rowcount


def copy_rows_statement(target: str, columns: Sequence[str], *, binary: bool) -> sql.Composed:
    """``COPY ... FROM STDIN`` of rows straight into the target (``columns``, as CSV or binary).

    Examples
    --------
    >>> copy_rows_statement("dim_payment_type", ["payment_type_id", "payment_type_name"],
    ...                     binary=False).as_string()
    'COPY "dim_payment_type" ("payment_type_id", "payment_type_name") FROM STDIN (FORMAT csv)'
    """
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        sql.Identifier(target), identifiers(columns), sql.SQL("binary" if binary else "csv")
    )


def reserve_record_keys(conn: psycopg.Connection[Any], target: str, count: int) -> int:
    """Take ``count`` consecutive surrogate keys from a fact table's sequence; return the first.

    Rows copied with these keys are numbered before they go in, so the load knows each
    row's key without reading it back. Call it holding the table's lock: the other
    users of the sequence are loads of the table, which wait for it.

    Examples
    --------
    >>> first = reserve_record_keys(conn, "fact_payment", 3)
    >>> reserve_record_keys(conn, "fact_payment", 1) - first
    3
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    sequence = sql.SQL("pg_get_serial_sequence({}, {})").format(
        sql.Literal(target), sql.Literal(WAREHOUSE[target].record_key)
    )
    row = conn.execute(
        sql.SQL("SELECT setval({seq}, nextval({seq}) + {more})").format(
            seq=sequence, more=sql.Literal(count - 1)
        )
    ).fetchone()
    if row is None:
        raise RuntimeError("setval gave no row")
    return int(row[0]) - count + 1


def copy_rows(
    conn: psycopg.Connection[Any], target: str, rows: pa.Table, *, fk_triggers: bool = True
) -> int:
    """COPY rows straight into the target table, without a stage; return how many went in.

    For rows known to go in whole: a dimension's rows into its empty table, or fact
    rows each a new version whose references :func:`lock_references` found and locked.
    A staged load costs a third more (a second pass over the rows, and a sort).

    Rows whose every column has a binary form of one size (a sales order's, a payment's:
    :func:`~totes.load.gold_files.has_binary_form`) go as binary COPY, which PostgreSQL
    reads without parsing text (223,500 sales orders: a third less time, ADR 28); the
    others as CSV.

    Parameters
    ----------
    rows
        The rows, in the target's columns: the star columns, and a fact's surrogate key
        when :func:`reserve_record_keys` numbered them.
    fk_triggers
        As :func:`insert_facts`.

    Examples
    --------
    >>> designs = pa.table({"design_id": [1, 2], "design_name": ["Wooden", "Bronze"],
    ...                     "file_location": ["/usr", "/opt"],
    ...                     "file_name": ["wooden-2022.json", "bronze-2023.json"]})
    >>> copy_rows(conn, "dim_design", designs)
    2
    """
    binary = has_binary_form(rows.schema)
    chunks = rows_as_binary(rows) if binary else rows_as_csv(rows)
    if not fk_triggers:
        conn.execute("SET LOCAL session_replication_role = replica")
    with conn.cursor() as cursor:
        statement = copy_rows_statement(target, rows.column_names, binary=binary)
        with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
            for chunk in chunks:
                copy.write(chunk)
        copied = cursor.rowcount
    if not fk_triggers:
        conn.execute("SET LOCAL session_replication_role = origin")
    return copied


# -- dimensions -------------------------------------------------------------------------------


def upsert_dimension_statement(target: str) -> sql.Composed:
    """Insert new dimension rows and update changed ones; leave unchanged rows untouched.

    When a file holds a key twice, its last row wins.

    Examples
    --------
    >>> text = upsert_dimension_statement("dim_currency").as_string()
    >>> text[text.index("ON CONFLICT"):]  # doctest: +NORMALIZE_WHITESPACE
    'ON CONFLICT ("currency_id") DO UPDATE SET "currency_code" = EXCLUDED."currency_code",
     "currency_name" = EXCLUDED."currency_name" WHERE ROW("existing"."currency_code",
     "existing"."currency_name") IS DISTINCT FROM ROW(EXCLUDED."currency_code",
     EXCLUDED."currency_name")'
    """
    key = WAREHOUSE[target].key
    columns = _columns(target)
    attributes = [name for name in columns if name != key]
    return sql.SQL(
        "INSERT INTO {target} AS existing ({columns}) "
        "SELECT DISTINCT ON ({key}) {selected} FROM {stage} ORDER BY {key}, {file_row} DESC "
        "ON CONFLICT ({key}) DO UPDATE SET {assignments} "
        "WHERE ROW({current}) IS DISTINCT FROM ROW({incoming})"
    ).format(
        target=sql.Identifier(target),
        columns=identifiers(columns),
        key=sql.Identifier(key),
        selected=identifiers(columns),
        stage=sql.Identifier(STAGE_TABLE),
        file_row=sql.Identifier(FILE_ROW),
        assignments=sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(name), sql.Identifier(name))
            for name in attributes
        ),
        current=identifiers(attributes, table="existing"),
        incoming=sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{}").format(sql.Identifier(name)) for name in attributes
        ),
    )


def upsert_dimension(conn: psycopg.Connection[Any], target: str) -> int:
    """Apply the staged rows to a dimension; return how many rows were inserted or changed.

    Examples
    --------
    Pound Sterling is unchanged, the Swiss Franc new:

    >>> currencies = pa.table({"currency_id": [1, 4], "currency_code": ["GBP", "CHF"],
    ...                        "currency_name": ["Pound Sterling", "Swiss Franc"]})
    >>> stage_rows(conn, "dim_currency", currencies)
    2
    >>> upsert_dimension(conn, "dim_currency")
    1
    """
    return conn.execute(upsert_dimension_statement(target)).rowcount


# -- facts ------------------------------------------------------------------------------------


def has_rows(conn: psycopg.Connection[Any], table: str) -> bool:
    """Tell whether ``table`` holds any row.

    Examples
    --------
    >>> has_rows(conn, "fact_payment"), has_rows(conn, "dim_currency")
    (False, True)
    """
    statement = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
    row = conn.execute(statement).fetchone()
    return bool(row and row[0])


def count_rows(conn: psycopg.Connection[Any], table: str) -> int:
    """The rows ``table`` holds.

    Examples
    --------
    >>> count_rows(conn, "dim_currency")
    3
    """
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def key_summary(
    conn: psycopg.Connection[Any], table: str, key: str
) -> tuple[int, int, int | None, int | None]:
    """The rows of ``table`` and the sum, minimum and maximum of its integer ``key``.

    Examples
    --------
    >>> key_summary(conn, "dim_currency", "currency_id")
    (3, 6, 1, 3)
    >>> key_summary(conn, "dim_design", "design_id")
    (0, 0, None, None)
    """
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum({key}), 0), min({key}), max({key}) FROM {table}"
        ).format(key=sql.Identifier(key), table=sql.Identifier(table))
    ).fetchone()
    if row is None:
        raise RuntimeError("an aggregate gave no row")
    return int(row[0]), int(row[1]), row[2], row[3]


def _same_version(target: str) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("staged", key), sql.Identifier("present", key))
        for key in WAREHOUSE[target].version_key
    )


def count_present_versions_statement(target: str) -> sql.Composed:
    """Count the staged version keys that the fact table already holds.

    Examples
    --------
    >>> count_present_versions_statement("fact_payment").as_string()
    ... # doctest: +NORMALIZE_WHITESPACE
    'SELECT count(*) FROM "load_keys" AS "staged" JOIN "fact_payment" AS "present" ON
     "staged"."payment_id" = "present"."payment_id" AND "staged"."last_updated_date" =
     "present"."last_updated_date" AND "staged"."last_updated_time" =
     "present"."last_updated_time"'
    """
    return sql.SQL(
        "SELECT count(*) FROM {keys} AS {staged} JOIN {target} AS {present} ON {same}"
    ).format(
        keys=sql.Identifier(KEYS_TABLE),
        staged=sql.Identifier("staged"),
        target=sql.Identifier(target),
        present=sql.Identifier("present"),
        same=_same_version(target),
    )


def count_present_versions(conn: psycopg.Connection[Any], target: str) -> int:
    """How many staged version keys the warehouse already holds.

    One set-based join over the narrow keys, before any whole row is copied: a file
    that repeats versions already loaded costs little more than copying its keys.

    Examples
    --------
    The warehouse holds the first of the three versions:

    >>> copy_rows(conn, "fact_payment", payments[:1])
    1
    >>> keys = payments.select(["payment_id", "last_updated_date", "last_updated_time"])
    >>> stage_rows(conn, "fact_payment", keys, keys_only=True)
    3
    >>> count_present_versions(conn, "fact_payment")
    1
    """
    row = conn.execute(count_present_versions_statement(target)).fetchone()
    return int(row[0]) if row else 0


def new_positions_statement(target: str) -> sql.Composed:
    """Positions in the file of the staged version keys the fact table lacks, in order.

    Examples
    --------
    >>> new_positions_statement("fact_payment").as_string()[:80]
    'SELECT "staged"."file_row" FROM "load_keys" AS "staged" WHERE NOT EXISTS (SELECT'
    """
    return sql.SQL(
        "SELECT {staged}.{file_row} FROM {keys} AS {staged} WHERE NOT EXISTS "
        "(SELECT FROM {target} AS {present} WHERE {same}) ORDER BY {staged}.{file_row}"
    ).format(
        staged=sql.Identifier("staged"),
        file_row=sql.Identifier(FILE_ROW),
        keys=sql.Identifier(KEYS_TABLE),
        target=sql.Identifier(target),
        present=sql.Identifier("present"),
        same=_same_version(target),
    )


def new_positions(conn: psycopg.Connection[Any], target: str) -> list[int]:
    """Positions in the file of the staged versions the warehouse lacks, in file order.

    Examples
    --------
    The warehouse holds the first of the three versions:

    >>> copy_rows(conn, "fact_payment", payments[:1])
    1
    >>> keys = payments.select(["payment_id", "last_updated_date", "last_updated_time"])
    >>> stage_rows(conn, "fact_payment", keys, keys_only=True)
    3
    >>> new_positions(conn, "fact_payment")
    [1, 2]
    """
    return [int(row[0]) for row in conn.execute(new_positions_statement(target))]


def extend_dim_date_statement() -> sql.Composed:
    """Add to dim_date the dates of an array parameter that it lacks, in date order.

    Loads of several facts at once then take the same locks in the same order.

    Examples
    --------
    >>> "EXTRACT(ISODOW FROM" in extend_dim_date_statement().as_string()
    True
    """
    return sql.SQL(
        "INSERT INTO {dim_date} ({columns}) "
        "SELECT {day}, {attributes} FROM unnest(%s::date[]) AS referenced ({day}) "
        "ORDER BY {day} ON CONFLICT ({date_id}) DO NOTHING"
    ).format(
        dim_date=sql.Identifier(DATE_DIMENSION),
        columns=identifiers(_columns(DATE_DIMENSION)),
        day=_DAY,
        attributes=sql.SQL(", ").join(_date_attributes(_DAY)),
        date_id=sql.Identifier(WAREHOUSE[DATE_DIMENSION].key),
    )


def extend_dim_date(conn: psycopg.Connection[Any], dates: list[date]) -> int:
    """Add the dates dim_date lacks; return how many were added.

    Examples
    --------
    dim_date holds 2024-11-14 already:

    >>> extend_dim_date(conn, [date(2024, 11, 14), date(2024, 11, 15)])
    1
    >>> conn.execute("SELECT * FROM dim_date WHERE date_id = '2024-11-15'").fetchone()
    (datetime.date(2024, 11, 15), 2024, 11, 15, 5, 'Friday', 'November', 4)
    """
    return conn.execute(extend_dim_date_statement(), (dates,)).rowcount


def missing_references_statement(target: str) -> sql.Composed:
    """Find the staged fact rows whose dimension row is missing, with the reason why.

    Returns ``(file_row, reason, cause)``; the reason names each missing reference,
    e.g. ``design_id 9 not in dim_design``, the cause the same without the value. Every
    join is on a dimension's primary key.

    Examples
    --------
    >>> text = missing_references_statement("fact_payment").as_string()
    >>> first = text.index("LEFT JOIN")
    >>> text[first : text.index(" LEFT JOIN", first)]  # doctest: +NORMALIZE_WHITESPACE
    'LEFT JOIN "dim_date" AS "ref_created_date" ON "ref_created_date"."date_id" =
     "candidate"."created_date"'
    """
    joins: list[sql.Composable] = []
    reasons: list[sql.Composable] = []
    causes: list[sql.Composable] = []
    missing: list[sql.Composable] = []
    for (dimension, key), columns in fact_references(target).items():
        for column in columns:
            alias = f"ref_{column}"
            joins.append(
                sql.SQL("LEFT JOIN {dimension} AS {alias} ON {found} = {value}").format(
                    dimension=sql.Identifier(dimension),
                    alias=sql.Identifier(alias),
                    found=sql.Identifier(alias, key),
                    value=sql.Identifier("candidate", column),
                )
            )
            absent = sql.SQL("{} IS NULL").format(sql.Identifier(alias, key))
            missing.append(absent)
            reasons.append(
                sql.SQL("CASE WHEN {absent} THEN {column} || {value}::text || {suffix} END").format(
                    absent=absent,
                    column=sql.Literal(f"{column} "),
                    value=sql.Identifier("candidate", column),
                    suffix=sql.Literal(f" not in {dimension}"),
                )
            )
            causes.append(
                sql.SQL("CASE WHEN {absent} THEN {cause} END").format(
                    absent=absent, cause=sql.Literal(f"{column} not in {dimension}")
                )
            )
    return sql.SQL(
        "SELECT candidate.{file_row}, concat_ws({separator}, {reasons}), "
        "concat_ws({separator}, {causes}) "
        "FROM {stage} AS candidate {joins} WHERE {missing} ORDER BY candidate.{file_row}"
    ).format(
        file_row=sql.Identifier(FILE_ROW),
        separator=sql.Literal("; "),
        reasons=sql.SQL(", ").join(reasons),
        causes=sql.SQL(", ").join(causes),
        stage=sql.Identifier(STAGE_TABLE),
        joins=sql.SQL(" ").join(joins),
        missing=sql.SQL(" OR ").join(missing),
    )


def quarantine_missing_references(conn: psycopg.Connection[Any], target: str) -> list[RejectedRow]:
    """Take out of the stage the fact rows whose dimension row is missing.

    Run when :func:`lock_references` found a reference missing: one anti-join over the
    stage names each missing reference of each row.

    Returns
    -------
    list of RejectedRow
        Each removed row's position in the file, the reason and its cause, in file order.

    Examples
    --------
    The second version of payment 1 names a currency the warehouse lacks:

    >>> currency = pa.field("currency_id", pa.int32(), nullable=False)
    >>> rows = payments.set_column(8, currency, pa.array([1, 9, 1], pa.int32()))
    >>> stage_rows(conn, "fact_payment", rows)
    3
    >>> quarantine_missing_references(conn, "fact_payment")  # doctest: +NORMALIZE_WHITESPACE
    [RejectedRow(position=1, reason='currency_id 9 not in dim_currency',
                 cause='currency_id not in dim_currency')]
    >>> conn.execute("SELECT file_row FROM load_stage ORDER BY file_row").fetchall()
    [(0,), (2,)]
    """
    rejected = [
        RejectedRow(int(position), str(reason), str(cause))
        for position, reason, cause in conn.execute(missing_references_statement(target))
    ]
    if rejected:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                sql.Identifier(STAGE_TABLE), sql.Identifier(FILE_ROW)
            ),
            ([row.position for row in rejected],),
        )
    return rejected


def _sql_type(dimension: str, key: str) -> sql.SQL:
    return sql.SQL("date" if STAR_SCHEMAS[dimension].field(key).type == pa.date32() else "integer")


def lock_references_statement(target: str) -> sql.Composed:
    """Lock the dimension rows whose keys come as array parameters, and count them.

    Takes one array parameter per dimension the fact references (in
    :func:`~totes.load.gold_files.fact_references` order) and returns one count per
    dimension: the rows locked ``FOR KEY SHARE``, which is what the foreign-key
    triggers lock one row at a time.

    Examples
    --------
    >>> text = lock_references_statement("fact_payment").as_string()
    >>> text[: text.index(" AS locked")]  # doctest: +NORMALIZE_WHITESPACE
    'SELECT (SELECT count(*) FROM (SELECT 1 FROM "dim_date" WHERE "date_id" IN (SELECT
     unnest(%s::date[])) FOR KEY SHARE)'
    """
    counts = [
        sql.SQL(
            "(SELECT count(*) FROM (SELECT 1 FROM {dimension} WHERE {key} IN "
            "(SELECT unnest(%s::{kind}[])) FOR KEY SHARE) AS locked)"
        ).format(
            dimension=sql.Identifier(dimension),
            key=sql.Identifier(key),
            kind=_sql_type(dimension, key),
        )
        for dimension, key in fact_references(target)
    ]
    return sql.SQL("SELECT {}").format(sql.SQL(", ").join(counts))


def lock_references(
    conn: psycopg.Connection[Any], target: str, references: dict[tuple[str, str], list[Any]]
) -> list[str]:
    """Lock every dimension row the staged facts reference, as the foreign-key triggers do.

    Parameters
    ----------
    references
        The distinct keys the staged rows reference, per dimension
        (:func:`~totes.load.gold_files.referenced_values`).

    Returns
    -------
    list of str
        The dimensions that lack a row the stage references; empty when every
        referenced row exists and is now locked until the transaction ends.

    Examples
    --------
    >>> from totes.load.gold_files import referenced_values
    >>> lock_references(conn, "fact_payment", referenced_values(payments, "fact_payment"))
    []
    >>> rows = payments.set_column(8, "currency_id", pa.array([1, 9, 1], pa.int32()))
    >>> lock_references(conn, "fact_payment", referenced_values(rows, "fact_payment"))
    ['dim_currency']
    """
    dimensions = list(fact_references(target))
    row = conn.execute(
        lock_references_statement(target), [references[dimension] for dimension in dimensions]
    ).fetchone()
    locked = list(row) if row else [0] * len(dimensions)
    return [
        dimension
        for (dimension, key), count in zip(dimensions, locked, strict=True)
        if count != len(references[(dimension, key)])
    ]


def may_skip_fk_triggers(conn: psycopg.Connection[Any]) -> bool:
    """Tell whether the session may turn off trigger firing (``session_replication_role``).

    Superusers may, and so may roles granted ``SET ON PARAMETER session_replication_role``
    (PostgreSQL 15+). Call it outside a transaction (on an autocommit connection).

    Examples
    --------
    The examples' connections log in as a superuser:

    >>> may_skip_fk_triggers(conn)
    True
    """
    try:
        conn.execute("SET session_replication_role = origin")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def insert_facts_statement(target: str) -> sql.Composed:
    """Insert the staged fact rows, each version once.

    The staged rows are versions the warehouse lacks (:func:`new_positions`), and the
    table's lock keeps other loaders out, so a plain insert suffices: about a quarter
    faster than ``ON CONFLICT DO NOTHING``, whose speculative insertion costs every
    row. A version a file holds twice (an overlap re-read) goes in once; a version
    present after all fails the file with a unique violation rather than pass silently.

    Examples
    --------
    >>> insert_facts_statement("fact_payment").as_string().split(" FROM ")[-1]
    ... # doctest: +NORMALIZE_WHITESPACE
    '"load_stage" ORDER BY "payment_id", "last_updated_date", "last_updated_time"'
    """
    columns = identifiers(_columns(target))
    version = identifiers(list(WAREHOUSE[target].version_key))
    return sql.SQL(
        "INSERT INTO {target} ({columns}) SELECT DISTINCT ON ({version}) {columns} "
        "FROM {stage} ORDER BY {version}"
    ).format(
        target=sql.Identifier(target),
        columns=columns,
        version=version,
        stage=sql.Identifier(STAGE_TABLE),
    )


def insert_facts(conn: psycopg.Connection[Any], target: str, *, fk_triggers: bool = True) -> int:
    """Insert the staged fact rows that are new versions; return how many went in.

    Parameters
    ----------
    fk_triggers
        False to insert without firing the foreign-key triggers, which check one row at
        a time and make a large insert about nine times slower. Only for a caller that,
        in the same transaction, extended dim_date, quarantined the rows with a missing
        reference and locked the references (:func:`lock_references`), on a session
        allowed to (:func:`may_skip_fk_triggers`).

    Examples
    --------
    >>> stage_rows(conn, "fact_payment", payments)
    3
    >>> insert_facts(conn, "fact_payment")
    3
    >>> conn.execute("SELECT payment_id, paid FROM fact_payment ORDER BY 1, 2").fetchall()
    [(1, False), (1, True), (2, False)]
    """
    if fk_triggers:
        return conn.execute(insert_facts_statement(target)).rowcount
    conn.execute("SET LOCAL session_replication_role = replica")
    inserted = conn.execute(insert_facts_statement(target)).rowcount
    conn.execute("SET LOCAL session_replication_role = origin")
    return inserted


def raise_newest_version(conn: psycopg.Connection[Any], target: str, rows: pa.Table) -> None:
    """Raise a fact table's newest version to the newest of ``rows``, which went in.

    Call it in the transaction that inserts the rows: the freshness lag then never
    counts a row that is not committed, nor misses one that is.

    Examples
    --------
    >>> raise_newest_version(conn, "fact_payment", payments)
    >>> newest_version(conn, "fact_payment")
    datetime.datetime(2024, 11, 14, 10, 0)
    >>> raise_newest_version(conn, "fact_payment", payments[:2])
    >>> newest_version(conn, "fact_payment")
    datetime.datetime(2024, 11, 14, 10, 0)
    """
    if not rows.num_rows:
        return
    dates = rows.column("last_updated_date")
    newest_date = pc.max(dates)
    newest_time = pc.max(rows.column("last_updated_time").filter(pc.equal(dates, newest_date)))
    conn.execute(
        sql.SQL(
            "INSERT INTO {table} AS kept (fact_table, last_updated) VALUES (%s, %s) "
            "ON CONFLICT (fact_table) DO UPDATE "
            "SET last_updated = greatest(kept.last_updated, EXCLUDED.last_updated)"
        ).format(table=sql.Identifier(NEWEST_VERSIONS_TABLE)),
        (target, datetime.combine(newest_date.as_py(), newest_time.as_py())),
    )


def newest_version(conn: psycopg.Connection[Any], target: str) -> datetime | None:
    """The newest ``last_updated`` (date and time) of a fact table, as ``newest_versions``
    records it (None until a load, or ``init`` on a warehouse holding facts, records one).

    Examples
    --------
    >>> newest_version(conn, "fact_payment") is None
    True
    >>> raise_newest_version(conn, "fact_payment", payments)
    >>> newest_version(conn, "fact_payment")
    datetime.datetime(2024, 11, 14, 10, 0)
    """
    if target not in FACT_TABLES:
        raise ValueError(f"{target!r} is not a fact table")
    row = conn.execute(
        sql.SQL("SELECT last_updated FROM {} WHERE fact_table = %s").format(
            sql.Identifier(NEWEST_VERSIONS_TABLE)
        ),
        (target,),
    ).fetchone()
    return row[0] if row else None
