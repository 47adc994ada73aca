"""The warehouse contract (DESIGN.md section 5), end to end through ingest, transform and load:

after any sequence of source inserts and updates and any number of pipeline runs, every
dimension equals a full rebuild from the current source, and each fact table holds exactly
one row per extracted version, including the current version of every source row.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from totes.db import connect, row_counts
from totes.tables import (
    FACT_TABLES,
    SOURCE_TABLES,
)
from totes.warehouse.reconcile import reconcile
from totes.warehouse.schema import init_warehouse
from totes_local.source.mutate import mutate
from totes_local.source.snapshot import load_snapshot

from .pipeline_harness import REGION, Pipeline, create_resources

_FACT_SOURCES = {
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}


def _versions(dsn: str, table: str) -> set[tuple[int, Any]]:
    with connect(dsn) as conn:
        return set(conn.execute(f"SELECT {table}_id, last_updated FROM {table}").fetchall())


def _fact_versions(dsn: str, fact: str) -> set[tuple[int, Any]]:
    key = f"{_FACT_SOURCES[fact]}_id"
    with connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT {key}, last_updated_date + last_updated_time FROM {fact}"
        ).fetchall()
    assert len(rows) == len(set(rows)), f"{fact} holds a version twice"
    return set(rows)


class Contract:
    """Runs the pipeline and remembers every version each run could extract."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.extracted: dict[str, set[tuple[int, Any]]] = {fact: set() for fact in FACT_TABLES}

    def run(self) -> None:
        for fact, table in _FACT_SOURCES.items():
            self.extracted[fact] |= _versions(self.pipeline.source_dsn, table)
        self.pipeline.run()

    def check(self) -> None:
        source, warehouse = self.pipeline.source_dsn, self.pipeline.warehouse_dsn
        assert warehouse is not None
        with connect(source) as source_conn, connect(warehouse) as warehouse_conn:
            problems = reconcile(source_conn, warehouse_conn)
        assert not problems, "\n".join(map(str, problems))
        for fact in FACT_TABLES:
            assert _fact_versions(warehouse, fact) == self.extracted[fact], fact


@pytest.fixture
def aws_session(aws_credentials: None) -> Callable[[], tuple[Any, Any]]:
    """A factory of fresh moto accounts (one per hypothesis example)."""

    def fresh() -> tuple[Any, Any]:
        return boto3.client("s3", region_name=REGION), boto3.client("dynamodb", region_name=REGION)

    return fresh


def _department_move(dsn: str, rng: random.Random) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "UPDATE department SET location = %s, "
            "last_updated = greatest(localtimestamp(3), last_updated + interval '1 ms') "
            "WHERE department_id = %s",
            (rng.choice(["Sheffield", "York", None]), rng.randint(1, 8)),
        )


