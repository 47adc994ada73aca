"""The seeded source has exactly the totesys schema of DESIGN.md section 6."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from totes.db import connect, with_database
from totes.source.schema import add_source_constraints, create_source_tables
from totes.tables import SOURCE_TABLES
from totes_local.runtime.postgres import PostgresServer

TS = "timestamp without time zone"
AUDIT = [("created_at", TS, False), ("last_updated", TS, False)]

#: table -> [(column, data type, nullable)], transcribed from DESIGN.md section 6.
EXPECTED_COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "address": [
        ("address_id", "integer", False),
        ("address_line_1", "text", False),
        ("address_line_2", "text", True),
        ("district", "text", True),
        ("city", "text", False),
        ("postal_code", "text", False),
        ("country", "text", False),
        ("phone", "text", False),
        *AUDIT,
    ],
    "counterparty": [
        ("counterparty_id", "integer", False),
        ("counterparty_legal_name", "text", False),
        ("legal_address_id", "integer", False),
        ("commercial_contact", "text", True),
        ("delivery_contact", "text", True),
        *AUDIT,
    ],
    "currency": [
        ("currency_id", "integer", False),
        ("currency_code", "character varying", False),
        *AUDIT,
    ],
    "department": [
        ("department_id", "integer", False),
        ("department_name", "text", False),
        ("location", "text", True),
        ("manager", "text", True),
        *AUDIT,
    ],
    "design": [
        ("design_id", "integer", False),
        ("design_name", "text", False),
        ("file_location", "text", False),
        ("file_name", "text", False),
        *AUDIT,
    ],
    "staff": [
        ("staff_id", "integer", False),
        ("first_name", "text", False),
        ("last_name", "text", False),
        ("department_id", "integer", False),
        ("email_address", "text", False),
        *AUDIT,
    ],
    "sales_order": [
        ("sales_order_id", "integer", False),
        ("design_id", "integer", False),
        ("staff_id", "integer", False),
        ("counterparty_id", "integer", False),
        ("units_sold", "integer", False),
        ("unit_price", "numeric", False),
        ("currency_id", "integer", False),
        ("agreed_delivery_date", "text", False),
        ("agreed_payment_date", "text", False),
        ("agreed_delivery_location_id", "integer", False),
        *AUDIT,
    ],
    "purchase_order": [
        ("purchase_order_id", "integer", False),
        ("staff_id", "integer", False),
        ("counterparty_id", "integer", False),
        ("item_code", "text", False),
        ("item_quantity", "integer", False),
        ("item_unit_price", "numeric", False),
        ("currency_id", "integer", False),
        ("agreed_delivery_date", "text", False),
        ("agreed_payment_date", "text", False),
        ("agreed_delivery_location_id", "integer", False),
        *AUDIT,
    ],
    "payment_type": [
        ("payment_type_id", "integer", False),
        ("payment_type_name", "USER-DEFINED", False),
        *AUDIT,
    ],
    "payment": [
        ("payment_id", "integer", False),
        ("transaction_id", "integer", False),
        ("counterparty_id", "integer", False),
        ("payment_amount", "numeric", False),
        ("currency_id", "integer", False),
        ("payment_type_id", "integer", False),
        ("paid", "boolean", False),
        ("payment_date", "text", False),
        ("company_ac_number", "integer", False),
        ("counterparty_ac_number", "integer", False),
        *AUDIT,
    ],
    "transaction": [
        ("transaction_id", "integer", False),
        ("transaction_type", "USER-DEFINED", False),
        ("sales_order_id", "integer", True),
        ("purchase_order_id", "integer", True),
        *AUDIT,
    ],
}

#: (table, column) -> referenced table.
EXPECTED_FOREIGN_KEYS = {
    ("counterparty", "legal_address_id"): "address",
    ("staff", "department_id"): "department",
    ("sales_order", "design_id"): "design",
    ("sales_order", "staff_id"): "staff",
    ("sales_order", "counterparty_id"): "counterparty",
    ("sales_order", "currency_id"): "currency",
    ("sales_order", "agreed_delivery_location_id"): "address",
    ("purchase_order", "staff_id"): "staff",
    ("purchase_order", "counterparty_id"): "counterparty",
    ("purchase_order", "currency_id"): "currency",
    ("purchase_order", "agreed_delivery_location_id"): "address",
    ("transaction", "sales_order_id"): "sales_order",
    ("transaction", "purchase_order_id"): "purchase_order",
    ("payment", "transaction_id"): "transaction",
    ("payment", "counterparty_id"): "counterparty",
    ("payment", "currency_id"): "currency",
    ("payment", "payment_type_id"): "payment_type",
}


@pytest.fixture(scope="module")
def columns_and_constraints(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> dict[str, Any]:
    """Given a database where the totesys schema was created, read it back from the catalog."""
    dsn = with_database(pg_server.admin_dsn, database_factory("schema"))
    with connect(dsn) as conn:
        create_source_tables(conn)
        add_source_constraints(conn)
        conn.commit()
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES', "
            "numeric_precision, numeric_scale, character_maximum_length, datetime_precision, "
            "column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        foreign_keys = conn.execute(
            "SELECT cl.relname, a.attname, ref.relname FROM pg_constraint c "
            "JOIN pg_class cl ON cl.oid = c.conrelid "
            "JOIN pg_class ref ON ref.oid = c.confrelid "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace"
        ).fetchall()
        uniques = conn.execute(
            "SELECT cl.relname, a.attname FROM pg_constraint c "
            "JOIN pg_class cl ON cl.oid = c.conrelid "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'u' AND c.connamespace = 'public'::regnamespace"
        ).fetchall()
        primary_keys = conn.execute(
            "SELECT cl.relname, a.attname FROM pg_constraint c "
            "JOIN pg_class cl ON cl.oid = c.conrelid "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace"
        ).fetchall()
        enums = conn.execute(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) "
            "FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname"
        ).fetchall()
    return {
        "columns": columns,
        "foreign_keys": {(t, c): r for t, c, r in foreign_keys},
        "uniques": set(uniques),
        "primary_keys": set(primary_keys),
        "enums": dict(enums),
    }


def _columns(catalog: dict[str, Any], table: str) -> list[tuple[Any, ...]]:
    return [row[1:] for row in catalog["columns"] if row[0] == table]


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_every_column_has_the_designed_name_type_and_nullability(
    columns_and_constraints: dict[str, Any], table: str
) -> None:
    # When the catalog is read, Then each table's columns match DESIGN.md in order.
    actual = [
        (name, kind, nullable)
        for name, kind, nullable, *_ in _columns(columns_and_constraints, table)
    ]
    assert actual == EXPECTED_COLUMNS[table]


def test_exactly_the_eleven_tables_and_prisma_bookkeeping_exist(
    columns_and_constraints: dict[str, Any],
) -> None:
    tables = {row[0] for row in columns_and_constraints["columns"]}
    assert tables == {*SOURCE_TABLES, "_prisma_migrations"}
    assert set(EXPECTED_COLUMNS) == set(SOURCE_TABLES)


def test_money_is_numeric_10_2_and_timestamps_keep_milliseconds(
    columns_and_constraints: dict[str, Any],
) -> None:
    rows = columns_and_constraints["columns"]
    money = [r for r in rows if r[2] == "numeric"]
    assert {(r[0], r[1]) for r in money} == {
        ("sales_order", "unit_price"),
        ("purchase_order", "item_unit_price"),
        ("payment", "payment_amount"),
    }
    assert {(r[4], r[5]) for r in money} == {(10, 2)}
    stamps = [r for r in rows if r[2] == TS]
    assert len(stamps) == 2 * len(SOURCE_TABLES)
    assert {r[7] for r in stamps} == {3}
    currency_code = next(r for r in rows if r[1] == "currency_code")
    assert currency_code[6] == 3


def test_created_at_has_a_default_and_last_updated_has_none(
    columns_and_constraints: dict[str, Any],
) -> None:
    rows = columns_and_constraints["columns"]
    defaults = {(r[0], r[1]): r[8] for r in rows if r[0] in SOURCE_TABLES}
    for table in SOURCE_TABLES:
        assert defaults[(table, "created_at")] is not None
        assert defaults[(table, "last_updated")] is None
        assert "nextval" in str(defaults[(table, f"{table}_id")])


def test_foreign_keys_unique_constraints_and_primary_keys_are_as_designed(
    columns_and_constraints: dict[str, Any],
) -> None:
    assert columns_and_constraints["foreign_keys"] == EXPECTED_FOREIGN_KEYS
    assert columns_and_constraints["uniques"] == {
        ("transaction", "sales_order_id"),
        ("transaction", "purchase_order_id"),
        ("payment", "transaction_id"),
    }
    primary = columns_and_constraints["primary_keys"]
    assert {(t, f"{t}_id") for t in SOURCE_TABLES} <= primary


def test_enums_hold_exactly_the_designed_values(
    columns_and_constraints: dict[str, Any],
) -> None:
    assert columns_and_constraints["enums"] == {
        "payment_type_name": [
            "SALES_RECEIPT",
            "SALES_REFUND",
            "PURCHASE_PAYMENT",
            "PURCHASE_REFUND",
        ],
        "transaction_type": ["SALE", "PURCHASE"],
    }
