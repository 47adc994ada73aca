"""Gold files as load reads them: keys, schema checks, and the exact bytes sent to COPY."""

from __future__ import annotations

import struct
from datetime import date, time, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.errors import GoldFileSchemaError
from totes.load.gold_files import (
    _binary_field,
    binary_chunks,
    conform,
    csv_chunks,
    has_binary_form,
    listed_through,
    referenced_values,
)
from totes.warehouse.star import STAR_SCHEMAS
from totes.zones.gold import GoldFileKey, gold_key


def test_conform_orders_and_casts_columns_to_the_star_schema() -> None:
    table = pa.table(
        {
            "currency_name": ["British Pound"],
            "currency_code": ["GBP"],
            "currency_id": pa.array([1], pa.int64()),
        }
    )
    conformed = conform(table, "dim_currency", where="example")
    assert conformed.schema == STAR_SCHEMAS["dim_currency"]
    assert conformed.to_pylist() == [
        {"currency_id": 1, "currency_code": "GBP", "currency_name": "British Pound"}
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"currency_id": [1], "currency_code": ["GBP"]}), "missing columns"),
        (
            pa.table(
                {"currency_id": [1], "currency_code": ["G"], "currency_name": ["x"], "extra": [1]}
            ),
            r"unexpected columns \['extra'\]",
        ),
        (
            pa.table(
                {"currency_id": [None, 2], "currency_code": ["G", "U"], "currency_name": ["", ""]}
            ),
            "nulls in currency_id",
        ),
        (
            pa.table({"currency_id": [2**40], "currency_code": ["G"], "currency_name": ["x"]}),
            "types do not fit dim_currency",
        ),
        (
            pa.table({"currency_id": ["one"], "currency_code": ["G"], "currency_name": ["x"]}),
            "types do not fit dim_currency",
        ),
    ],
)
def test_a_table_that_does_not_fit_is_refused_by_name(table: pa.Table, message: str) -> None:
    with pytest.raises(GoldFileSchemaError, match=message):
        conform(table, "dim_currency", where="dim_currency/run=x/part-0.parquet")


def test_csv_keeps_null_apart_from_the_empty_string_and_quotes_every_string() -> None:
    table = pa.table(
        {
            "text": pa.array([None, "", 'Zoë "Tote", Ltd\nline', "\\N"], pa.string()),
            "money": pa.array([Decimal("0.10")] * 4, pa.decimal128(10, 2)),
            "when": pa.array([time(9, 26, 10, 123_000), time(0, 0), None, None], pa.time32("ms")),
            "paid": pa.array([True, False, None, True]),
        }
    )
    rendered = b"".join(bytes(chunk) for chunk in csv_chunks(table)).decode()
    assert rendered == (
        ",0.10,09:26:10.123,true,0\n"
        '"",0.10,00:00:00.000,false,1\n'
        '"Zoë ""Tote"", Ltd\nline",0.10,,,2\n'
        '"\\N",0.10,,true,3\n'
    )


def test_csv_rows_carry_the_positions_they_were_given() -> None:
    table = pa.table({"id": pa.array([5, 6], pa.int32())})
    chunks = csv_chunks(table, pa.array([40, 41], pa.int64()))
    assert b"".join(bytes(chunk) for chunk in chunks) == b"5,40\n6,41\n"


def _decode_binary(payload: bytes) -> list[tuple[int, date, time, int]]:
    """Read back binary COPY rows of (int4, date, time, int8), as PostgreSQL would."""
    assert payload.startswith(b"PGCOPY\n\xff\r\n\x00")
    assert payload.endswith(b"\xff\xff")
    body, rows = payload[19:-2], []
    while body:
        fields, _, key, _, days, _, micros, _, position = struct.unpack(">hiiiiiqiq", body[:42])
        assert fields == 4
        moment = timedelta(microseconds=micros)
        rows.append(
            (
                key,
                date(2000, 1, 1) + timedelta(days=days),
                time(
                    moment.seconds // 3600,
                    moment.seconds // 60 % 60,
                    moment.seconds % 60,
                    moment.microseconds,
                ),
                position,
            )
        )
        body = body[42:]
    return rows


versions = st.lists(
    st.tuples(
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
        st.integers(min_value=0, max_value=86_399_999).map(
            lambda ms: time(ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000 * 1000)
        ),
    ),
    max_size=200,
)


@given(rows=versions)
def test_binary_copy_of_version_keys_reads_back_exactly(
    rows: list[tuple[int, date, time]],
) -> None:
    table = pa.table(
        {
            "sales_order_id": pa.array([row[0] for row in rows], pa.int32()),
            "last_updated_date": pa.array([row[1] for row in rows], pa.date32()),
            "last_updated_time": pa.array([row[2] for row in rows], pa.time32("ms")),
        }
    )
    payload = b"".join(binary_chunks(table))
    assert _decode_binary(payload) == [(*row, n) for n, row in enumerate(rows)]


def test_binary_copy_spans_several_chunks_and_keeps_given_positions() -> None:
    count = 70_000
    table = pa.table(
        {
            "payment_id": pa.array(range(count), pa.int32()),
            "last_updated_date": pa.array([date(2024, 2, 29)] * count, pa.date32()),
            "last_updated_time": pa.array([time(23, 59, 59, 999_000)] * count, pa.time32("ms")),
        }
    )
    positions = pa.array(range(10, count + 10), pa.int64())
    rows = _decode_binary(b"".join(binary_chunks(table, positions)))
    assert rows[0] == (0, date(2024, 2, 29), time(23, 59, 59, 999_000), 10)
    assert rows[-1] == (count - 1, date(2024, 2, 29), time(23, 59, 59, 999_000), count + 9)


