"""`totes warehouse init` creates the star schema once and never harms what is loaded."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import psycopg
import pytest

from totes.db import connect
from totes.names import (
    LOAD_LEDGER_TABLE,
    LOAD_LISTING_TABLE,
    NEWEST_VERSIONS_TABLE,
)
from totes.tables import DIMENSION_TABLES, FACT_TABLES, WAREHOUSE, WAREHOUSE_TABLES, ColumnType
from totes.warehouse.schema import init_warehouse

DAY = date(2024, 11, 14)


def _seed_dimensions(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO dim_date VALUES (%s, 2024, 11, 14, 4, 'Thursday', 'November', 4)", (DAY,)
    )
    conn.execute("INSERT INTO dim_staff VALUES (1, 'Irving', 'O''Keefe', 'Sales', 'Leds', 'i@x')")
    conn.execute(
        "INSERT INTO dim_location VALUES (1, '1 A St', NULL, NULL, 'Leeds', '01234', 'UK', '1')"
    )
    conn.execute("INSERT INTO dim_currency VALUES (1, 'GBP', 'British Pound')")
    conn.execute("INSERT INTO dim_design VALUES (1, 'Steel', '/usr', 'steel.json')")
    conn.execute(
        "INSERT INTO dim_counterparty VALUES "
        "(1, 'Hartmann, Franecki and Ratke', '1 A St', NULL, NULL, 'Leeds', '01234', 'UK', '1')"
    )


def _insert_sales_fact(conn: psycopg.Connection, updated: time) -> None:
    conn.execute(
        "INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, "
        "last_updated_date, last_updated_time, sales_staff_id, counterparty_id, units_sold, "
        "unit_price, currency_id, design_id, agreed_payment_date, agreed_delivery_date, "
        "agreed_delivery_location_id) "
        "VALUES (7, %s, '10:00:00', %s, %s, 1, 1, 100, %s, 1, 1, %s, %s, 1)",
        (DAY, DAY, updated, Decimal("3.94"), DAY, DAY),
    )


def test_init_creates_every_warehouse_table_and_the_ledger(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert tables == {
        *WAREHOUSE_TABLES,
        LOAD_LEDGER_TABLE,
        NEWEST_VERSIONS_TABLE,
        LOAD_LISTING_TABLE,
    }
    assert len(DIMENSION_TABLES) == 8
    assert len(FACT_TABLES) == 3


_SQL_TYPES = {
    ColumnType.INT: "integer",
    ColumnType.TEXT: "text",
    ColumnType.DATE: "date",
    ColumnType.TIME: "time without time zone",
    ColumnType.MONEY: "numeric",
    ColumnType.BOOL: "boolean",
}


def test_every_table_of_the_schema_sql_has_the_registrys_columns_in_order(
    warehouse_dsn: str,
) -> None:
    # Given the warehouse made by `totes warehouse init` from the schema SQL
    with connect(warehouse_dsn) as conn:
        for table in WAREHOUSE.values():
            # When its columns are read back
            found = conn.execute(
                # varchar(n) or text: both are text to the star's files
                "SELECT column_name, replace(data_type, 'character varying', 'text'), "
                "is_nullable = 'YES' FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position",
                (table.name,),
            ).fetchall()
            # Then they are the registry's, a fact's record key first
            expected = [(c.name, _SQL_TYPES[c.type], c.nullable) for c in table.columns]
            if table.record_key:
                expected.insert(0, (table.record_key, "integer", False))
            assert found == expected, table.name


def test_a_second_init_creates_nothing_and_keeps_every_row(warehouse_dsn: str) -> None:
    # Given a warehouse that holds a fact
    with connect(warehouse_dsn) as conn:
        _seed_dimensions(conn)
        _insert_sales_fact(conn, time(10, 0, 0, 123_000))
    # When init runs again
    with connect(warehouse_dsn) as conn:
        created = init_warehouse(conn)
        facts = conn.execute("SELECT count(*) FROM fact_sales_order").fetchone()
    # Then nothing is created and nothing is lost
    assert created == []
    assert facts == (1,)


def test_the_same_version_of_an_order_cannot_be_stored_twice(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        _seed_dimensions(conn)
        _insert_sales_fact(conn, time(10, 0, 0, 123_000))
        # A later version of the same order is history, and welcome
        _insert_sales_fact(conn, time(10, 0, 0, 124_000))
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            _insert_sales_fact(conn, time(10, 0, 0, 123_000))


def test_facts_cannot_reference_a_date_missing_from_dim_date(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        _seed_dimensions(conn)
        conn.commit()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="dim_date"):
            conn.execute(
                "INSERT INTO fact_payment (payment_id, created_date, created_time, "
                "last_updated_date, last_updated_time, transaction_id, counterparty_id, "
                "payment_amount, currency_id, payment_type_id, paid, payment_date) "
                "VALUES (1, '1999-01-01', '00:00', '1999-01-01', '00:00', 1, 1, 1, 1, 1, "
                "true, '1999-01-01')"
            )


def test_time_columns_keep_milliseconds(warehouse_dsn: str) -> None:
    with connect(warehouse_dsn) as conn:
        _seed_dimensions(conn)
        _insert_sales_fact(conn, time(23, 59, 59, 999_000))
        stored = conn.execute("SELECT last_updated_time FROM fact_sales_order").fetchone()
    assert stored == (time(23, 59, 59, 999_000),)


def test_init_gives_a_warehouse_made_before_newest_versions_its_facts_newest_version(
    warehouse_dsn: str,
) -> None:
    # Given a warehouse as an earlier release made it: facts, an index on their
    # last_updated, and no record of the newest version
    with connect(warehouse_dsn) as conn:
        _seed_dimensions(conn)
        _insert_sales_fact(conn, time(10, 0, 0, 123_000))
        _insert_sales_fact(conn, time(11, 30, 0, 250_000))
        conn.execute(f"DROP TABLE {NEWEST_VERSIONS_TABLE}")
        conn.execute(
            "CREATE INDEX fact_sales_order_newest "
            "ON fact_sales_order (last_updated_date DESC, last_updated_time DESC)"
        )
    # When init runs
    with connect(warehouse_dsn) as conn:
        created = init_warehouse(conn)
        newest = conn.execute(f"SELECT fact_table, last_updated FROM {NEWEST_VERSIONS_TABLE}")
        kept = newest.fetchall()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'fact_sales_order'"
        ).fetchall()
    # Then the newest version of each fact table that has rows is recorded, and the index,
    # which every load paid for, is gone
    assert created == [NEWEST_VERSIONS_TABLE]
    assert kept == [("fact_sales_order", datetime.combine(DAY, time(11, 30, 0, 250_000)))]
    assert ("fact_sales_order_newest",) not in indexes
