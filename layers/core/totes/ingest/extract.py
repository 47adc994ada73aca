"""Plan and stream one extraction batch of a source table.

The cursor is the pair ``(last_updated, primary key)``: rows are read in that
order, strictly after the watermark, at most ``max_rows`` new rows per batch, so
no row is read twice across batches even when thousands share a timestamp.

Late commits: a transaction may commit after an extraction with a
``last_updated`` older than the watermark. The watermark keeps a fingerprint
(count and checksum of ``(key, last_updated)``) of the rows inside a look-back
window behind its cursor. Each batch recomputes it; if it changed, the whole
window is read again along with the new rows. An idle table therefore writes
nothing, and a late row is picked up as long as it commits within the window.

Everything a batch reads comes from one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from totes.errors import (
    NullLastUpdatedError,
    SourceTableMissingError,
    TimestampOutOfRangeError,
)
from totes.ingest.columns import SourceColumn
from totes.ingest.watermarks import Watermark
from totes.tables import SOURCE

#: Larger than any serial key: ``(ts, _AFTER_EVERY_KEY)`` sorts after every row stamped ts.
_AFTER_EVERY_KEY = 2**31
#: The timestamps the pipeline can carry: years 1 to 9999, as Python, Arrow's CSV reader and
#: the warehouse's dates all read them (PostgreSQL also stores infinity and years BC).
_CARRIED_TIMESTAMPS = ("0001-01-01", "9999-12-31 23:59:59.999999")


@dataclass(frozen=True)
class BatchPlan:
    """What one batch will extract, decided inside the batch's snapshot."""

    table: str
    columns: list[SourceColumn]
    #: Rows strictly after this cursor are read (None: from the beginning).
    read_after: tuple[datetime, int] | None
    #: Rows up to and including this cursor are read (None: nothing to read).
    read_through: tuple[datetime, int] | None
    rows: int
    has_more: bool
    #: True when a late commit changed the look-back window and it is read again.
    rereads_window: bool
    new_watermark: Watermark | None
    #: Rows beyond this batch when it was planned: what the next batches will read.
    remaining: int = 0


def source_columns(conn: psycopg.Connection[Any], table: str) -> list[SourceColumn]:
    """The columns of a source table, in order.

    Raises
    ------
    SourceTableMissingError
        The table does not exist in the source.
    """
    rows = conn.execute(
        "SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN 'enum' "
        "ELSE data_type END, numeric_precision, numeric_scale "
        "FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        raise SourceTableMissingError(f"source database has no table {table}")
    return [SourceColumn(*row) for row in rows]


def _table_and_key(table: str) -> dict[str, sql.Composable]:
    return {"table": sql.Identifier(table), "key": sql.Identifier(SOURCE[table].key)}


def _row_hash(table: str) -> sql.Composable:
    """A 64-bit hash of a row's cursor position, summed into the window fingerprint."""
    return sql.SQL("hashtextextended({key}::text || '@' || last_updated::text, 0)").format(
        key=sql.Identifier(SOURCE[table].key)
    )


def _out_of_range(columns: list[SourceColumn]) -> sql.Composable:
    """A condition true for a row any of whose timestamps the pipeline cannot carry."""
    stamps = [
        column.name
        for column in columns
        if column.data_type.startswith("timestamp") or column.data_type == "date"
    ]
    if not stamps:
        return sql.SQL("false")
    return sql.SQL(" OR ").join(
        sql.SQL("{} NOT BETWEEN {} AND {}").format(
            sql.Identifier(name), *(sql.Literal(bound) for bound in _CARRIED_TIMESTAMPS)
        )
        for name in stamps
    )


def _window_fingerprint(
    conn: psycopg.Connection[Any], table: str, cursor: tuple[datetime, int], lookback: timedelta
) -> tuple[int, int]:
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum({row_hash}), 0) FROM {table} "
            "WHERE last_updated > %s AND (last_updated, {key}) <= (%s, %s)"
        ).format(row_hash=_row_hash(table), **_table_and_key(table)),
        (cursor[0] - lookback, cursor[0], cursor[1]),
    ).fetchone()
    if row is None:
        raise RuntimeError("window fingerprint query gave no row")
    return int(row[0]), int(row[1])


