"""The stages' contracts: the events each Lambda accepts, the settings it reads from its
environment, the payload it returns; a bad event or setting is refused by name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from totes.errors import InvalidEventError, InvalidSettingError
from totes.ingest.stage import IngestRequest, IngestSettings
from totes.load.stage import LoadRequest, LoadSettings
from totes.names import EnvironmentVariable
from totes.results import (
    STAGE_RESULT,
    FileOutcome,
    IngestResult,
    LoadResult,
    TransformResult,
)
from totes.tables import GOLD_TABLES
from totes.transform.stage import TransformRequest, TransformSettings


@pytest.mark.parametrize("target", GOLD_TABLES)
def test_every_gold_table_is_a_valid_target_of_transform_and_load(target: str) -> None:
    event = {"target": target, "run_id": "exec-1"}
    assert LoadRequest.from_event(event) == LoadRequest(target=target, run_id="exec-1")
    assert TransformRequest.from_event(event) == TransformRequest(target=target, run_id="exec-1")


@pytest.mark.parametrize("parse", [LoadRequest.from_event, TransformRequest.from_event])
def test_dim_date_is_refused_as_a_target_because_load_derives_it_from_the_facts(
    parse: Any,
) -> None:
    with pytest.raises(InvalidEventError, match=r"target: .*derived by load from the facts"):
        parse({"target": "dim_date", "run_id": "exec-1"})


@pytest.mark.parametrize(
    ("parse", "event", "message"),
    [
        (LoadRequest.from_event, None, "load event: .*valid dictionary.*got None"),
        (LoadRequest.from_event, {"target": "dim_staff", "run_id": ""}, "load event: run_id: "),
        (LoadRequest.from_event, {"target": 7, "run_id": "e"}, "load event: target: .*got 7"),
        (LoadRequest.from_event, {"target": "load_ledger", "run_id": "e"}, "not a warehouse"),
        (LoadRequest.from_event, {"target": "DIM_STAFF", "run_id": "e"}, "got 'DIM_STAFF'"),
        (LoadRequest.from_event, {"target": "dim_staff"}, "load event: run_id is not set"),
        (TransformRequest.from_event, {"run_id": "e"}, "transform event: target is not set"),
        (IngestRequest.from_event, {"run_id": "e"}, "ingest event: table is not set"),
        (IngestRequest.from_event, {"table": "", "run_id": "e"}, "ingest event: table: "),
        (
            IngestRequest.from_event,
            {"table": "staff", "run_id": "e", "max_rows": True},
            "ingest event: max_rows: .*got True",
        ),
        (
            IngestRequest.from_event,
            {"table": "staff", "run_id": "e", "max_rows": "10"},
            "ingest event: max_rows: .*got '10'",
        ),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(
    parse: Any, event: Any, message: str
) -> None:
    with pytest.raises(InvalidEventError, match=message):
        parse(event)


def test_ingest_settings_come_from_the_environment_with_their_defaults() -> None:
    settings = IngestSettings.from_environment(
        {EnvironmentVariable.INGESTED_BUCKET: "raw", EnvironmentVariable.WATERMARK_TABLE: "wm"}
    )
    assert (settings.bucket, settings.watermark_table) == ("raw", "wm")
    assert (settings.max_rows, settings.lookback) == (500_000, timedelta(minutes=15))
    tuned = IngestSettings.from_environment(
        {
            EnvironmentVariable.INGESTED_BUCKET: "raw",
            EnvironmentVariable.WATERMARK_TABLE: "wm",
            EnvironmentVariable.INGEST_MAX_ROWS: "1000",
            EnvironmentVariable.INGEST_LOOKBACK_SECONDS: "30",
        }
    )
    assert (tuned.max_rows, tuned.lookback) == (1000, timedelta(seconds=30))


def test_load_and_transform_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROCESSED_BUCKET", "totes-processed")
    monkeypatch.setenv("INGESTED_BUCKET", "totes-ingested")
    monkeypatch.setenv("WATERMARK_TABLE", "totes-watermarks")
    monkeypatch.delenv("LOAD_FK_TRIGGERS", raising=False)
    assert LoadSettings.from_environment() == LoadSettings(bucket="totes-processed")
    monkeypatch.setenv("LOAD_FK_TRIGGERS", "always")
    assert LoadSettings.from_environment().fk_triggers == "always"
    assert TransformSettings.from_environment() == TransformSettings(
        ingested_bucket="totes-ingested",
        processed_bucket="totes-processed",
        watermark_table="totes-watermarks",
    )


@pytest.mark.parametrize(
    ("parse", "environment", "message"),
    [
        (LoadSettings.from_environment, {}, "environment variable PROCESSED_BUCKET is not set"),
        (
            LoadSettings.from_environment,
            {"PROCESSED_BUCKET": "p", "LOAD_FK_TRIGGERS": "never"},
            "environment variable LOAD_FK_TRIGGERS: .*'auto' or 'always'.*got 'never'",
        ),
        (
            LoadSettings.from_environment,
            {"PROCESSED_BUCKET": "p", "LOAD_REJECT_AFTER_SECONDS": "soon"},
            "environment variable LOAD_REJECT_AFTER_SECONDS",
        ),
        (
            IngestSettings.from_environment,
            {"INGESTED_BUCKET": "raw", "WATERMARK_TABLE": "wm", "INGEST_MAX_ROWS": "0"},
            "environment variable INGEST_MAX_ROWS: Input should be greater than 0",
        ),
        (
            IngestSettings.from_environment,
            {"INGESTED_BUCKET": "raw"},
            "environment variable WATERMARK_TABLE is not set",
        ),
        (
            TransformSettings.from_environment,
            {"PROCESSED_BUCKET": "p"},
            "environment variable INGESTED_BUCKET is not set",
        ),
        (
            TransformSettings.from_environment,
            {"PROCESSED_BUCKET": "p", "INGESTED_BUCKET": "raw"},
            "environment variable WATERMARK_TABLE is not set",
        ),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable(
    parse: Any, environment: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        parse(environment)


def test_the_load_payload_adds_up_the_files_and_leaves_out_those_another_loader_applied() -> None:
    # Given a load that applied two files, found one applied elsewhere and one waiting
    result = LoadResult(table="fact_sales_order", run_id="exec-1", files_remaining=3)
    for outcome in (
        FileOutcome(key="a", rows_in_file=10, rows_loaded=6, rows_rejected=1),
        FileOutcome(key="b", rows_in_file=5, rows_loaded=0),
        FileOutcome(key="c", rows_in_file=7, applied_elsewhere=True),
        FileOutcome(key="d", rows_in_file=4, deferred=True),
    ):
        result.record_file(outcome)
    # Then its payload counts only the files it applied, and reads back the same
    payload = result.payload()
    assert payload == {
        "stage": "load",
        "table": "fact_sales_order",
        "run_id": "exec-1",
        "findings": [],
        "duration_ms": 0.0,
        "files": 2,
        "rows_loaded": 6,
        "rows_skipped": 8,
        "rows_rejected": 1,
        "rows_replayed": 0,
        "files_waiting": 1,
        "files_listed": 0,
        "files_remaining": 3,
        "rows_exported_to_lake": 0,
        "newest_last_updated": None,
        "freshness_lag_seconds": None,
        "fk_triggers": True,
        "has_more": True,
    }
    assert STAGE_RESULT.validate_python(payload).payload() == payload


def test_the_ingest_and_transform_payloads_carry_keys_and_counts_only() -> None:
    ingest = IngestResult(
        table="staff",
        run_id="exec-1",
        rows=3,
        parts=1,
        bytes_written=120,
        has_more=True,
        remaining=9,
    )
    assert ingest.payload() == {
        "stage": "ingest",
        "table": "staff",
        "run_id": "exec-1",
        "findings": [],
        "duration_ms": 0.0,
        "rows": 3,
        "has_more": True,
        "parts": 1,
        "bytes_written": 120,
        "remaining": 9,
        "rereads_window": False,
        "manifest_key": None,
        "cursor_to": None,
        "skipped": None,
        "unexpected_columns": [],
        "missing_columns": [],
    }
    transform = TransformResult(
        table="dim_staff",
        run_id="exec-1",
        rows=20,
        files=1,
        batches=2,
        batches_remaining=1,
        remaining=40,
    )
    assert transform.payload() == {
        "stage": "transform",
        "table": "dim_staff",
        "run_id": "exec-1",
        "findings": [],
        "duration_ms": 0.0,
        "rows": 20,
        "files": 1,
        "batches": 2,
        "rows_rejected": 0,
        "gold_key": None,
        "rejects_key": None,
        "rows_consumed": 0,
        "batches_remaining": 1,
        "remaining": 40,
        "sources_listed": 0,
        "has_more": True,
    }
    for payload in (ingest.payload(), transform.payload()):
        assert STAGE_RESULT.validate_python(payload).payload() == payload
