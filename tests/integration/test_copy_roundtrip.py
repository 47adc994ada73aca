"""Whatever the rows hold, the COPY paths hand PostgreSQL exactly those values: text as
the source holds it, and a fact's fixed-width values in binary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, time
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from totes.db import connect, copy_field, copy_lines, with_database
from totes.load.gold_files import has_binary_form, rows_as_binary
from totes_local.runtime.postgres import PostgresServer

# PostgreSQL text cannot hold NUL; everything else must survive.
texts = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\x00")))
money = st.decimals(min_value=-99_999_999, max_value=99_999_999, places=2)


@pytest.fixture(scope="module")
def scratch(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> Iterator[psycopg.Connection[Any]]:
    with connect(with_database(pg_server.admin_dsn, database_factory("copy"))) as conn:
        conn.execute("CREATE TABLE scratch (id integer, label text, amount numeric(10, 2))")
        conn.commit()
        yield conn


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(texts, money), max_size=20))
def test_text_and_money_round_trip_through_copy(
    scratch: psycopg.Connection[Any], rows: list[tuple[str | None, Decimal]]
) -> None:
    scratch.execute("TRUNCATE scratch")
    lines = (
        "\t".join(map(copy_field, (index, label, amount))) + "\n"
        for index, (label, amount) in enumerate(rows)
    )
    copied = copy_lines(scratch, "scratch", ["id", "label", "amount"], lines)
    back = scratch.execute("SELECT label, amount FROM scratch ORDER BY id").fetchall()
    scratch.rollback()
    assert copied == len(rows)
    assert back == rows


#: Decimal types as facts could hold them: PostgreSQL numeric(precision, scale).
DECIMALS = [(10, 2), (18, 0), (18, 18), (5, 4), (12, 6)]
FIXED_WIDTH = pa.schema(
    [
        pa.field("id", pa.int32(), nullable=False),
        pa.field("big", pa.int64(), nullable=False),
        pa.field("paid", pa.bool_(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("moment", pa.time32("ms"), nullable=False),
        *(pa.field(f"amount_{p}_{s}", pa.decimal128(p, s), nullable=False) for p, s in DECIMALS),
    ]
)


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    largest = Decimal(10 ** (precision - scale)) - Decimal(1).scaleb(-scale)
    return st.decimals(min_value=-largest, max_value=largest, places=scale, allow_nan=False)


fixed_width_rows = st.lists(
    st.tuples(
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.booleans(),
        st.dates(),
        st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
        *(_decimals(p, s) for p, s in DECIMALS),
    ),
    max_size=30,
)


@pytest.fixture(scope="module")
def fixed_width_scratch(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> Iterator[psycopg.Connection[Any]]:
    with connect(with_database(pg_server.admin_dsn, database_factory("binary"))) as conn:
        amounts = ", ".join(f"amount_{p}_{s} numeric({p}, {s})" for p, s in DECIMALS)
        conn.execute(
            "CREATE TABLE scratch (id integer, big bigint, paid boolean, day date, "
            f"moment time, {amounts})"
        )
        conn.commit()
        yield conn


def _extremes(sign: int) -> tuple[Any, ...]:
    """A row of the largest (``sign`` 1) or the smallest (``sign`` -1) value of every type."""
    return (
        sign * (2**31 - 1) - (sign < 0),
        sign * (2**63 - 1) - (sign < 0),
        sign > 0,
        date.max if sign > 0 else date.min,
        time(23, 59, 59, 999_000) if sign > 0 else time(0, 0),
        *(sign * (Decimal(10 ** (p - s)) - Decimal(1).scaleb(-s)) for p, s in DECIMALS),
    )


@settings(max_examples=60, deadline=None)
@given(rows=fixed_width_rows)
@example(rows=[_extremes(1), _extremes(-1)])
@example(
    rows=[
        (0, 0, False, date(2000, 1, 1), time(0, 0), *(Decimal(0).scaleb(-s) for _, s in DECIMALS))
    ]
)
@example(
    rows=[
        (
            1,
            1,
            True,
            date(1999, 12, 31),
            time(0, 0, 0, 1000),
            *(
                Decimal(1).scaleb(-s) * sign
                for (p, s), sign in zip(DECIMALS, (1, -1, 1, -1, 1), strict=True)
            ),
        )
    ]
)
def test_fixed_width_values_go_to_postgresql_in_binary_exactly(
    fixed_width_scratch: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
) -> None:
    # Given rows of every type a fact's binary COPY carries, edge values included
    table = pa.Table.from_pylist(
        [dict(zip(FIXED_WIDTH.names, row, strict=True)) for row in rows], schema=FIXED_WIDTH
    )
    assert has_binary_form(table.schema)
    conn = fixed_width_scratch
    conn.rollback()  # whatever an earlier example left
    conn.execute("TRUNCATE scratch")
    # When they are copied in binary
    with conn.cursor() as cursor:
        with cursor.copy("COPY scratch FROM STDIN (FORMAT binary)") as copy:
            for chunk in rows_as_binary(table):
                copy.write(chunk)
        copied = cursor.rowcount
    back = conn.execute("SELECT * FROM scratch").fetchall()
    conn.rollback()
    # Then PostgreSQL holds exactly the values, in order, each decimal at its own scale
    assert copied == len(rows)
    assert back == rows
    assert [str(value) for row in back for value in row[5:]] == [
        str(value) for row in rows for value in row[5:]
    ]


def test_decimals_over_several_copy_chunks_go_in_binary_exactly(
    fixed_width_scratch: psycopg.Connection[Any],
) -> None:
    # Given more rows than one chunk of binary COPY holds, each with its own amount
    count = 70_000
    amounts = [Decimal(n * 7919 % 10**10 - 5 * 10**9).scaleb(-2) for n in range(count)]
    table = pa.table(
        {
            "id": pa.array(range(count), pa.int32()),
            "amount_10_2": pa.array(amounts, pa.decimal128(10, 2)),
        },
        schema=pa.schema(
            [
                pa.field("id", pa.int32(), nullable=False),
                pa.field("amount_10_2", pa.decimal128(10, 2), nullable=False),
            ]
        ),
    )
    conn = fixed_width_scratch
    conn.rollback()
    conn.execute("TRUNCATE scratch")
    # When they are copied in binary
    with (
        conn.cursor() as cursor,
        cursor.copy("COPY scratch (id, amount_10_2) FROM STDIN (FORMAT binary)") as copy,
    ):
        for chunk in rows_as_binary(table):
            copy.write(chunk)
    back = conn.execute("SELECT amount_10_2 FROM scratch ORDER BY id").fetchall()
    conn.rollback()
    # Then every row holds its own amount, across the chunks' boundaries
    assert [row[0] for row in back] == amounts
