"""A batch's plan against a model of it: which rows it reads, where it ends, what it remembers.

The plan takes the shortcut of one scan when every row beyond the cursor fits in the
batch, and orders the rows only when they do not; both must give what the model
gives, for rows sharing timestamps, late commits behind the cursor and any look-back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totes.db import connect, with_database
from totes.ingest.extract import plan_batch
from totes.ingest.watermarks import Watermark
from totes.source.schema import create_source_tables
from totes_local.runtime.postgres import PostgresServer

_DAY = datetime(2024, 11, 14, 9, 0)
#: Few distinct stamps, so that many rows share one and the key breaks the tie.
stamps = st.integers(min_value=0, max_value=12).map(
    lambda minutes: _DAY + timedelta(minutes=minutes)
)
Row = tuple[datetime, int]


@pytest.fixture(scope="module")
def source(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> Iterator[psycopg.Connection[Any]]:
    with connect(with_database(pg_server.admin_dsn, database_factory("batch_plan"))) as conn:
        create_source_tables(conn)
        conn.commit()
        yield conn


def _window(
    rows: list[Row], hashes: dict[int, int], end: Row, lookback: timedelta
) -> tuple[int, int]:
    inside = [key for stamp, key in rows if stamp > end[0] - lookback and (stamp, key) <= end]
    return len(inside), sum(hashes[key] for key in inside)


@settings(max_examples=80)
@given(
    rows=st.lists(stamps, min_size=0, max_size=30).map(
        lambda drawn: [(stamp, key) for key, stamp in enumerate(drawn, start=1)]
    ),
    cursor_at=st.none() | st.integers(min_value=0, max_value=29),
    lookback_minutes=st.sampled_from([0, 1, 5, 60]),
    max_rows=st.integers(min_value=1, max_value=35),
    late_commit=st.booleans(),
)
def test_a_batch_reads_the_rows_after_its_cursor_in_order_and_remembers_the_window_behind_its_end(
    source: psycopg.Connection[Any],
    rows: list[Row],
    cursor_at: int | None,
    lookback_minutes: int,
    max_rows: int,
    late_commit: bool,
) -> None:
    # Given a source table of rows stamped with few distinct timestamps
    source.execute("TRUNCATE currency")
    with source.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO currency (currency_id, currency_code, created_at, last_updated) "
            "VALUES (%s, 'GBP', %s, %s)",
            [(key, stamp, stamp) for stamp, key in rows],
        )
    hashes = {
        int(key): int(value)
        for key, value in source.execute(
            "SELECT currency_id, hashtextextended(currency_id::text || '@' || "
            "last_updated::text, 0) FROM currency"
        ).fetchall()
    }
    ordered = sorted(rows)
    lookback = timedelta(minutes=lookback_minutes)
    # And a watermark at one of them (or none), whose window a late commit may have changed
    at = ordered[cursor_at] if cursor_at is not None and cursor_at < len(ordered) else None
    seen = _window(ordered, hashes, at, lookback) if at else (0, 0)
    watermark = (
        Watermark(at[0], at[1], seen[0], seen[1] + (1 if late_commit else 0), version=3)
        if at
        else Watermark()
    )

    # When a batch of at most max_rows is planned
    source.commit()
    source.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with source.transaction():
        plan = plan_batch(source, "currency", watermark, max_rows=max_rows, lookback=lookback)
    source.isolation_level = None

    # Then it reads the first max_rows rows after the cursor, the window again after a late
    # commit, and its watermark ends at its last row with that row's window
    beyond = [row for row in ordered if at is None or row > at]
    taken = beyond[:max_rows]
    rereads = at is not None and lookback_minutes > 0 and late_commit
    assert plan.rereads_window == rereads
    assert plan.rows == len(taken) + (seen[0] if rereads else 0)
    assert plan.has_more == (len(beyond) > max_rows)
    assert plan.remaining == len(beyond) - len(taken)
    if not taken and not rereads:
        assert plan.new_watermark is None
        assert plan.read_through is None
        return
    end = taken[-1] if taken else at
    assert end is not None
    window = _window(ordered, hashes, end, lookback) if lookback else (0, 0)
    assert plan.new_watermark == Watermark(end[0], end[1], *window, version=4 if at else 1)
    if plan.rows:
        assert plan.read_through == end
        assert plan.read_after == ((at[0] - lookback, 2**31) if rereads and at else at)