def _address_change(dsn: str, rng: random.Random) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "UPDATE address SET phone = %s, address_line_2 = NULLIF(%s, ''), "
            "last_updated = greatest(localtimestamp(3), last_updated + interval '1 ms') "
            "WHERE address_id = (SELECT min(address_id) + %s FROM address)",
            (f"{rng.randint(0, 9999):04d} 000000", rng.choice(["", "Flat 2"]), rng.randint(0, 4)),
        )


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("mutate"), st.integers(0, 10_000), st.integers(1, 40)),
        st.tuples(st.just("department"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("address"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("run"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_any_sequence_of_changes_and_runs_leaves_the_warehouse_equal_to_a_rebuild(
    steps: list[tuple[str, int, int]],
    fresh_database: Callable[..., str],
    small_source_template: str,
    aws_session: Callable[[], tuple[Any, Any]],
) -> None:
    # Given a seeded source, an empty warehouse and an empty AWS account
    source = fresh_database("source", template=small_source_template)
    warehouse = fresh_database("warehouse")
    with connect(warehouse) as conn:
        init_warehouse(conn)
    with mock_aws():
        s3, dynamodb = aws_session()
        create_resources(s3, dynamodb)
        contract = Contract(Pipeline(s3, dynamodb, source, warehouse))
        contract.run()
        # When changes and runs interleave in any order
        for kind, seed, changes in steps:
            rng = random.Random(seed)
            if kind == "mutate":
                with connect(source) as conn:
                    mutate(conn, seed=seed, changes=changes)
            elif kind == "department":
                _department_move(source, rng)
            elif kind == "address":
                _address_change(source, rng)
            else:
                contract.run()
        contract.run()
        # Then the warehouse is the rebuild, with every extracted fact version exactly once
        contract.check()


def test_rerunning_transform_and_load_for_the_same_run_changes_nothing(
    s3: Any, dynamodb: Any, seeded_source_dsn: str, warehouse_dsn: str
) -> None:
    create_resources(s3, dynamodb)
    pipeline = Pipeline(s3, dynamodb, seeded_source_dsn, warehouse_dsn)
    pipeline.run()
    with connect(warehouse_dsn) as conn:
        before = {
            t: conn.execute(
                f"SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x"
            ).fetchone()
            for t in FACT_TABLES
        }
    for target in pipeline.transformed:
        pipeline.transform(target)
        pipeline.load(target)
    with connect(warehouse_dsn) as conn:
        after = {
            t: conn.execute(
                f"SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x"
            ).fetchone()
            for t in FACT_TABLES
        }
    assert after == before


@pytest.mark.snapshot_data
@pytest.mark.slow
def test_the_real_snapshot_loads_completely_with_every_foreign_key_holding(
    s3: Any,
    dynamodb: Any,
    source_dsn: str,
    warehouse_dsn: str,
    snapshot_dir: Path,
) -> None:
    # Given the client's real snapshot as the source
    with connect(source_dsn) as conn:
        load_snapshot(conn, snapshot_dir)
        counts = row_counts(conn, SOURCE_TABLES)
    create_resources(s3, dynamodb)
    # When the pipeline runs once
    Pipeline(s3, dynamodb, source_dsn, warehouse_dsn).run()
    # Then every source row has its warehouse row and the warehouse equals the rebuild
    with connect(warehouse_dsn) as conn:
        loaded = row_counts(
            conn,
            (
                "fact_sales_order",
                "fact_purchase_order",
                "dim_transaction",
                "dim_design",
                "dim_staff",
                "dim_location",
                "dim_counterparty",
            ),
        )
    assert loaded == {
        "fact_sales_order": 11_175,
        "fact_purchase_order": counts["purchase_order"],
        "dim_transaction": counts["transaction"],
        "dim_design": counts["design"],
        "dim_staff": counts["staff"],
        "dim_location": counts["address"],
        "dim_counterparty": counts["counterparty"],
    }
    with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:
        assert reconcile(source, warehouse) == []


def test_a_batch_extracted_earlier_but_consumed_later_never_brings_back_old_values(
    s3: Any, dynamodb: Any, seeded_source_dsn: str, warehouse_dsn: str
) -> None:
    # Given a warehouse loaded with an address's first phone number, then its second
    create_resources(s3, dynamodb)
    pipeline = Pipeline(s3, dynamodb, seeded_source_dsn, warehouse_dsn)
    pipeline.run()
    [first_manifest] = pipeline.keys("_manifests/address/", bucket="ingested")
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "UPDATE address SET phone = '0999 999999', last_updated = '2030-01-01' "
            "WHERE address_id = 1"
        )
    pipeline.run()
    # When a batch holding the first number turns up late (an execution that lost the
    # race for the watermark still wrote its manifest)
    body = s3.get_object(Bucket="ingested", Key=first_manifest)["Body"].read()
    late_key = first_manifest.rsplit("/", 1)[0] + "/999999999999-late-execution.json"
    s3.put_object(Bucket="ingested", Key=late_key, Body=body)
    pipeline.run()
    # Then the warehouse keeps the current values: it still equals the rebuild
    with connect(seeded_source_dsn) as source, connect(warehouse_dsn) as warehouse:
        assert reconcile(source, warehouse) == []
        phone = warehouse.execute("SELECT phone FROM dim_location WHERE location_id = 1").fetchone()
    assert phone == ("0999 999999",)
