"""Every stage takes a bounded bite: transform consumes at most TRANSFORM_MAX_ROWS raw rows
per target (oldest batches first), load applies at most LOAD_MAX_FILES gold files, and each
says what it left for the next invocation (DESIGN.md section 11)."""

from __future__ import annotations

from typing import Any

import pytest

from totes.db import connect, row_counts
from totes.ingest.raw_rows import read_batch
from totes.tables import (
    GOLD_DIMENSIONS,
    SOURCE_TABLES,
)
from totes.warehouse.reconcile import reconcile
from totes.warehouse.schema import init_warehouse

from .pipeline_harness import INGESTED, Pipeline, create_resources

BATCH = 40


@pytest.fixture
def pipeline(s3: Any, dynamodb: Any, seeded_source_dsn: str, warehouse_dsn: str) -> Pipeline:
    create_resources(s3, dynamodb)
    with connect(warehouse_dsn) as conn:
        init_warehouse(conn)
    pipeline = Pipeline(
        s3=s3, dynamodb=dynamodb, source_dsn=seeded_source_dsn, warehouse_dsn=warehouse_dsn
    )
    pipeline.runs = 1
    return pipeline


def _sales_orders(dsn: str) -> int:
    with connect(dsn) as conn:
        return row_counts(conn, ("sales_order",))["sales_order"]


def _ingest_in_batches(pipeline: Pipeline, table: str) -> list[list[int]]:
    """Ingest a whole table in batches of BATCH rows; the source keys of each batch."""
    keys = []
    while True:
        result = pipeline.ingest(table, max_rows=BATCH)
        if result.manifest_key:
            _, rows = read_batch(pipeline.s3, INGESTED, result.manifest_key)
            keys.append(rows.column(f"{table}_id").to_pylist())
        if not result.has_more:
            return keys


def test_transform_consumes_the_oldest_batches_up_to_its_row_limit_then_the_rest(
    pipeline: Pipeline,
) -> None:
    # Given three or more raw batches of sales orders waiting for transform
    batches = _ingest_in_batches(pipeline, "sales_order")
    total = _sales_orders(pipeline.source_dsn)
    assert len(batches) >= 3
    assert sum(map(len, batches)) == total

    # When transform runs with room for two batches
    first = pipeline.transform("fact_sales_order", max_rows=2 * BATCH)

    # Then it consumed exactly the two oldest, and says how much is left
    assert first.rows == 2 * BATCH
    gold = pipeline.parquet(first.gold_key or "").column("sales_order_id").to_pylist()
    assert sorted(gold) == sorted(batches[0] + batches[1])
    assert first.payload()["has_more"] is True
    assert (first.batches_remaining, first.remaining) == (len(batches) - 2, total - 2 * BATCH)

    # When it runs again until it has nothing left
    later = [pipeline.transform("fact_sales_order", max_rows=2 * BATCH)]
    while later[-1].payload()["has_more"]:
        later.append(pipeline.transform("fact_sales_order", max_rows=2 * BATCH))

    # Then every sales order reached a gold file exactly once, and nothing is left
    keys = pipeline.gold("fact_sales_order").column("sales_order_id").to_pylist()
    assert sorted(keys) == sorted(key for batch in batches for key in batch)
    assert (later[-1].batches_remaining, later[-1].remaining) == (0, 0)


def test_a_batch_larger_than_the_limit_is_still_consumed_whole(pipeline: Pipeline) -> None:
    # Given one raw batch of every sales order
    pipeline.ingest("sales_order")
    total = _sales_orders(pipeline.source_dsn)

    # When transform's limit is smaller than that batch
    result = pipeline.transform("fact_sales_order", max_rows=BATCH)

    # Then the batch is not split (and not skipped): it is consumed whole, nothing left
    assert (result.rows, result.remaining, result.payload()["has_more"]) == (total, 0, False)


def test_load_applies_at_most_its_file_limit_oldest_first_and_the_next_load_the_rest(
    pipeline: Pipeline,
) -> None:
    # Given the dimensions loaded, and three or more gold files of sales orders
    for table in SOURCE_TABLES:
        if table != "sales_order":
            pipeline.ingest(table)
    for target in GOLD_DIMENSIONS:
        pipeline.transform(target)
        pipeline.load(target)
    batches = _ingest_in_batches(pipeline, "sales_order")
    files = []
    while not files or files[-1].payload()["has_more"]:
        files.append(pipeline.transform("fact_sales_order", max_rows=BATCH))
    assert len(files) == len(batches) >= 3

    # When load may apply two files
    first = pipeline.load("fact_sales_order", max_files=2)

    # Then it applied the two oldest and says how many wait for the next load
    assert [outcome.key for outcome in first.applied] == [file.gold_key for file in files[:2]]
    assert first.rows_loaded == len(batches[0]) + len(batches[1])
    assert first.payload()["has_more"] is True
    assert first.payload()["files_remaining"] == len(files) - 2

    # When loads run until nothing is left
    rest = [pipeline.load("fact_sales_order", max_files=2)]
    while rest[-1].payload()["has_more"]:
        rest.append(pipeline.load("fact_sales_order", max_files=2))

    # Then the warehouse holds every sales order once, as a rebuild would
    assert rest[-1].payload()["files_remaining"] == 0
    assert pipeline.warehouse_dsn is not None
    with connect(pipeline.source_dsn) as source, connect(pipeline.warehouse_dsn) as warehouse:
        counts = row_counts(warehouse, ("fact_sales_order",))
        assert counts["fact_sales_order"] == _sales_orders(pipeline.source_dsn)
        problems = [p for p in reconcile(source, warehouse) if "sales_order" in str(p)]
    assert problems == []
