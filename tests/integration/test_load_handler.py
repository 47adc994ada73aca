"""The load Lambda handler as the Lambda service calls it: event in, payload out, and the
structured logs and EMF metrics CloudWatch receives."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.conninfo import conninfo_to_dict

from lambdas.load import handler as load_handler
from lambdas.load.handler import handler
from tests.lambda_context import FakeContext
from totes import aws, credentials
from totes.aws import client
from totes.db import connect
from totes.errors import (
    DatabaseUnreachableError,
    InvalidEventError,
    InvalidSettingError,
    SecretNotFoundError,
)
from totes.names import (
    LOAD_LEDGER_TABLE,
    METRICS_NAMESPACE,
    REJECTS_PREFIX,
    SERVICE_NAME,
    MetricName,
)
from totes.results import LoadResult
from totes.warehouse.star import STAR_SCHEMAS
from totes.zones.gold import unsequenced_prefix

from .pipeline_harness import load_counts

BUCKET = "processed-bucket"
NEWEST = datetime(2024, 11, 14, 9, 26, 10, 123_000, tzinfo=UTC)


def _put(s3: Any, target: str, run_id: str, rows: list[dict[str, Any]]) -> str:
    key = f"{unsequenced_prefix(target, run_id)}part-0.parquet"
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=STAR_SCHEMAS[target]), sink)
    s3.put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue())
    return key


def _sales_order(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "sales_order_id": n,
        "created_date": date(2024, 11, 13),
        "created_time": time(8, 0),
        "last_updated_date": NEWEST.date() if n == 1 else date(2024, 11, 1),
        "last_updated_time": NEWEST.time() if n == 1 else time(23, 59, 59, 999_000),
        "sales_staff_id": 1,
        "counterparty_id": 1,
        "units_sold": 10,
        "unit_price": Decimal("3.99"),
        "currency_id": 1,
        "design_id": 1,
        "agreed_payment_date": date(2024, 11, 20),
        "agreed_delivery_date": date(2024, 11, 18),
        "agreed_delivery_location_id": 1,
        **changes,
    }


DIMENSIONS: dict[str, dict[str, Any]] = {
    "dim_staff": {
        "staff_id": 1,
        "first_name": "Jeremie",
        "last_name": "Franey",
        "department_name": "Purchasing",
        "location": "Manchester",
        "email_address": "jeremie.franey@terrifictotes.com",
    },
    "dim_counterparty": {
        "counterparty_id": 1,
        "counterparty_legal_name": "Fahey and Sons",
        "counterparty_legal_address_line_1": "605 Haskell Trafficway",
        "counterparty_legal_address_line_2": "Axel Freeway",
        "counterparty_legal_district": None,
        "counterparty_legal_city": "East Bobbie",
        "counterparty_legal_postal_code": "88253-4257",
        "counterparty_legal_country": "Heard Island and McDonald Islands",
        "counterparty_legal_phone_number": "9687 937447",
    },
    "dim_currency": {"currency_id": 1, "currency_code": "GBP", "currency_name": "British Pound"},
    "dim_design": {
        "design_id": 1,
        "design_name": "Wooden",
        "file_location": "/usr",
        "file_name": "wooden-20220717-npgz.json",
    },
    "dim_location": {
        "location_id": 1,
        "address_line_1": "6826 Herzog Via",
        "address_line_2": None,
        "district": "Avon",
        "city": "New Patienceburgh",
        "postal_code": "28441",
        "country": "Turkey",
        "phone": "1803 637401",
    },
}


def _forget_clients() -> None:
    """A new container's clients and secrets: the function's, its secrets provider's and
    the lake's are made once per process, for the endpoint of the moment."""
    client.cache_clear()
    aws._session.cache_clear()
    credentials._secrets.cache_clear()
    load_handler._lake.cache_clear()


@pytest.fixture
def s3(moto_server: str) -> Iterator[Any]:
    """S3 on a moto server: the lake's writes go through pyarrow's own S3 client, which
    moto's in-process mock does not intercept."""
    _forget_clients()
    yield boto3.client("s3", region_name="eu-west-2")
    _forget_clients()


@pytest.fixture
def secretsmanager(s3: Any) -> Any:
    """Secrets Manager on the same moto server."""
    return boto3.client("secretsmanager", region_name="eu-west-2")


@pytest.fixture
def deployed(s3: Any, warehouse_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The resources and environment the CDK stack gives the function; returns the warehouse."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    boto3.client("glue", region_name="eu-west-2").create_database(DatabaseInput={"Name": "lake"})
    monkeypatch.setenv("PROCESSED_BUCKET", BUCKET)
    monkeypatch.setenv("LAKE_DATABASE", "lake")
    # Quarantine missing references at once rather than after the usual wait.
    monkeypatch.setenv("LOAD_REJECT_AFTER_SECONDS", "0")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)
    monkeypatch.setenv("TOTES_WAREHOUSE_DSN", warehouse_dsn)
    return warehouse_dsn


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _metric_blobs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if "_aws" in record]


