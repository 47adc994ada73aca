"""Every stage the state machine retries is safe to repeat: a fault at its most awkward
moment, then the same invocation again, leaves the warehouse and the lake exact."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.pipeline_harness import Pipeline
from totes.db import connect
from totes.errors import DatabaseTransientError
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
)
from totes.transient import aws_transient_fault
from totes.warehouse.reconcile import reconcile


class FailingPuts:
    """An S3 client whose puts of the keys ``fails`` picks raise ``SlowDown``, as a throttled
    S3 does once botocore's attempts are spent, until ``healthy`` is set."""

    def __init__(self, s3: Any, fails: Callable[[str], bool]) -> None:
        self._s3, self._fails = s3, fails
        self.healthy = False
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **arguments: Any) -> Any:
        if not self.healthy and self._fails(arguments["Key"]):
            self.refused.append(arguments["Key"])
            raise ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
        return self._s3.put_object(**arguments)


@pytest.fixture
def pipeline(warehouse_pipeline: Pipeline) -> Pipeline:
    return warehouse_pipeline


def _exact(pipeline: Pipeline) -> None:
    assert pipeline.warehouse_dsn is not None
    with connect(pipeline.source_dsn) as source, connect(pipeline.warehouse_dsn) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


def _transient(call: Callable[[], object]) -> Exception:
    """Run a stage that must fail transiently; return the error its handler would raise."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 (classified below, as the handler does)
        call()
    if isinstance(raised.value, DatabaseTransientError):
        return raised.value
    named = aws_transient_fault(raised.value)
    assert named is not None, f"not transient: {raised.value!r}"
    return named


def _load_all(pipeline: Pipeline) -> None:
    for target in (*GOLD_DIMENSIONS, *FACT_TABLES):
        pipeline.load(target)


def test_ingest_repeated_after_its_manifest_failed_moves_the_watermark_once(
    pipeline: Pipeline,
) -> None:
    # Given an ingest whose parts reached S3 but whose manifest did not
    healthy_s3 = pipeline.s3
    failing = FailingPuts(healthy_s3, lambda key: key.startswith("_manifests/sales_order/"))
    pipeline.s3 = failing
    pipeline.runs += 1
    _transient(lambda: pipeline.ingest("sales_order"))
    mark = pipeline.dynamodb.get_item(
        TableName="watermarks", Key={"table_name": {"S": "sales_order"}}
    ).get("Item")

    # When the state machine runs it again, and the rest of the pipeline after it
    failing.healthy = True
    pipeline.ingest("sales_order")
    for table in SOURCE_TABLES:
        pipeline.ingest(table)
    for target in GOLD_TABLES:
        pipeline.transform(target)
    _load_all(pipeline)

    # Then the failed attempt moved no watermark, and every order is in the warehouse once
    assert failing.refused
    assert mark is None
    _exact(pipeline)


def test_transform_repeated_after_its_state_write_failed_publishes_its_file_once(
    pipeline: Pipeline,
) -> None:
    # Given the sources ingested, and a transform whose state write (its commit) failed
    pipeline.runs += 1
    for table in SOURCE_TABLES:
        pipeline.ingest(table)
    healthy_s3 = pipeline.s3
    failing = FailingPuts(healthy_s3, lambda key: key == "_state/transform/fact_sales_order.json")
    pipeline.s3 = failing
    _transient(lambda: pipeline.transform("fact_sales_order"))
    published = pipeline.keys("fact_sales_order/")

    # When it runs again, and the rest after it
    failing.healthy = True
    for target in GOLD_TABLES:
        pipeline.transform(target)
    _load_all(pipeline)

    # Then the failed attempt published nothing, and the warehouse holds every version once
    assert failing.refused
    assert published == []
    assert len(pipeline.keys("fact_sales_order/")) == 1
    _exact(pipeline)


def test_load_repeated_after_its_session_died_inside_the_transaction_loads_each_row_once(
    pipeline: Pipeline,
) -> None:
    # Given everything transformed, and a warehouse whose server ends the session of the
    # first load that writes its ledger row: inside the transaction with the file's rows
    pipeline.run_through_dimensions()
    assert pipeline.warehouse_dsn is not None
    with connect(pipeline.warehouse_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE faults")
        conn.execute(
            "CREATE FUNCTION end_session_once() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF nextval('faults') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
            "PERFORM pg_sleep(1); END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER end_session BEFORE INSERT ON load_ledger "
            "FOR EACH ROW EXECUTE FUNCTION end_session_once()"
        )
        # Load turns per-row triggers off for its bulk insert; this one must fire regardless.
        conn.execute("ALTER TABLE load_ledger ENABLE ALWAYS TRIGGER end_session")

    # When the fact load fails with the session, then it is a transient fault
    error = _transient(lambda: pipeline.load("fact_sales_order"))
    assert "AdminShutdown" in str(error)
    with connect(pipeline.warehouse_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM fact_sales_order").fetchone() == (0,)

    # When the state machine runs it again
    pipeline.load("fact_sales_order")
    for target in FACT_TABLES:
        pipeline.load(target)

    # Then each version is in the warehouse once: nothing of the dead transaction remained
    _exact(pipeline)
