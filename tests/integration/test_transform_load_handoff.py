"""The hand-off from transform to load: load applies only the gold files that transform
committed. Two transforms of one target race; the one whose state write loses leaves its
file staged, never published, never loaded, and the warehouse equals a rebuild."""

from __future__ import annotations

from typing import Any

import pytest

from totes.db import connect
from totes.errors import TransformStateConflictError
from totes.ingest.watermarks import DynamoWatermarkStore
from totes.names import LOAD_LEDGER_TABLE
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
)
from totes.transform.stage import TransformRequest, TransformSettings, transform_target
from totes.warehouse.reconcile import reconcile

from .pipeline_harness import INGESTED, PROCESSED, WATERMARKS, Pipeline

#: Each target, the source table whose rows change between the racers, and the change.
RACES = {
    "dim_staff": (
        "staff",
        "UPDATE staff SET first_name = first_name || %s, "
        "last_updated = localtimestamp(3) + %s * interval '1 ms' WHERE staff_id %% 3 = 0",
    ),
    "fact_sales_order": (
        "sales_order",
        "UPDATE sales_order SET units_sold = units_sold + length(%s), "
        "last_updated = localtimestamp(3) + %s * interval '1 ms' WHERE sales_order_id %% 5 = 0",
    ),
}


class RivalCommitsFirst:
    """An S3 client for the first transform: just before its state write, a rival runs.

    The rival sees newer source rows (``change`` ran and was ingested), transforms the
    same target to the end and commits; the first transform's write then loses.
    """

    def __init__(self, s3: Any, target: str, rival: Any) -> None:
        self._s3, self._target, self._rival = s3, target, rival
        self.rival_result: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **arguments: Any) -> Any:
        if arguments["Key"] == f"_state/transform/{self._target}.json" and not self.rival_result:
            self.rival_result = self._rival()
        return self._s3.put_object(**arguments)


@pytest.fixture
def pipeline(warehouse_pipeline: Pipeline) -> Pipeline:
    return warehouse_pipeline


@pytest.mark.parametrize("target", list(RACES))
def test_the_transform_that_loses_the_race_never_reaches_the_warehouse(
    pipeline: Pipeline, target: str
) -> None:
    source_table, change = RACES[target]
    settings = TransformSettings(
        ingested_bucket=INGESTED, processed_bucket=PROCESSED, watermark_table=WATERMARKS
    )
    watermarks = DynamoWatermarkStore(pipeline.dynamodb, WATERMARKS)
    # Given a loaded warehouse, and a change of the target's source ingested
    pipeline.run()
    pipeline.runs += 1

    def changed(suffix: str, step: int) -> None:
        with connect(pipeline.source_dsn) as conn:
            conn.execute(change, (suffix, step))
        pipeline.ingest(source_table)

    changed("-older", 1)

    def rival() -> Any:
        # A second execution: the source changed again, it ingests and transforms it all
        changed("-newer", 2)
        return transform_target(
            TransformRequest(target=target, run_id="rival"),
            settings,
            s3=pipeline.s3,
            watermarks=watermarks,
        )

    # When one transform reads the older batch and, before it commits, the rival commits
    racing = RivalCommitsFirst(pipeline.s3, target, rival)
    with pytest.raises(TransformStateConflictError):
        transform_target(
            TransformRequest(target=target, run_id="loser"),
            settings,
            s3=racing,
            watermarks=watermarks,
        )
    for dimension in GOLD_DIMENSIONS:
        pipeline.load(dimension)
    for fact in FACT_TABLES:
        pipeline.load(fact)

    # Then the loser's file is staged only: not in the gold zone, not in the ledger
    assert racing.rival_result is not None
    assert racing.rival_result.files == 1
    gold = pipeline.keys(f"{target}/")
    assert racing.rival_result.gold_key in gold
    assert not [key for key in gold if "/run=loser/" in key]
    assert [k for k in pipeline.keys(f"_staging/transform/{target}/") if k not in gold]
    with connect(pipeline.warehouse_dsn or "") as conn:
        ledger = {
            row[0] for row in conn.execute(f"SELECT file_key FROM {LOAD_LEDGER_TABLE}").fetchall()
        }
    assert racing.rival_result.gold_key in ledger
    assert not [key for key in ledger if "/run=loser/" in key]
    # And the warehouse equals a rebuild from the current source (the newer values)
    with connect(pipeline.source_dsn) as source, connect(pipeline.warehouse_dsn or "") as wh:
        assert reconcile(source, wh) == []