def test_binary_copy_takes_fixed_width_columns_without_nulls_only() -> None:
    with pytest.raises(TypeError, match="no fixed-width binary COPY form for string"):
        list(binary_chunks(pa.table({"name": ["Zoë"]})))
    with pytest.raises(ValueError, match="takes no nulls"):
        list(binary_chunks(pa.table({"id": pa.array([1, None], pa.int32())})))


def test_a_decimal_column_sliced_past_its_first_rows_renders_its_own_rows() -> None:
    # Given a decimal column and a slice of it (Arrow keeps the slice's offset, not a copy)
    amounts = [Decimal("-0.01"), Decimal("12345678.90"), Decimal("0.00"), Decimal("-99999999.99")]
    column = pa.array(amounts, pa.decimal128(10, 2))
    # When the slice is rendered for binary COPY
    sliced = _binary_field(column.slice(2))
    # Then it renders the last two values, as a column of those two alone does
    assert sliced == _binary_field(pa.array(amounts[2:], pa.decimal128(10, 2)))
    assert sliced != _binary_field(pa.array(amounts[:2], pa.decimal128(10, 2)))


def test_facts_without_text_go_to_the_warehouse_in_binary_and_every_other_table_as_csv() -> None:
    # Given the star schema, When each table's rows are checked for a binary COPY form
    binary = {table for table, schema in STAR_SCHEMAS.items() if has_binary_form(schema)}
    # Then the sales orders and payments have one (ints, dates, times, decimals, booleans),
    # and every table holding text or nullable columns goes as CSV
    assert binary == {"fact_sales_order", "fact_payment"}
    nullable = pa.schema([pa.field("id", pa.int32(), nullable=True)])
    wide = pa.schema([pa.field("amount", pa.decimal128(19, 2), nullable=False)])
    assert not has_binary_form(nullable)
    assert not has_binary_form(wide)


def test_the_keys_fact_rows_reference_are_collected_once_per_dimension() -> None:
    rows = pa.table(
        {
            "payment_id": pa.array([1, 2, 3], pa.int32()),
            "created_date": pa.array([date(2024, 1, 3)] * 3, pa.date32()),
            "last_updated_date": pa.array([date(2024, 1, 1)] * 3, pa.date32()),
            "payment_date": pa.array([date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 2)]),
            "transaction_id": pa.array([9, 7, 9], pa.int32()),
            "counterparty_id": pa.array([1, 1, 1], pa.int32()),
            "currency_id": pa.array([2, 1, 2], pa.int32()),
            "payment_type_id": pa.array([3, 3, 3], pa.int32()),
        }
    )
    assert referenced_values(rows, "fact_payment") == {
        ("dim_date", "date_id"): [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)],
        ("dim_transaction", "transaction_id"): [7, 9],
        ("dim_counterparty", "counterparty_id"): [1],
        ("dim_currency", "currency_id"): [1, 2],
        ("dim_payment_type", "payment_type_id"): [3],
    }


def _sequenced(sequence: int, run: str = "r") -> GoldFileKey:
    parsed = GoldFileKey.parse(gold_key("fact_payment", sequence, run, "ab12"))
    assert parsed is not None
    return parsed


def test_a_sequenced_key_sorts_in_commit_order_and_keeps_its_parts() -> None:
    # Given commits 9 and 10, the later made by a run that started earlier
    later_commit = _sequenced(10, "2026-01-01T00:00:00.000Z-a")
    earlier_commit = _sequenced(9, "2026-01-01T00:05:00.000Z-b")
    # Then the keys sort as the commits were made, and the parts are those of any gold key
    assert earlier_commit.key < later_commit.key
    assert (later_commit.table, later_commit.run_id, later_commit.stem, later_commit.sequence) == (
        "fact_payment",
        "2026-01-01T00:00:00.000Z-a",
        "0000000010-ab12",
        10,
    )


@given(
    present=st.sets(st.integers(1, 30), max_size=30),
    loaded=st.sets(st.integers(1, 30), max_size=30),
    cursor=st.integers(0, 10),
    hand_put_loaded=st.none() | st.booleans(),
)
def test_the_listing_never_starts_after_a_file_that_is_not_loaded(
    present: set[int], loaded: set[int], cursor: int, hand_put_loaded: bool | None
) -> None:
    # Given commits up to the cursor all loaded (what the cursor means), the files after
    # it that a listing found, which of them are loaded, and, before any cursor (its key
    # sorts before every sequenced one), perhaps a file put by hand
    listed = [_sequenced(n) for n in sorted(present) if n > cursor]
    loaded_keys = {f.key for f in listed if f.sequence in loaded}
    hand_put = GoldFileKey.parse("fact_payment/run=manual/part-0.parquet")
    assert hand_put is not None
    if cursor:
        hand_put_loaded = None
    if hand_put_loaded is not None:
        listed.append(hand_put)
        if hand_put_loaded:
            loaded_keys.add(hand_put.key)
    start = _sequenced(cursor) if cursor else None

    # When the next listing's start is worked out
    through = listed_through(start, listed, loaded_keys)

    # Then every file sorting at or before it is loaded (none is skipped by a later listing)
    assert all(f.key in loaded_keys for f in listed if through is not None and f.key <= through.key)
    # And it goes as far as an unbroken run of loaded commits allows, unless a file put
    # by hand still waits
    if hand_put_loaded is False:
        assert through == start
    else:
        reached = through.sequence if through is not None else 0
        assert reached >= cursor
        assert reached + 1 not in present or reached + 1 not in loaded
        assert all(n in present and n in loaded for n in range(cursor + 1, reached + 1))
