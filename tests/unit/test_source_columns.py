"""The source column contract: what ingest accepts, reports, or refuses before writing."""

from __future__ import annotations

import pytest

from totes.source.columns import (
    OPTIONAL_COLUMNS,
    SOURCE_COLUMN_KINDS,
    ColumnKind,
    schema_drift,
)

_TYPE_OF_KIND = {
    ColumnKind.INTEGER: "integer",
    ColumnKind.TEXT: "text",
    ColumnKind.NUMERIC: "numeric",
    ColumnKind.TIMESTAMP: "timestamp without time zone",
    ColumnKind.BOOLEAN: "boolean",
}


def _as_created(table: str) -> dict[str, str]:
    return {name: _TYPE_OF_KIND[kind] for name, kind in SOURCE_COLUMN_KINDS[table].items()}


@pytest.mark.parametrize("table", sorted(SOURCE_COLUMN_KINDS))
def test_every_table_as_created_matches_the_contract(table: str) -> None:
    drift = schema_drift(table, _as_created(table))
    assert (drift.unexpected, drift.missing, drift.retyped, drift.missing_optional) == (
        [],
        [],
        {},
        [],
    )


def test_the_same_kind_under_another_type_name_is_no_drift() -> None:
    columns = _as_created("currency") | {"currency_code": "character varying"}
    columns |= {"currency_id": "bigint"}
    assert not schema_drift("currency", columns).retyped


def test_a_new_column_is_reported_and_breaks_nothing() -> None:
    drift = schema_drift("design", _as_created("design") | {"colour": "text"})
    assert drift.unexpected == ["colour"]
    assert not drift.breaks_transforms


@pytest.mark.parametrize(
    ("table", "column"),
    sorted((t, c) for t, columns in OPTIONAL_COLUMNS.items() for c in columns),
)
def test_losing_a_column_no_transform_reads_is_reported_and_breaks_nothing(
    table: str, column: str
) -> None:
    columns = _as_created(table)
    del columns[column]
    drift = schema_drift(table, columns)
    assert drift.missing_optional == [column]
    assert not drift.breaks_transforms


def test_losing_or_retyping_a_column_a_transform_needs_breaks_the_batch() -> None:
    columns = _as_created("sales_order")
    del columns["units_sold"]
    columns["unit_price"] = "text"
    columns["agreed_delivery_date"] = "date"
    drift = schema_drift("sales_order", columns)
    assert drift.breaks_transforms
    assert drift.describe_breakage() == (
        "sales_order lacks units_sold; sales_order.unit_price is text instead of numeric; "
        "sales_order.agreed_delivery_date is date instead of text"
    )


def test_a_type_the_pipeline_cannot_read_counts_as_retyped() -> None:
    columns = _as_created("payment") | {"paid": "jsonb"}
    assert schema_drift("payment", columns).retyped == {"paid": "jsonb instead of boolean"}
