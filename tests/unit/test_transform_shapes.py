"""The pure shaping functions of transform: source rows in, star rows out (no AWS, no DB)."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.findings import FindingKind
from totes.transform import shapes
from totes.warehouse.star import STAR_SCHEMAS

#: The source's timestamps are timestamp(3): milliseconds at most.
STAMP = datetime(2024, 11, 14, 9, 30, 15, 123_000)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def _order(order_id: int, updated: datetime, **overrides: Any) -> dict[str, Any]:
    row = {
        "sales_order_id": order_id,
        "created_at": STAMP,
        "last_updated": updated,
        "design_id": 1,
        "staff_id": 2,
        "counterparty_id": 3,
        "units_sold": 10,
        "unit_price": Decimal("2.50"),
        "currency_id": 1,
        "agreed_delivery_date": "2024-12-01",
        "agreed_payment_date": "2024-12-02",
        "agreed_delivery_location_id": 4,
    }
    return row | overrides


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(0, 10), st.text(max_size=3)),
        min_size=1,
        max_size=30,
    )
)
def test_latest_versions_keeps_exactly_the_newest_version_of_each_key(
    versions: list[tuple[int, int, str]],
) -> None:
    table = _table([{"k": k, "last_updated": t, "v": v} for k, t, v in versions])
    latest = shapes.latest_versions(table, "k").to_pylist()
    # One row per key, in key order, each carrying the newest last_updated of its key
    assert [row["k"] for row in latest] == sorted({k for k, _, _ in versions})
    newest = {k: max(t for kk, t, _ in versions if kk == k) for k, _, _ in versions}
    assert all(row["last_updated"] == newest[row["k"]] for row in latest)


def test_a_sales_order_version_becomes_one_fact_row_with_dates_times_and_exact_money() -> None:
    # Given two versions of one order and the same version read twice (a look-back re-read)
    first, second = STAMP, STAMP.replace(hour=10)
    orders = _table([_order(7, first), _order(7, second, units_sold=11), _order(7, second)])

    # When it is shaped
    shaped = shapes.fact_sales_order(orders)

    # Then each version is one row, staff becomes sales staff, times keep milliseconds
    rows = shaped.table.to_pylist()
    assert shaped.table.schema == STAR_SCHEMAS["fact_sales_order"]
    assert [(row["sales_order_id"], row["units_sold"]) for row in rows] == [(7, 10), (7, 11)]
    assert rows[0]["sales_staff_id"] == 2
    assert rows[0]["created_date"] == date(2024, 11, 14)
    assert rows[0]["created_time"] == time(9, 30, 15, 123_000)
    assert rows[1]["last_updated_time"] == time(10, 30, 15, 123_000)
    assert rows[0]["unit_price"] == Decimal("2.50")
    assert rows[0]["agreed_delivery_date"] == date(2024, 12, 1)
    assert shaped.rejects is None


@pytest.mark.parametrize("bad", ["31/12/2024", "soon", "", None, "2024-1-5", " 2024-01-05"])
def test_an_order_whose_agreed_date_is_not_a_date_is_rejected_with_its_reason(
    bad: str | None,
) -> None:
    orders = _table([_order(1, STAMP), _order(2, STAMP, agreed_payment_date=bad)])

    shaped = shapes.fact_sales_order(orders)

    assert [row["sales_order_id"] for row in shaped.table.to_pylist()] == [1]
    assert shaped.rejects is not None
    (reject,) = shaped.rejects.to_pylist()
    assert reject["sales_order_id"] == 2
    shown = "NULL" if bad is None else f"'{bad}'"
    assert reject["reject_reason"] == f"agreed_payment_date {shown} is not a YYYY-MM-DD date"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("2024-02-30", "February 2024 has 29 days"),
        ("2023-02-29", "February 2023 has 28 days"),
        ("2024-04-31", "April 2024 has 30 days"),
        ("2024-00-10", "there is no month 0"),
        ("2024-13-45", "there is no month 13"),
        ("2024-01-00", "there is no day 0"),
        ("0000-01-01", "there is no year 0"),
    ],
)
def test_an_agreed_date_that_names_no_calendar_day_is_rejected_not_moved(
    bad: str, why: str
) -> None:
    # Given an order whose agreed delivery date is well formed but no day of the calendar
    orders = _table([_order(1, STAMP), _order(2, STAMP, agreed_delivery_date=bad)])

    # When it is shaped
    shaped = shapes.fact_sales_order(orders)

    # Then that order is rejected with a reason that quotes the value and says why
    assert [row["sales_order_id"] for row in shaped.table.to_pylist()] == [1]
    assert shaped.rejects is not None
    (reject,) = shaped.rejects.to_pylist()
    assert (reject["sales_order_id"], reject["agreed_delivery_date"]) == (2, bad)
    assert reject["reject_reason"] == f"agreed_delivery_date '{bad}' is not a date: {why}"
    (finding,) = shaped.findings
    assert (finding.kind, finding.count, finding.examples) == (
        FindingKind.ROWS_REJECTED,
        1,
        [f"'{bad}'"],
    )


def test_a_timestamp_with_microseconds_is_rejected_rather_than_cut_to_milliseconds() -> None:
    # Given two versions of one order a few microseconds apart (a source column retyped to
    # timestamp(6)): cut to milliseconds they would be one version, and one would be lost
    finer = STAMP.replace(microsecond=123_456)
    orders = _table([_order(1, STAMP), _order(1, finer)])

    # When they are shaped
    shaped = shapes.fact_sales_order(orders)

    # Then the millisecond version loads and the finer one is rejected with its value
    assert [row["last_updated_time"] for row in shaped.table.to_pylist()] == [
        time(9, 30, 15, 123_000)
    ]
    assert shaped.rejects is not None
    (reject,) = shaped.rejects.to_pylist()
    assert reject["reject_reason"] == (
        "last_updated '2024-11-14 09:30:15.123456' does not fit the warehouse's time(3)"
    )


@pytest.mark.parametrize(
    ("column", "kind", "value", "shown"),
    [
        ("unit_price", pa.decimal128(12, 3), Decimal("2.505"), "2.505"),
        ("unit_price", pa.decimal128(14, 2), Decimal("123456789.00"), "123456789.00"),
        ("units_sold", pa.int64(), 2**31, "2147483648"),
        # The raw zone keeps numerics as the source's text; a numeric column may hold NaN
        ("unit_price", pa.string(), "NaN", "NaN"),
        ("unit_price", pa.string(), "2.505", "2.505"),
    ],
)
def test_a_number_the_star_type_cannot_hold_exactly_is_rejected_with_its_value(
    column: str, kind: pa.DataType, value: object, shown: str
) -> None:
    # Given a source column retyped within its kind (a wider numeric, a bigint) and one
    # order whose value the warehouse's column cannot hold exactly
    rows = [_order(1, STAMP), _order(2, STAMP)]
    values = [rows[0][column], value]
    orders = _table(rows).set_column(
        list(rows[0]).index(column),
        column,
        pa.array([str(v) for v in values] if kind == pa.string() else values, kind),
    )

    # When they are shaped
    shaped = shapes.fact_sales_order(orders)

    # Then the other order loads exactly, and this one is rejected, never rounded
    (loaded,) = shaped.table.to_pylist()
    assert (loaded["sales_order_id"], loaded["unit_price"]) == (1, Decimal("2.50"))
    assert shaped.rejects is not None
    (reject,) = shaped.rejects.to_pylist()
    target = "numeric(10,2)" if column == "unit_price" else "integer"
    assert reject["reject_reason"] == (f"{column} '{shown}' does not fit the warehouse's {target}")


def test_a_null_where_the_warehouse_needs_a_value_is_rejected_not_a_failed_batch() -> None:
    # Given an order without units (a source that dropped its NOT NULL)
    orders = _table([_order(1, STAMP), _order(2, STAMP, units_sold=None)])

    # When they are shaped
    shaped = shapes.fact_sales_order(orders)

    # Then the good order loads and the other is rejected with the reason
    assert [row["sales_order_id"] for row in shaped.table.to_pylist()] == [1]
    assert shaped.rejects is not None
    assert shaped.rejects.column("reject_reason").to_pylist() == [
        "units_sold NULL where the warehouse needs a value"
    ]


def test_staff_take_their_department_and_a_placeholder_only_for_null() -> None:
    staff = _table(
        [
            {
                "staff_id": 1,
                "first_name": "Zoë",
                "last_name": "O'Keefe",
                "department_id": 1,
                "email_address": "zoe@t.com",
                "last_updated": STAMP,
            },
            {
                "staff_id": 2,
                "first_name": "Ann",
                "last_name": "Lee",
                "department_id": 2,
                "email_address": "ann@t.com",
                "last_updated": STAMP,
            },
        ]
    )
    departments = _table(
        [
            {
                "department_id": 1,
                "department_name": "Sales",
                "location": None,
                "last_updated": STAMP,
            },
            {"department_id": 2, "department_name": "", "location": "Leds", "last_updated": STAMP},
        ]
    )

    rows = shapes.dim_staff(staff, departments).table.to_pylist()

    assert [(r["first_name"], r["department_name"], r["location"]) for r in rows] == [
        ("Zoë", "Sales", shapes.UNKNOWN_LOCATION),
        ("Ann", "", "Leds"),
    ]


def test_a_counterparty_without_its_address_waits_with_a_warning() -> None:
    address = {
        "address_id": 5,
        "address_line_1": "1 Main St",
        "address_line_2": None,
        "district": None,
        "city": "Leeds",
        "postal_code": "01234",
        "country": "UK",
        "phone": "0113",
        "last_updated": STAMP,
    }
    parties = _table(
        [
            {
                "counterparty_id": 1,
                "counterparty_legal_name": "Hartmann, Franecki and Ratke",
                "legal_address_id": 5,
                "last_updated": STAMP,
            },
            {
                "counterparty_id": 2,
                "counterparty_legal_name": "Kub Inc",
                "legal_address_id": 9,
                "last_updated": STAMP,
            },
        ]
    )

    shaped = shapes.dim_counterparty(parties, _table([address]))

    (row,) = shaped.table.to_pylist()
    assert row["counterparty_legal_name"] == "Hartmann, Franecki and Ratke"
    assert row["counterparty_legal_postal_code"] == "01234"
    assert row["counterparty_legal_address_line_2"] is None
    (finding,) = shaped.findings
    assert (finding.kind, finding.table, finding.count) == (
        FindingKind.UNKNOWN_REFERENCE,
        "dim_counterparty",
        1,
    )
    assert finding.describe() == (
        "1 row: counterparties whose legal address is not in address: left out until it "
        "arrives (e.g. counterparty_id 2)"
    )


def test_currencies_are_named_from_iso_4217_and_an_unknown_code_gets_a_placeholder() -> None:
    currencies = _table(
        [
            {"currency_id": 1, "currency_code": "GBP", "last_updated": STAMP},
            {"currency_id": 2, "currency_code": "XYZ", "last_updated": STAMP},
        ]
    )

    shaped = shapes.dim_currency(currencies)

    names = [row["currency_name"] for row in shaped.table.to_pylist()]
    assert names == ["Pound Sterling", "Unknown currency (XYZ)"]
    (finding,) = shaped.findings
    assert (finding.kind, finding.table, finding.stage) == (
        FindingKind.UNKNOWN_CODE,
        "dim_currency",
        "transform",
    )
    assert finding.describe() == (
        "1 row: currency code 'XYZ' is not in ISO 4217: named 'Unknown currency (XYZ)'"
    )


def test_a_null_timestamp_is_one_rejected_row_and_one_finding_though_it_feeds_two_columns() -> None:
    # Given an order without created_at (it becomes created_date and created_time)
    orders = _table([_order(1, STAMP), _order(2, STAMP, created_at=None)])

    # When it is shaped
    shaped = shapes.fact_sales_order(orders)

    # Then it counts once: one rejected row, one finding of one row
    assert shaped.rejects is not None
    assert shaped.rejects.num_rows == 1
    assert [(finding.detail, finding.count) for finding in shaped.findings] == [
        ("created_at is NULL: the warehouse needs a value", 1)
    ]
