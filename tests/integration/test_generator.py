"""The synthetic source looks like the client's database and is reproducible."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest

from totes.db import connect, row_counts
from totes.tables import SOURCE_TABLES
from totes_local.source.generator import REAL_VOLUMES, Volumes, seed_synthetic

#: Quirk -> SQL giving its rate (or level) in a source; compared between the snapshot and
#: a scale-1 synthetic source.
QUIRKS: dict[str, str] = {
    "address_line_2 is NULL": "SELECT avg((address_line_2 IS NULL)::int) FROM address",
    "district is NULL": "SELECT avg((district IS NULL)::int) FROM address",
    "postal code with a leading zero": "SELECT avg((postal_code LIKE '0%')::int) FROM address",
    "ZIP+4 postal code": "SELECT avg((postal_code LIKE '%-%')::int) FROM address",
    "legal name with a comma": (
        "SELECT avg((counterparty_legal_name LIKE '%,%')::int) FROM counterparty"
    ),
    "legal name with a dash": (
        "SELECT avg((counterparty_legal_name LIKE '% - %')::int) FROM counterparty"
    ),
    "surname with an apostrophe": "SELECT avg((last_name LIKE '%''%')::int) FROM staff",
    "email with an apostrophe": "SELECT avg((email_address LIKE '%''%')::int) FROM staff",
    "department located in 'Leds'": "SELECT count(*) FROM department WHERE location = 'Leds'",
    "sales order stamped without a fraction": (
        "SELECT avg((date_trunc('second', created_at) = created_at)::int) FROM sales_order"
    ),
    "purchase order stamped without a fraction": (
        "SELECT avg((date_trunc('second', created_at) = created_at)::int) FROM purchase_order"
    ),
    "transaction stamped without a fraction": (
        "SELECT avg((date_trunc('second', created_at) = created_at)::int) FROM transaction"
    ),
    "transactions that are sales": (
        "SELECT avg((transaction_type = 'SALE')::int) FROM transaction"
    ),
    "delivery agreed over a week ahead": (
        "SELECT avg((agreed_delivery_date::date - created_at::date > 7)::int) FROM sales_order"
    ),
    "days between order and agreed payment": (
        "SELECT avg(agreed_payment_date::date - created_at::date) FROM sales_order"
    ),
    "mean units sold": "SELECT avg(units_sold) FROM sales_order",
    "mean unit price": "SELECT avg(unit_price) FROM sales_order",
    "mean purchase unit price": "SELECT avg(item_unit_price) FROM purchase_order",
    "share of sales in GBP": "SELECT avg((currency_id = 1)::int) FROM sales_order",
    "sales orders in the last 12 months": (
        "SELECT count(*) FROM sales_order "
        "WHERE created_at > (SELECT max(created_at) FROM sales_order) - interval '12 months'"
    ),
    "sales orders in the first 3 months": (
        "SELECT count(*) FROM sales_order "
        "WHERE created_at < (SELECT min(created_at) FROM sales_order) + interval '3 months'"
    ),
    "designs created on the first day": (
        "SELECT count(*) FROM design WHERE created_at::date = "
        "(SELECT min(created_at)::date FROM design)"
    ),
}


def _measure(dsn: str) -> dict[str, float]:
    with connect(dsn) as conn:
        return {name: float(conn.execute(query).fetchone()[0]) for name, query in QUIRKS.items()}


@pytest.mark.snapshot_data
def test_quirks_occur_within_20_percent_of_the_real_snapshot_rates(
    snapshot_source_dsn: str, full_scale_source_dsn: str
) -> None:
    # Given the real snapshot and a synthetic source at the real volumes
    real = _measure(snapshot_source_dsn)
    # When the same quirks are measured on both
    synthetic = _measure(full_scale_source_dsn)
    # Then every quirk is present and within 20 % of the real rate
    off = {
        name: (real[name], synthetic[name])
        for name in QUIRKS
        if not real[name] * 0.8 <= synthetic[name] <= real[name] * 1.2
    }
    assert not off, f"quirks off by more than 20 % (real, synthetic): {off}"


def test_scale_one_has_the_real_volumes(full_scale_source_dsn: str) -> None:
    with connect(full_scale_source_dsn) as conn:
        counts = row_counts(conn, SOURCE_TABLES)
    assert {t: counts[t] for t in REAL_VOLUMES} == REAL_VOLUMES
    assert counts["transaction"] == 11_175 + 4_640
    assert counts["payment"] == counts["transaction"]


def test_non_ascii_names_survive_the_trip_into_postgres(full_scale_source_dsn: str) -> None:
    with connect(full_scale_source_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM staff WHERE first_name || last_name ~ '[^[:ascii:]]'"
        ).fetchone()
        contacts = conn.execute(
            "SELECT count(*) FROM counterparty WHERE commercial_contact ~ '[^[:ascii:]]' "
            "OR delivery_contact ~ '[^[:ascii:]]'"
        ).fetchone()
    assert row is not None
    assert row[0] >= 1
    assert contacts is not None
    assert contacts[0] >= 1


def test_every_transaction_belongs_to_exactly_one_order_and_has_one_payment(
    full_scale_source_dsn: str,
) -> None:
    with connect(full_scale_source_dsn) as conn:
        wrong_links = conn.execute(
            "SELECT count(*) FROM transaction WHERE (sales_order_id IS NULL) = "
            "(purchase_order_id IS NULL) OR (transaction_type = 'SALE') <> "
            "(sales_order_id IS NOT NULL)"
        ).fetchone()
        orders_without_transaction = conn.execute(
            "SELECT (SELECT count(*) FROM sales_order s WHERE NOT EXISTS "
            "(SELECT 1 FROM transaction t WHERE t.sales_order_id = s.sales_order_id)) + "
            "(SELECT count(*) FROM purchase_order p WHERE NOT EXISTS "
            "(SELECT 1 FROM transaction t WHERE t.purchase_order_id = p.purchase_order_id))"
        ).fetchone()
        transactions_without_payment = conn.execute(
            "SELECT count(*) FROM transaction t "
            "WHERE NOT EXISTS (SELECT 1 FROM payment p WHERE p.transaction_id = t.transaction_id)"
        ).fetchone()
        mismatched_payment_type = conn.execute(
            "SELECT count(*) FROM payment p JOIN transaction t USING (transaction_id) "
            "JOIN payment_type pt USING (payment_type_id) "
            "WHERE (t.transaction_type = 'SALE') <> (pt.payment_type_name::text LIKE 'SALES_%')"
        ).fetchone()
    assert wrong_links == (0,)
    assert orders_without_transaction == (0,)
    assert transactions_without_payment == (0,)
    assert mismatched_payment_type == (0,)


def test_dates_are_iso_text_and_orders_only_use_designs_that_already_exist(
    full_scale_source_dsn: str,
) -> None:
    with connect(full_scale_source_dsn) as conn:
        dates = conn.execute(
            "SELECT agreed_delivery_date, agreed_payment_date FROM sales_order "
            "UNION ALL SELECT agreed_delivery_date, agreed_payment_date FROM purchase_order "
            "UNION ALL SELECT payment_date, payment_date FROM payment"
        ).fetchall()
        premature = conn.execute(
            "SELECT count(*) FROM sales_order s JOIN design d USING (design_id) "
            "WHERE d.created_at > s.created_at"
        ).fetchone()
        time_travel = conn.execute(
            "SELECT count(*) FROM sales_order WHERE last_updated < created_at"
        ).fetchone()
    for delivery, payment in dates:
        assert datetime.date.fromisoformat(delivery).isoformat() == delivery
        assert datetime.date.fromisoformat(payment).isoformat() == payment
    assert premature == (0,)
    assert time_travel == (0,)


def _fingerprints(dsn: str) -> dict[str, str]:
    with connect(dsn) as conn:
        return {
            table: conn.execute(
                f"SELECT md5(string_agg(t::text, E'\\n' ORDER BY {table}_id)) FROM {table} t"
            ).fetchone()[0]
            for table in SOURCE_TABLES
        }


def test_the_same_seed_gives_the_same_rows_and_another_seed_does_not(
    fresh_database: Callable[..., str],
) -> None:
    # Given three sources, two seeded with 7 and one with 8
    first, second, other = fresh_database(), fresh_database(), fresh_database()
    for dsn, seed in ((first, 7), (second, 7), (other, 8)):
        with connect(dsn) as conn:
            seed_synthetic(conn, scale=0.05, seed=seed)
    # When their content is fingerprinted
    a, b, c = _fingerprints(first), _fingerprints(second), _fingerprints(other)
    # Then the same seed gives identical tables, and a different seed changes the data
    assert a == b
    changed = {t for t in SOURCE_TABLES if a[t] != c[t]}
    assert changed >= {"address", "counterparty", "staff", "design", "sales_order", "payment"}
    assert "currency" not in changed


@pytest.mark.parametrize(("scale", "expected_orders"), [(0.01, 112), (0.1, 1_118), (2, 22_350)])
def test_volumes_follow_the_scale(scale: float, expected_orders: int) -> None:
    volumes = Volumes.at_scale(scale)
    assert volumes.sales_order == expected_orders
    assert volumes.currency == 3
    assert volumes.department == 8
    assert volumes.payment == volumes.sales_order + volumes.purchase_order
