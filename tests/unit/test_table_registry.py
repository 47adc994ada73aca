"""The table registry: one entry per table, and every entry complete enough to run."""

from __future__ import annotations

import inspect

import pytest

from totes.tables import (
    DIMENSIONS,
    FACTS,
    GOLD_TABLES,
    SOURCE,
    WAREHOUSE,
    ColumnType,
    Kind,
    WarehouseTable,
    largest_first,
)
from totes.transform.shapes import shape_of


@pytest.mark.parametrize("table", GOLD_TABLES)
def test_each_table_with_gold_files_has_a_shape_function_taking_its_sources(table: str) -> None:
    # Given a warehouse table that transform shapes
    described = WAREHOUSE[table]
    # When its shape function is looked up
    parameters = inspect.signature(shape_of(table)).parameters
    # Then it takes one table per source, and every source is a totesys table
    assert len(parameters) == len(described.sources)
    assert set(described.sources) <= set(SOURCE)


@pytest.mark.parametrize("fact", FACTS, ids=lambda fact: fact.name)
def test_every_fact_is_keyed_partitioned_and_references_only_dimensions(
    fact: WarehouseTable,
) -> None:
    # Then the fact has a record key for the lake, a lake partition, version stamps, and
    # each column it references holds the referenced dimension's key type
    assert fact.record_key
    assert fact.lake_partition
    assert {"last_updated_date", "last_updated_time"} <= set(fact.column_names)
    assert fact.key in fact.column_names
    for column, dimension in fact.references.items():
        assert WAREHOUSE[dimension].kind is Kind.DIMENSION
        assert column in fact.column_names
    assert fact.date_columns
    assert all(
        next(c for c in fact.columns if c.name == name).type is ColumnType.DATE
        for name in fact.date_columns
    )
    assert fact.rebuild_sql


def test_every_dimension_is_keyed_by_its_first_column_and_rebuilt_unless_derived() -> None:
    for dimension in DIMENSIONS:
        assert dimension.column_names[0] == dimension.key
        assert not dimension.record_key
        assert not dimension.lake_partition
        assert bool(dimension.rebuild_sql) == dimension.has_gold_files, dimension.name


def test_tables_of_one_side_never_share_a_size_rank_so_the_map_order_is_fixed() -> None:
    for side in (SOURCE, WAREHOUSE):
        ranks = [table.size_rank for table in side.values()]
        assert sorted(ranks) == list(range(1, len(ranks) + 1))
    assert largest_first(WAREHOUSE)[:2] == ["dim_transaction", "fact_payment"]