def _load_dimensions(s3: Any) -> None:
    for target, row in DIMENSIONS.items():
        _put(s3, target, "exec-41", [row])
        handler({"target": target, "run_id": "exec-41"}, FakeContext("totes-load"))


def test_a_fact_load_returns_counts_and_emits_metrics_freshness_and_correlated_logs(
    deployed: str, s3: Any, stdout_records: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given the dimensions loaded, and a fact file with one row whose design is unknown
    _load_dimensions(s3)
    stdout_records()
    rows = [_sales_order(1), _sales_order(2), _sales_order(3, design_id=404)]
    key = _put(s3, "fact_sales_order", "exec-42", rows)
    # When the load Lambda runs for the facts
    started = datetime.now(UTC)
    payload = handler(
        {"target": "fact_sales_order", "run_id": "exec-42"}, FakeContext("totes-load")
    )
    records = stdout_records()
    # Then it returns its counts (keys and counts, never rows: a small payload), which read
    # back into the load's result as they were
    assert len(json.dumps(payload)) < 2_000
    assert LoadResult.model_validate(payload).payload() == payload
    assert load_counts(payload) == {
        "table": "fact_sales_order",
        "run_id": "exec-42",
        "files": 1,
        "rows_loaded": 2,
        "rows_skipped": 0,
        "rows_rejected": 1,
        "files_waiting": 0,
        "has_more": False,
        "files_remaining": 0,
        "rows_replayed": 0,
        "findings": [
            {
                "kind": "rows_rejected",
                "table": "fact_sales_order",
                "stage": "load",
                "detail": "design_id not in dim_design (kept, and replayed when it arrives)",
                "count": 1,
                "examples": ["sales_order_id 3"],
                "where": [f"{REJECTS_PREFIX}/fact_sales_order/run=exec-42/part-0.load.parquet"],
            }
        ],
    }
    # And the per-table figures are fields of the log line, not metrics: every metric
    # goes out with the service dimension alone (what the alarms watch)
    blobs = _metric_blobs(records)
    assert all(
        directive["Dimensions"] == [["service"]]
        for blob in blobs
        for directive in blob["_aws"]["CloudWatchMetrics"]
    )
    log = next(r for r in records if r.get("message") == "loaded")
    assert (log["table"], log["rows_loaded"], log["rows_skipped"], log["rows_rejected"]) == (
        "fact_sales_order",
        2,
        0,
        1,
    )
    assert log["duration_ms"] > 0
    freshness_blob = next(blob for blob in blobs if MetricName.FRESHNESS_LAG_SECONDS in blob)
    rejected_blob = next(
        blob for blob in blobs if "table" not in blob and MetricName.ROWS_REJECTED in blob
    )
    # And the freshness lag goes out on its own, with the service dimension only
    freshness = freshness_blob["_aws"]["CloudWatchMetrics"][0]
    assert freshness["Namespace"] == METRICS_NAMESPACE
    assert freshness["Dimensions"] == [["service"]]
    assert [m["Name"] for m in freshness["Metrics"]] == [MetricName.FRESHNESS_LAG_SECONDS]
    assert "table" not in freshness_blob
    assert freshness_blob["service"] == SERVICE_NAME
    [lag] = freshness_blob[MetricName.FRESHNESS_LAG_SECONDS]
    expected = (started - NEWEST).total_seconds()
    assert expected - 1 < lag < expected + 60
    # And so does the rejected row, which the RowsRejected alarm watches
    assert rejected_blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert rejected_blob[MetricName.ROWS_REJECTED] == [1.0]
    # And the log lines carry the run as correlation id and the table, never a secret
    loaded = next(r for r in records if r.get("message") == "loaded")
    assert loaded["correlation_id"] == "exec-42"
    assert loaded["table"] == "fact_sales_order"
    assert loaded["rows_rejected"] == 1
    warning = next(r for r in records if r.get("level") == "WARNING")
    assert warning["message"] == (
        "1 row rejected: design_id not in dim_design (kept, and replayed when it arrives) "
        "(e.g. sales_order_id 3)"
    )
    file_line = next(r for r in records if r.get("message") == "file loaded")
    assert file_line["file_key"] == key
    assert file_line["rejects_key"] == (
        f"{REJECTS_PREFIX}/fact_sales_order/run=exec-42/part-0.load.parquet"
    )
    assert "password" not in json.dumps(records)


def test_a_dimension_load_emits_no_freshness_lag(
    deployed: str, s3: Any, stdout_records: Callable[[], list[dict[str, Any]]]
) -> None:
    _put(s3, "dim_currency", "exec-1", [DIMENSIONS["dim_currency"]])
    payload = handler({"target": "dim_currency", "run_id": "exec-1"}, FakeContext("totes-load"))
    blobs = _metric_blobs(stdout_records())
    assert payload["rows_loaded"] == 1
    # (a dimension has no versions to be late: no metric at all goes out)
    assert blobs == []


def test_an_idle_fact_load_still_reports_the_freshness_lag(
    deployed: str, s3: Any, stdout_records: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given facts loaded by an earlier run
    _load_dimensions(s3)
    _put(s3, "fact_sales_order", "exec-1", [_sales_order(1)])
    handler({"target": "fact_sales_order", "run_id": "exec-1"}, FakeContext("totes-load"))
    stdout_records()
    # When a run finds nothing new
    payload = handler({"target": "fact_sales_order", "run_id": "exec-2"}, FakeContext("totes-load"))
    # Then it loads nothing but the lag keeps growing where the alarm can see it
    records = stdout_records()
    assert payload["files"] == 0
    assert any(MetricName.FRESHNESS_LAG_SECONDS in blob for blob in _metric_blobs(records))
    assert next(r for r in records if r.get("message") == "nothing to load")["files_listed"] == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"run_id": "exec-1"}, "load event: target is not set"),
        ({"target": "dim_staff"}, "load event: run_id is not set"),
        ({"target": "dim_customer", "run_id": "exec-1"}, "not a warehouse table .got 'dim_"),
        ({"target": "staff", "run_id": "exec-1"}, "not a warehouse table .got 'staff'"),
        (["dim_staff"], "load event: .*valid dictionary"),
    ],
)
def test_a_malformed_event_is_refused_by_name_before_anything_is_touched(
    deployed: str, monkeypatch: pytest.MonkeyPatch, event: Any, message: str
) -> None:
    monkeypatch.setenv("TOTES_WAREHOUSE_DSN", "postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(InvalidEventError, match=message):
        handler(event, FakeContext("totes-load"))


def test_a_missing_bucket_setting_is_named(deployed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCESSED_BUCKET")
    with pytest.raises(InvalidSettingError, match="variable PROCESSED_BUCKET is not set"):
        handler({"target": "dim_staff", "run_id": "exec-1"}, FakeContext("totes-load"))


def _nothing_written(dsn: str, s3: Any) -> None:
    with connect(dsn) as conn:
        counts = conn.execute(
            f"SELECT (SELECT count(*) FROM {LOAD_LEDGER_TABLE}), (SELECT count(*) FROM dim_staff)"
        ).fetchone()
    assert counts == (0, 0)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{REJECTS_PREFIX}/")["KeyCount"] == 0


def test_a_missing_secret_is_named_and_nothing_is_written(
    deployed: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(s3, "dim_staff", "exec-1", [DIMENSIONS["dim_staff"]])
    monkeypatch.delenv("TOTES_WAREHOUSE_DSN")
    monkeypatch.setenv("WAREHOUSE_SECRET_NAME", "no_such_secret")
    with pytest.raises(SecretNotFoundError, match="'no_such_secret' does not exist"):
        handler({"target": "dim_staff", "run_id": "exec-1"}, FakeContext("totes-load"))
    _nothing_written(deployed, s3)


def test_an_unreachable_warehouse_host_is_named_and_nothing_is_written(
    deployed: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(s3, "dim_staff", "exec-1", [DIMENSIONS["dim_staff"]])
    monkeypatch.setenv("TOTES_WAREHOUSE_DSN", "postgresql://etl@127.0.0.1:9/warehouse")
    with pytest.raises(DatabaseUnreachableError, match="cannot reach PostgreSQL at etl@127"):
        handler({"target": "dim_staff", "run_id": "exec-1"}, FakeContext("totes-load"))
    _nothing_written(deployed, s3)


def test_credentials_come_from_the_secret_when_no_dsn_is_given(
    deployed: str, s3: Any, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = conninfo_to_dict(deployed)
    secretsmanager.create_secret(
        Name="postgres_db_credentials",
        SecretString=json.dumps(
            {
                "host": parts["host"],
                "port": int(parts.get("port") or 5432),
                "username": parts["user"],
                "password": "unused-with-trust-auth",
                "database": parts["dbname"],
                # The test's server offers no TLS: an explicit weakening, named in the result
                "sslmode": "prefer",
            }
        ),
    )
    monkeypatch.delenv("TOTES_WAREHOUSE_DSN")
    _put(s3, "dim_staff", "exec-7", [DIMENSIONS["dim_staff"]])
    payload = handler({"target": "dim_staff", "run_id": "exec-7"}, FakeContext("totes-load"))
    assert payload["rows_loaded"] == 1
    # And the secret's weaker sslmode is named in the result, which the summary gathers
    assert [(f["kind"], f["table"]) for f in payload["findings"]] == [
        ("unverified_tls", "warehouse")
    ]
