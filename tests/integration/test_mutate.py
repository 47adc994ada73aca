"""`totes mutate` changes a source the way the business does, and always moves time forward."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest

from totes.db import connect
from totes.errors import SourceSchemaMissingError
from totes.tables import SOURCE_TABLES
from totes_local.source.mutate import CHANGE_WEIGHTS, mutate

Version = tuple[datetime, str]


def _versions(conn: psycopg.Connection[Any]) -> dict[tuple[str, int], Version]:
    versions: dict[tuple[str, int], Version] = {}
    for table in SOURCE_TABLES:
        rows = conn.execute(f"SELECT {table}_id, last_updated, t::text FROM {table} t").fetchall()
        versions.update({(table, key): (stamp, text) for key, stamp, text in rows})
    return versions


@pytest.fixture
def mutated(seeded_source_dsn: str) -> dict[str, Any]:
    """Given a seeded source, When 400 changes are applied, remember before and after."""
    with connect(seeded_source_dsn) as conn:
        before = _versions(conn)
        report = mutate(conn, seed=5, changes=400)
        after = _versions(conn)
    return {"before": before, "after": after, "report": report, "dsn": seeded_source_dsn}


def test_every_changed_row_moves_its_last_updated_strictly_forward(
    mutated: dict[str, Any],
) -> None:
    before, after = mutated["before"], mutated["after"]
    newest_before = max(stamp for stamp, _ in before.values())
    changed = {key for key in before if after[key][1] != before[key][1]}
    inserted = set(after) - set(before)
    assert changed
    assert inserted
    for key in changed:
        assert after[key][0] > before[key][0], key
    for key in inserted:
        assert after[key][0] > newest_before, key
    for key in set(before) - changed:
        assert after[key][0] == before[key][0], key


def test_the_report_names_exactly_the_rows_that_changed(mutated: dict[str, Any]) -> None:
    before, after = mutated["before"], mutated["after"]
    moved = {key for key in after if key not in before or after[key] != before[key]}
    assert set(mutated["report"].touched) == moved
    assert sum(mutated["report"].kinds.values()) == 400


def test_every_kind_of_change_happens_including_the_ones_that_cascade(
    mutated: dict[str, Any],
) -> None:
    assert set(mutated["report"].kinds) == set(CHANGE_WEIGHTS)
    tables = {table for table, _ in mutated["report"].touched}
    assert {"department", "address", "staff", "design", "sales_order", "payment"} <= tables


def test_foreign_keys_and_order_links_still_hold(mutated: dict[str, Any]) -> None:
    with connect(mutated["dsn"]) as conn:
        constraints = conn.execute(
            "SELECT count(*), bool_and(convalidated) FROM pg_constraint "
            "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
        ).fetchone()
        broken = conn.execute(
            "SELECT count(*) FROM transaction t LEFT JOIN payment p USING (transaction_id) "
            "WHERE p.payment_id IS NULL "
            "OR (t.sales_order_id IS NULL) = (t.purchase_order_id IS NULL)"
        ).fetchone()
        orphans = conn.execute(
            "SELECT count(*) FROM sales_order s WHERE NOT EXISTS "
            "(SELECT 1 FROM transaction t WHERE t.sales_order_id = s.sales_order_id)"
        ).fetchone()
    assert constraints == (17, True)
    assert broken == (0,)
    assert orphans == (0,)


def test_the_same_seed_makes_the_same_choices_on_the_same_source(
    fresh_database: Callable[..., str], small_source_template: str
) -> None:
    reports = []
    for _ in range(2):
        dsn = fresh_database("source", template=small_source_template)
        with connect(dsn) as conn:
            reports.append(mutate(conn, seed=11, changes=60))
    assert reports[0].kinds == reports[1].kinds
    assert reports[0].touched == reports[1].touched


def test_the_same_seed_makes_the_same_kinds_of_change_on_a_source_that_has_grown(
    fresh_database: Callable[..., str], small_source_template: str
) -> None:
    # Given a source, and the same source after 300 more changes
    small, grown = (fresh_database("source", template=small_source_template) for _ in range(2))
    with connect(grown) as conn:
        mutate(conn, seed=99, changes=300)
    # When the same seed changes each
    reports = []
    for dsn in (small, grown):
        with connect(dsn) as conn:
            reports.append(mutate(conn, seed=11, changes=60))
    # Then both made the same kinds of change, in the same order (the tables they
    # touched, one after another, are the same), but picked different rows
    assert reports[0].kinds == reports[1].kinds
    assert [table for table, _ in reports[0].touched] == [table for table, _ in reports[1].touched]
    assert reports[0].touched != reports[1].touched


def test_a_database_without_the_totesys_schema_is_refused(source_dsn: str) -> None:
    with (
        connect(source_dsn) as conn,
        pytest.raises(SourceSchemaMissingError, match="run `totes seed` first"),
    ):
        mutate(conn, seed=1, changes=1)