def _newest_key_and_window(
    conn: psycopg.Connection[Any], table: str, newest: datetime, lookback: timedelta
) -> tuple[int, tuple[int, int]]:
    """Find the key of the table's newest row and the window behind it, in one scan.

    The newest row is the largest key stamped ``newest``. Every row sorts at or before
    it, so its window is every row stamped after ``newest - lookback``. ``newest`` must
    come from the same REPEATABLE READ snapshot.
    """
    row = conn.execute(
        sql.SQL(
            "SELECT max({key}) FILTER (WHERE last_updated = %(newest)s), "
            "count(*) FILTER (WHERE last_updated > %(window_start)s), "
            "coalesce(sum({row_hash}) FILTER (WHERE last_updated > %(window_start)s), 0) "
            "FROM {table}"
        ).format(row_hash=_row_hash(table), **_table_and_key(table)),
        {"newest": newest, "window_start": newest - lookback},
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(
            f"no row of {table} is stamped {newest}: the batch must be planned inside one "
            "REPEATABLE READ transaction"
        )
    return int(row[0]), (int(row[1]), int(row[2]))


def plan_batch(
    conn: psycopg.Connection[Any],
    table: str,
    watermark: Watermark,
    *,
    max_rows: int,
    lookback: timedelta,
) -> BatchPlan:
    """Decide the rows of the next batch of ``table``.

    Must run inside the REPEATABLE READ transaction that later streams the rows: its
    statements must see one snapshot.

    Raises
    ------
    SourceTableMissingError
        The table does not exist.
    NullLastUpdatedError
        Rows without ``last_updated`` exist: no cursor can place them, so the batch
        stops rather than silently leaving them behind.
    TimestampOutOfRangeError
        Rows hold a timestamp outside years 1 to 9999 (``infinity``, a year BC): no
        later stage could read it, so the batch stops before it is written.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    columns = source_columns(conn, table)
    ids = _table_and_key(table)
    cursor = watermark.cursor
    # One scan answers the questions of an idle run: rows without a timestamp or with one
    # out of range, the look-back fingerprint, and whether anything lies beyond the cursor.
    window_start = cursor[0] - lookback if cursor else datetime.min
    state = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE last_updated IS NULL), "
            "count(*) FILTER (WHERE {out_of_range}), "
            "count(*) FILTER (WHERE {in_window}), "
            "coalesce(sum({row_hash}) FILTER (WHERE {in_window}), 0), "
            "count(*) FILTER (WHERE (last_updated, {key}) > (%(ts)s, %(key)s)), "
            # Within the carried years: a value beyond them cannot even be read back.
            "max(last_updated) FILTER (WHERE last_updated BETWEEN %(first)s AND %(last)s) "
            "FROM {table}"
        ).format(
            in_window=sql.SQL(
                "last_updated > %(window_start)s AND (last_updated, {key}) <= (%(ts)s, %(key)s)"
            ).format(**ids),
            row_hash=_row_hash(table),
            out_of_range=_out_of_range(columns),
            **ids,
        ),
        {
            "window_start": window_start,
            "ts": cursor[0] if cursor else datetime.min,
            "key": cursor[1] if cursor else -1,
            "first": _CARRIED_TIMESTAMPS[0],
            "last": _CARRIED_TIMESTAMPS[1],
        },
    ).fetchone()
    if state is None:
        raise RuntimeError("table state query gave no row")
    unplaceable, out_of_range, window_rows, window_checksum, newer = (
        int(value) for value in state[:5]
    )
    newest: datetime | None = state[5]
    if unplaceable:
        raise NullLastUpdatedError(
            f"{unplaceable} rows of {table} have no last_updated; fix them in the source "
            "(the watermark stays where it is)"
        )
    if out_of_range:
        raise TimestampOutOfRangeError(
            f"{out_of_range} rows of {table} have a timestamp outside years 1 to 9999 "
            "(infinity or a year BC); fix them in the source (the watermark stays where it is)"
        )

    rereads_window = (
        cursor is not None
        and lookback > timedelta(0)
        and (window_rows, window_checksum) != (watermark.window_rows, watermark.window_checksum)
    )
    read_after = (cursor[0] - lookback, _AFTER_EVERY_KEY) if rereads_window and cursor else cursor
    if not newer and not rereads_window:
        return BatchPlan(table, columns, read_after, None, 0, False, False, None)

    read_through: tuple[datetime, int] | None
    if newer and newer <= max_rows and newest is not None:
        # The batch takes every row beyond the cursor, so the table's newest row ends it:
        # one scan finds its key and the window behind it, where ordering the rows to
        # count off a batch would sort them all.
        newest_key, next_window = _newest_key_and_window(conn, table, newest, lookback)
        read_through, new_rows = (newest, newest_key), newer
        if not lookback:  # no window is kept (and none compared)
            next_window = (0, 0)
    elif newer:
        last_new = conn.execute(
            sql.SQL(
                "SELECT last_updated, {key}, count(*) OVER () FROM ("
                "SELECT last_updated, {key} FROM {table} WHERE (last_updated, {key}) > (%s, %s) "
                "ORDER BY last_updated, {key} LIMIT %s) AS batch "
                "ORDER BY last_updated DESC, {key} DESC LIMIT 1"
            ).format(**ids),
            (*(cursor or (datetime.min, -1)), max_rows),
        ).fetchone()
        if last_new is None:
            raise RuntimeError("batch query gave no row")
        read_through, new_rows = (last_new[0], last_new[1]), int(last_new[2])
        next_window = (
            _window_fingerprint(conn, table, read_through, lookback) if lookback else (0, 0)
        )
    else:  # nothing new: the window is read again, and the cursor and its window stay
        read_through, new_rows, next_window = cursor, 0, (window_rows, window_checksum)

    rows = new_rows + (window_rows if rereads_window else 0)
    new_watermark = (
        watermark.advanced_to(read_through[0], read_through[1], *next_window)
        if read_through is not None
        else None
    )
    return BatchPlan(
        table=table,
        columns=columns,
        read_after=read_after,
        read_through=read_through if rows else None,
        rows=rows,
        has_more=newer > new_rows,
        rereads_window=rereads_window,
        new_watermark=new_watermark,
        remaining=max(0, newer - new_rows),
    )


def stream_csv(conn: psycopg.Connection[Any], plan: BatchPlan) -> Iterator[bytes]:
    """Yield the batch as CSV: first the header line, then one bytes object per row.

    RFC 4180 with a header; every non-NULL value is quoted and NULL is an empty
    unquoted field, so NULL and the empty string stay distinct.
    """
    if plan.read_through is None:
        return
    ids = _table_and_key(plan.table)
    after = plan.read_after or (datetime.min, -1)
    query = sql.SQL(
        "SELECT * FROM {table} WHERE (last_updated, {key}) > ({after_ts}, {after_key}) "
        "AND (last_updated, {key}) <= ({through_ts}, {through_key}) "
        "ORDER BY last_updated, {key}"
    ).format(
        **ids,
        after_ts=sql.Literal(after[0]),
        after_key=sql.Literal(after[1]),
        through_ts=sql.Literal(plan.read_through[0]),
        through_key=sql.Literal(plan.read_through[1]),
    )
    copy_statement = sql.SQL(
        "COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true, FORCE_QUOTE *, ENCODING 'UTF8')"
    ).format(query)
    with conn.cursor() as cursor, cursor.copy(copy_statement) as copy:
        # PostgreSQL sends one COPY message per row (the header is the first).
        for message in copy:
            yield bytes(message)
