"""Compare the warehouse with a full rebuild computed straight from the source.

The rebuild is plain SQL over the current totesys tables, independent of the
transform and load code, so it checks the pipeline rather than repeating it:

- every dimension equals its rebuild (type 1: the latest values);
- every current version of a source order or payment is a fact row with the
  same values;
- no fact version appears twice (also guaranteed by the natural keys);
- every dim_date row is right for its day.

Examples
--------
>>> with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:  # doctest: +SKIP
...     assert reconcile(source, warehouse) == []
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from totes.transform.currencies import currency_name
from totes.transform.shapes import UNKNOWN_DEPARTMENT, UNKNOWN_LOCATION, unknown_currency_name
from totes.warehouse.star import FACT_VERSION_KEYS

#: dimension -> (rebuild query over the source, query of the same columns in the warehouse)
_DIMENSIONS: dict[str, tuple[str, str]] = {
    "dim_staff": (
        "SELECT s.staff_id, s.first_name, s.last_name, "
        "coalesce(d.department_name, %(unknown_department)s), "
        "coalesce(d.location, %(unknown_location)s), s.email_address "
        "FROM staff s LEFT JOIN department d USING (department_id)",
        "SELECT staff_id, first_name, last_name, department_name, location, email_address "
        "FROM dim_staff",
    ),
    "dim_location": (
        "SELECT address_id, address_line_1, address_line_2, district, city, postal_code, "
        "country, phone FROM address",
        "SELECT location_id, address_line_1, address_line_2, district, city, postal_code, "
        "country, phone FROM dim_location",
    ),
    "dim_counterparty": (
        "SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1, "
        "a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone "
        "FROM counterparty c JOIN address a ON a.address_id = c.legal_address_id",
        "SELECT counterparty_id, counterparty_legal_name, counterparty_legal_address_line_1, "
        "counterparty_legal_address_line_2, counterparty_legal_district, "
        "counterparty_legal_city, counterparty_legal_postal_code, counterparty_legal_country, "
        "counterparty_legal_phone_number FROM dim_counterparty",
    ),
    "dim_currency": (
        "SELECT currency_id, currency_code::text FROM currency",
        "SELECT currency_id, currency_code, currency_name FROM dim_currency",
    ),
    "dim_design": (
        "SELECT design_id, design_name, file_location, file_name FROM design",
        "SELECT design_id, design_name, file_location, file_name FROM dim_design",
    ),
    "dim_payment_type": (
        "SELECT payment_type_id, payment_type_name::text FROM payment_type",
        "SELECT payment_type_id, payment_type_name FROM dim_payment_type",
    ),
    "dim_transaction": (
        "SELECT transaction_id, transaction_type::text, sales_order_id, purchase_order_id "
        "FROM transaction",
        "SELECT transaction_id, transaction_type, sales_order_id, purchase_order_id "
        "FROM dim_transaction",
    ),
}

#: fact -> (current versions in the source, the same columns in the warehouse)
_FACTS: dict[str, tuple[str, str]] = {
    "fact_sales_order": (
        "SELECT sales_order_id, created_at::date, created_at::time(3), last_updated::date, "
        "last_updated::time(3), staff_id, counterparty_id, units_sold, unit_price, currency_id, "
        "design_id, agreed_payment_date::date, agreed_delivery_date::date, "
        "agreed_delivery_location_id FROM sales_order",
        "SELECT sales_order_id, created_date, created_time, last_updated_date, "
        "last_updated_time, sales_staff_id, counterparty_id, units_sold, unit_price, "
        "currency_id, design_id, agreed_payment_date, agreed_delivery_date, "
        "agreed_delivery_location_id FROM fact_sales_order",
    ),
    "fact_purchase_order": (
        "SELECT purchase_order_id, created_at::date, created_at::time(3), last_updated::date, "
        "last_updated::time(3), staff_id, counterparty_id, item_code, item_quantity, "
        "item_unit_price, currency_id, agreed_delivery_date::date, agreed_payment_date::date, "
        "agreed_delivery_location_id FROM purchase_order",
        "SELECT purchase_order_id, created_date, created_time, last_updated_date, "
        "last_updated_time, staff_id, counterparty_id, item_code, item_quantity, "
        "item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date, "
        "agreed_delivery_location_id FROM fact_purchase_order",
    ),
    "fact_payment": (
        "SELECT payment_id, created_at::date, created_at::time(3), last_updated::date, "
        "last_updated::time(3), transaction_id, counterparty_id, payment_amount, currency_id, "
        "payment_type_id, paid, payment_date::date FROM payment",
        "SELECT payment_id, created_date, created_time, last_updated_date, last_updated_time, "
        "transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, "
        "payment_date FROM fact_payment",
    ),
}

_DATE_CHECK = (
    "SELECT count(*) FROM dim_date WHERE year <> extract(year FROM date_id) "
    "OR month <> extract(month FROM date_id) OR day <> extract(day FROM date_id) "
    "OR day_of_week <> extract(isodow FROM date_id) "
    "OR day_name <> to_char(date_id, 'FMDay') OR month_name <> to_char(date_id, 'FMMonth') "
    "OR quarter <> extract(quarter FROM date_id)"
)


@dataclass(frozen=True)
class Mismatch:
    """One way the warehouse differs from the rebuild."""

    table: str
    problem: str
    rows: tuple[tuple[Any, ...], ...]

    def __str__(self) -> str:
        sample = ", ".join(map(str, self.rows[:3]))
        more = f" (+{len(self.rows) - 3} more)" if len(self.rows) > 3 else ""
        return f"{self.table}: {self.problem}: {sample}{more}"


_PLACEHOLDERS = {"unknown_department": UNKNOWN_DEPARTMENT, "unknown_location": UNKNOWN_LOCATION}


def _fetch(conn: psycopg.Connection[Any], query: str) -> set[tuple[Any, ...]]:
    return set(conn.execute(query, _PLACEHOLDERS if "%(" in query else None).fetchall())


def _named_currencies(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {(key, code, currency_name(code) or unknown_currency_name(code)) for key, code in rows}


def reconcile(
    source: psycopg.Connection[Any], warehouse: psycopg.Connection[Any]
) -> list[Mismatch]:
    """List every difference between the warehouse and a rebuild from the current source.

    Returns
    -------
    list of Mismatch
        Empty when the warehouse is right.
    """
    mismatches: list[Mismatch] = []
    for table, (rebuild, stored) in _DIMENSIONS.items():
        expected = _fetch(source, rebuild)
        if table == "dim_currency":
            expected = _named_currencies(expected)
        actual = _fetch(warehouse, stored)
        if missing := expected - actual:
            mismatches.append(Mismatch(table, "missing or stale", tuple(sorted(missing))))
        if unexpected := actual - expected:
            mismatches.append(Mismatch(table, "not in the source", tuple(sorted(unexpected))))
    for table, (current, stored) in _FACTS.items():
        missing = _fetch(source, current) - _fetch(warehouse, stored)
        if missing:
            mismatches.append(Mismatch(table, "current version missing", tuple(sorted(missing))))
        repeated = warehouse.execute(
            sql.SQL(
                "SELECT {key}, last_updated_date, last_updated_time, count(*) FROM {table} "
                "GROUP BY 1, 2, 3 HAVING count(*) > 1"
            ).format(key=sql.Identifier(FACT_VERSION_KEYS[table][0]), table=sql.Identifier(table))
        ).fetchall()
        if repeated:
            mismatches.append(Mismatch(table, "version stored twice", tuple(repeated)))
    wrong_dates = warehouse.execute(_DATE_CHECK).fetchone()
    if wrong_dates and wrong_dates[0]:
        mismatches.append(Mismatch("dim_date", f"{wrong_dates[0]} rows wrong for their day", ()))
    return mismatches
