"""The ingest Lambda handler as the Lambda service calls it: event in, payload out, and the
structured logs and EMF metrics CloudWatch receives."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from lambdas.ingest.handler import handler
from tests.lambda_context import FakeContext
from totes.db import connect
from totes.errors import (
    InvalidEventError,
    InvalidSettingError,
    SecretNotFoundError,
    SourceSchemaDriftError,
)
from totes.names import METRICS_NAMESPACE, SERVICE_NAME, MetricName

BUCKET, WATERMARKS = "ingested-bucket", "watermarks-table"


@pytest.fixture
def deployed(s3: Any, dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resources and environment the CDK stack gives the function."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    dynamodb.create_table(
        TableName=WATERMARKS,
        KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("INGESTED_BUCKET", BUCKET)
    monkeypatch.setenv("WATERMARK_TABLE", WATERMARKS)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)


def test_the_handler_returns_counts_and_emits_metrics_and_a_correlated_log(
    deployed: None,
    seeded_source_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    monkeypatch.setenv("TOTES_SOURCE_DSN", seeded_source_dsn)
    payload = handler({"table": "sales_order", "run_id": "exec-42"}, FakeContext("totes-ingest"))
    records = stdout_records()

    assert payload["rows"] == 112
    assert payload["table"] == "sales_order"
    assert payload["manifest_key"].startswith("_manifests/sales_order/")
    assert len(json.dumps(payload)) < 1_000  # keys and counts, never rows

    # And the per-table figures are fields of the log line, not metrics (each name and
    # table would be a custom metric billed every month)
    log = next(r for r in records if r.get("message") == "ingested")
    assert (log["table"], log["rows"]) == ("sales_order", 112)
    assert log["bytes_written"] > 0
    assert log["duration_ms"] > 0
    for emf in (r for r in records if "_aws" in r):
        for directive in emf["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == METRICS_NAMESPACE
            assert directive["Dimensions"] == [["service"]]
        assert emf["service"] == SERVICE_NAME

    # And the schema drift counts go out for the alarm, zeros included, so that it clears
    assert _alarm_metrics(records) == {
        MetricName.UNEXPECTED_COLUMNS: 0.0,
        MetricName.MISSING_COLUMNS: 0.0,
    }
    assert log["correlation_id"] == "exec-42"
    assert log["table"] == "sales_order"
    assert log["cursor_to"][1] > 0
    assert "password" not in json.dumps(records)


def test_a_malformed_event_is_refused_by_name(deployed: None) -> None:
    with pytest.raises(InvalidEventError, match="ingest event: table is not set"):
        handler({"run_id": "exec-1"}, FakeContext("totes-ingest"))
    with pytest.raises(InvalidEventError, match=r"ingest event: max_rows: .*greater than 0"):
        handler({"table": "staff", "run_id": "exec-1", "max_rows": 0}, FakeContext("totes-ingest"))


def test_a_bad_limit_setting_is_named_before_anything_is_read(
    deployed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_MAX_ROWS", "lots")
    with pytest.raises(InvalidSettingError, match="environment variable INGEST_MAX_ROWS: "):
        handler({"table": "staff", "run_id": "exec-1"}, FakeContext("totes-ingest"))


def test_a_missing_secret_is_named_and_nothing_is_written(
    deployed: None, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOTES_SOURCE_DSN", raising=False)
    monkeypatch.setenv("SOURCE_SECRET_NAME", "no_such_secret")
    with pytest.raises(SecretNotFoundError, match="'no_such_secret' does not exist"):
        handler({"table": "staff", "run_id": "exec-1"}, FakeContext("totes-ingest"))
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_credentials_come_from_the_secret_when_no_dsn_is_given(
    deployed: None,
    secretsmanager: Any,
    seeded_source_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    parts = conninfo_to_dict(seeded_source_dsn)
    secretsmanager.create_secret(
        Name="totesys_db_credentials",
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
    monkeypatch.delenv("TOTES_SOURCE_DSN", raising=False)
    payload = handler({"table": "currency", "run_id": "exec-7"}, FakeContext("totes-ingest"))
    assert payload["rows"] == 3
    # And the secret's weaker sslmode is named in the result (the summary) and the log
    assert [(f["kind"], f["table"]) for f in payload["findings"]] == [("unverified_tls", "totesys")]
    warnings = [r["message"] for r in stdout_records() if r.get("level") == "WARNING"]
    assert any(text.startswith("1 connection not verified, sslmode=prefer") for text in warnings)


def _alarm_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    """The metrics published with the service dimension alone (what the alarms watch)."""
    found: dict[str, float] = {}
    for record in records:
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            if directive["Dimensions"] == [["service"]]:
                for metric in directive["Metrics"]:
                    found[metric["Name"]] = record[metric["Name"]][0]
    return found


def test_schema_drift_is_published_for_the_alarm_and_a_breaking_one_fails_the_invocation(
    deployed: None,
    seeded_source_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    monkeypatch.setenv("TOTES_SOURCE_DSN", seeded_source_dsn)
    context = FakeContext("totes-ingest")
    # Given a new column on design
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE design ADD COLUMN colour text")
    # When design is ingested, Then the column is a finding and a metric, with a warning
    payload = handler({"table": "design", "run_id": "exec-1"}, context)
    records = stdout_records()
    assert [f["kind"] for f in payload["findings"]] == ["unexpected_columns"]
    assert _alarm_metrics(records) == {
        MetricName.UNEXPECTED_COLUMNS: 1.0,
        MetricName.MISSING_COLUMNS: 0.0,
    }
    warning = next(r for r in records if r.get("level") == "WARNING")
    assert warning["message"] == "new source column colour: kept in the raw zone, not loaded"
    # Given a column the facts need, retyped
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE sales_order ALTER COLUMN unit_price TYPE text")
    # When sales orders are ingested, Then the invocation fails with the named error
    with pytest.raises(SourceSchemaDriftError, match="unit_price is text instead of numeric"):
        handler({"table": "sales_order", "run_id": "exec-2"}, context)
    # And the drift still reached the alarm's metric
    assert _alarm_metrics(stdout_records()) == {MetricName.MISSING_COLUMNS: 1.0}
