"""Transform: raw batches become star-shaped gold files, with history for facts and cascades
for dimensions (DESIGN.md sections 3, 5 and 7)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from totes.db import connect, row_counts
from totes.errors import TransformStateConflictError, WatermarkConflictError
from totes.names import TRANSFORM_STAGING_PREFIX, WATERMARK_PARTITION_KEY
from totes.results import TransformResult
from totes.tables import SOURCE_TABLES
from totes.warehouse.star import STAR_SCHEMAS

from .pipeline_harness import (
    PROCESSED,
    WATERMARKS,
    CrashBeforeAdvance,
    Pipeline,
    StaleReader,
    create_resources,
)


@pytest.fixture
def pipeline(s3: Any, dynamodb: Any, seeded_source_dsn: str) -> Pipeline:
    create_resources(s3, dynamodb)
    return Pipeline(s3=s3, dynamodb=dynamodb, source_dsn=seeded_source_dsn)


def _source_counts(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        return row_counts(conn, SOURCE_TABLES)


def test_a_first_run_shapes_every_source_row_into_its_star_table(pipeline: Pipeline) -> None:
    counts = _source_counts(pipeline.source_dsn)
    results = pipeline.run()
    expected = {
        "fact_sales_order": counts["sales_order"],
        "fact_purchase_order": counts["purchase_order"],
        "fact_payment": counts["payment"],
        "dim_staff": counts["staff"],
        "dim_location": counts["address"],
        "dim_counterparty": counts["counterparty"],
        "dim_currency": counts["currency"],
        "dim_design": counts["design"],
        "dim_payment_type": counts["payment_type"],
        "dim_transaction": counts["transaction"],
    }
    assert {target: results[target].rows for target in expected} == expected
    for target, result in results.items():
        # (named by the table's first commit, in this run, so keys sort in commit order)
        assert result.gold_key.startswith(f"{target}/seq=0000000001/run={pipeline.run_id}/")
        assert pipeline.gold(target).schema.equals(STAR_SCHEMAS[target], check_metadata=False)


def test_money_stays_decimal_and_times_keep_milliseconds(pipeline: Pipeline) -> None:
    with connect(pipeline.source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET unit_price = 0.10, created_at = '2024-02-29 23:59:59.999', "
            "last_updated = '2030-01-01 00:00:00.001' WHERE sales_order_id = 1"
        )
    pipeline.run()
    facts = {row["sales_order_id"]: row for row in pipeline.gold("fact_sales_order").to_pylist()}
    assert pipeline.gold("fact_sales_order").schema.field("unit_price").type == pa.decimal128(10, 2)
    assert facts[1]["unit_price"] == Decimal("0.10")
    assert facts[1]["created_date"] == date(2024, 2, 29)
    assert facts[1]["created_time"] == time(23, 59, 59, 999_000)
    assert facts[1]["last_updated_time"] == time(0, 0, 0, 1_000)


def test_a_rerun_with_no_new_batch_writes_nothing(pipeline: Pipeline) -> None:
    pipeline.run()
    files = pipeline.keys("")
    again = pipeline.run()
    assert {result.rows for result in again.values()} == {0}
    assert pipeline.keys("") == files


class _RecordingS3:
    """The S3 client, recording the name of every call made through it."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._s3, name)
        if callable(method) and name != "get_paginator":
            self.calls.append(name)
        return method


class _ReadsRecorded(_RecordingS3):
    """The S3 client, recording every call and the key of every object read."""

    def __init__(self, s3: Any) -> None:
        super().__init__(s3)
        self.keys_read: list[str] = []

    def get_object(self, **arguments: Any) -> Any:
        self.keys_read.append(arguments["Key"])
        return self._s3.get_object(**arguments)


def _new_batches(pipeline: Pipeline) -> None:
    """A new run's batches of every source table."""
    pipeline.runs += 1
    for table in SOURCE_TABLES:
        pipeline.ingest(table)


def _transform_through(pipeline: Pipeline, s3: Any, target: str) -> TransformResult:
    """Transform ``target`` with ``s3`` in place of the bucket client, put back afterwards."""
    real = pipeline.s3
    pipeline.s3 = s3
    try:
        return pipeline.transform(target)
    finally:
        pipeline.s3 = real


def _calls_of_next_transform(pipeline: Pipeline, target: str) -> list[str]:
    """The S3 calls the next transform of ``target`` makes."""
    recording = _RecordingS3(pipeline.s3)
    _transform_through(pipeline, recording, target)
    return recording.calls


def test_idle_runs_after_a_commit_touch_nothing_but_the_state_documents(
    pipeline: Pipeline,
) -> None:
    # Given a run that transformed every target (its files committed and published)
    pipeline.run()

    # When the next runs find no new batch
    idle_runs = [_RecordingS3(pipeline.s3), _RecordingS3(pipeline.s3)]
    for recording in idle_runs:
        pipeline.s3 = recording
        for table in SOURCE_TABLES:
            pipeline.ingest(table)
        for target in ("fact_sales_order", "dim_staff"):
            pipeline.transform(target)
        pipeline.s3 = recording._s3

    # Then each reads the two targets' state documents and nothing else: the run that
    # published the files cleared its pending list, so no HEAD and no write follow
    for recording in idle_runs:
        assert recording.calls.count("get_object") == 2
        assert "head_object" not in recording.calls
        assert "put_object" not in recording.calls


def _record_listings(pipeline: Pipeline) -> list[str]:
    """The prefix of every listing the pipeline's S3 client makes from now on."""
    prefixes: list[str] = []

    def recorded(params: dict[str, Any], **_: Any) -> None:
        prefixes.append(params["Prefix"])

    pipeline.s3.meta.events.register("provide-client-params.s3.ListObjectsV2", recorded)
    return prefixes


def test_an_idle_run_lists_no_manifests(pipeline: Pipeline) -> None:
    # Given a run that transformed every target
    pipeline.run()
    listings = _record_listings(pipeline)

    # When the next run finds no new batch
    again = pipeline.run()

    # Then no transform lists the raw zone: every watermark names a batch already consumed
    assert listings == []
    assert {result.sources_listed for result in again.values()} == {0}


def test_only_the_sources_with_a_new_batch_are_listed(pipeline: Pipeline) -> None:
    # Given a run that transformed every target, then a new batch of staff
    pipeline.run()
    _move_a_staff_member(pipeline.source_dsn)
    pipeline.ingest("staff")
    listings = _record_listings(pipeline)

    # When dim_staff (staff and department) is transformed
    result = pipeline.transform("dim_staff")

    # Then only staff's manifests are listed, and the change is transformed
    assert listings == ["_manifests/staff/"]
    assert (result.sources_listed, result.batches) == (1, 1)
    assert "moved@example.com" in _emails(pipeline, result)


def test_a_batch_whose_watermark_never_advanced_is_consumed_with_the_next_batch(
    pipeline: Pipeline,
) -> None:
    # Given a run that transformed every target, and a batch of staff whose ingest died
    # after writing the manifest, before advancing the watermark
    pipeline.run()
    _move_a_staff_member(pipeline.source_dsn)
    with pytest.raises(SystemExit):
        pipeline.ingest("staff", watermarks=CrashBeforeAdvance(pipeline.watermarks))
    # (the watermark still names a batch dim_staff consumed: nothing is listed yet)
    assert pipeline.transform("dim_staff").batches == 0

    # When the next ingest extracts the same rows again, and dim_staff is transformed
    pipeline.ingest("staff")
    result = pipeline.transform("dim_staff")

    # Then the batch left behind is consumed with the new one, and the change is in gold
    assert result.batches == 2
    assert "moved@example.com" in _emails(pipeline, result)


def test_a_batch_that_lost_the_race_to_advance_is_consumed_at_its_tables_next_batch(
    pipeline: Pipeline,
) -> None:
    # Given every target transformed, and two ingests of staff that read the same watermark:
    # the first advances it, and dim_staff consumes its batch
    pipeline.run()
    seen = pipeline.watermarks.read("staff")
    _move_a_staff_member(pipeline.source_dsn)
    pipeline.ingest("staff")
    assert pipeline.transform("dim_staff").batches == 1
    # And the second writes its manifest only then, and fails to advance
    with pytest.raises(WatermarkConflictError):
        pipeline.ingest("staff", watermarks=StaleReader(pipeline.watermarks, seen))
    assert pipeline.transform("dim_staff").batches == 0

    # When the next batch of staff arrives and dim_staff is transformed
    _move_a_staff_member(pipeline.source_dsn)
    pipeline.ingest("staff")
    result = pipeline.transform("dim_staff")

    # Then the batch that lost the race is consumed with it
    assert result.batches == 2


class _IngestedWhileRead:
    """The watermarks, with a new batch of staff landing as transform reads them."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def newest_manifests(self, tables: Sequence[str]) -> dict[str, str]:
        _move_a_staff_member(self.pipeline.source_dsn)
        self.pipeline.ingest("staff")
        return self.pipeline.watermarks.newest_manifests(tables)


def test_a_batch_named_by_the_watermarks_transform_reads_is_in_its_listing(
    pipeline: Pipeline,
) -> None:
    # Given every target transformed
    pipeline.run()

    # When a batch of staff lands as dim_staff's transform reads the watermarks
    result = pipeline.transform("dim_staff", watermarks=_IngestedWhileRead(pipeline))

    # Then that transform lists it and consumes it (the watermarks are read before the
    # listing, never after), and the next one finds nothing new
    assert result.batches == 1
    assert "moved@example.com" in _emails(pipeline, result)
    assert pipeline.transform("dim_staff").sources_listed == 0


def test_a_source_whose_batches_did_not_fit_the_bite_is_listed_until_they_are_consumed(
    pipeline: Pipeline,
) -> None:
    # Given every target transformed, then two batches of staff (one row each)
    pipeline.run()
    for _ in range(2):
        _move_a_staff_member(pipeline.source_dsn)
        pipeline.ingest("staff")
    # And a transform whose bite of one row took the first batch only
    first = pipeline.transform("dim_staff", max_rows=1)
    assert (first.batches, first.batches_remaining) == (1, 1)

    # When the next transforms run with no new batch
    second = pipeline.transform("dim_staff", max_rows=1)
    third = pipeline.transform("dim_staff", max_rows=1)

    # Then the next lists staff again and takes the batch left; the one after lists nothing
    assert (second.sources_listed, second.batches, second.has_more) == (1, 1, False)
    assert (third.sources_listed, third.batches) == (0, 0)


def test_a_watermark_naming_no_batch_is_listed_until_an_advance_names_one(
    pipeline: Pipeline,
) -> None:
    # Given every target transformed, and staff's watermark and dim_staff's state as an
    # earlier release wrote them (naming no manifest, recording none caught up with)
    pipeline.run()
    pipeline.dynamodb.update_item(
        TableName=WATERMARKS,
        Key={WATERMARK_PARTITION_KEY: {"S": "staff"}},
        UpdateExpression="REMOVE manifest",
    )
    state_key = "_state/transform/dim_staff.json"
    state = json.loads(pipeline.s3.get_object(Bucket=PROCESSED, Key=state_key)["Body"].read())
    del state["caught_up"]
    pipeline.s3.put_object(Bucket=PROCESSED, Key=state_key, Body=json.dumps(state).encode())

    # When dim_staff is transformed twice with nothing new, then after a new batch of staff,
    # then once more
    idle = [pipeline.transform("dim_staff") for _ in range(2)]
    _move_a_staff_member(pipeline.source_dsn)
    pipeline.ingest("staff")
    changed = pipeline.transform("dim_staff")
    after = pipeline.transform("dim_staff")

    # Then staff is listed every time until its watermark names a batch dim_staff consumed;
    # department, whose watermark names one, once (the state then records it caught up)
    assert [(r.sources_listed, r.batches) for r in idle] == [(2, 0), (1, 0)]
    assert (changed.sources_listed, changed.batches) == (1, 1)
    assert (after.sources_listed, after.batches) == (0, 0)


def test_a_run_that_stopped_before_clearing_its_pending_list_is_finished_by_the_next(
    pipeline: Pipeline,
) -> None:
    # Given a transform that published its file and stopped before clearing the list
    _new_batches(pipeline)
    with pytest.raises(SystemExit):
        _transform_through(pipeline, _StopsAtSecondStateWrite(pipeline.s3), "fact_sales_order")

    # When the next run finds nothing new
    calls = _calls_of_next_transform(pipeline, "fact_sales_order")

    # Then it checks the published file once and clears the list; one file, once
    assert (calls.count("head_object"), calls.count("put_object")) == (1, 1)
    assert len(pipeline.keys("fact_sales_order/")) == 1


def test_a_failed_clearing_of_the_pending_list_does_not_fail_the_transform(
    pipeline: Pipeline,
) -> None:
    # Given S3 failing the write that clears a transform's pending list
    _new_batches(pipeline)
    unavailable = ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "try again"}}, "PutObject"
    )

    # When the target is transformed
    failing = _StopsAtSecondStateWrite(pipeline.s3, unavailable)
    result = _transform_through(pipeline, failing, "fact_sales_order")

    # Then the invocation succeeds with its file published, and the next run clears the list
    assert result.gold_key
    assert pipeline.parquet(result.gold_key).num_rows == result.rows > 0
    calls = _calls_of_next_transform(pipeline, "fact_sales_order")
    assert (calls.count("head_object"), calls.count("put_object")) == (1, 1)


class _StopsAtSecondStateWrite:
    """The S3 client, raising ``error`` at the second write of a transform state document."""

    def __init__(self, s3: Any, error: BaseException | None = None) -> None:
        self._s3 = s3
        self.state_writes = 0
        self.error = error or SystemExit("crash injected after publishing, before clearing")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **arguments: Any) -> Any:
        if arguments["Key"].startswith("_state/transform/"):
            self.state_writes += 1
            if self.state_writes == 2:
                raise self.error
        return self._s3.put_object(**arguments)


def test_a_transform_publishes_the_file_it_wrote_without_reading_it_back(
    pipeline: Pipeline,
) -> None:
    # Given new batches of the sales orders
    _new_batches(pipeline)

    # When their target is transformed
    recording = _ReadsRecorded(pipeline.s3)
    result = _transform_through(pipeline, recording, "fact_sales_order")

    # Then the gold file is published from the bytes in hand: nothing is read back from
    # staging, and no HEAD asks whether it is published yet
    assert result.gold_key
    assert pipeline.parquet(result.gold_key).num_rows == result.rows > 0
    assert recording.keys_read
    assert not [key for key in recording.keys_read if key.startswith(TRANSFORM_STAGING_PREFIX)]
    assert "head_object" not in recording.calls


def test_a_department_move_re_emits_every_staff_row_of_that_department(
    pipeline: Pipeline,
) -> None:
    pipeline.run()
    with connect(pipeline.source_dsn) as conn:
        conn.execute(
            "UPDATE department SET location = 'Sheffield', last_updated = '2030-01-01' "
            "WHERE department_id = (SELECT department_id FROM staff ORDER BY staff_id LIMIT 1)"
        )
        movers = conn.execute(
            "SELECT count(*) FROM staff WHERE department_id = "
            "(SELECT department_id FROM department WHERE location = 'Sheffield')"
        ).fetchone()
    results = pipeline.run()
    latest = pipeline.parquet(results["dim_staff"].gold_key).to_pylist()
    assert results["dim_staff"].rows == len(latest) == _source_counts(pipeline.source_dsn)["staff"]
    assert sum(row["location"] == "Sheffield" for row in latest) == movers[0]


def test_an_address_change_reaches_locations_and_counterparties(pipeline: Pipeline) -> None:
    pipeline.run()
    with connect(pipeline.source_dsn) as conn:
        address_id = conn.execute(
            "SELECT legal_address_id FROM counterparty ORDER BY counterparty_id LIMIT 1"
        ).fetchone()[0]
        conn.execute(
            "UPDATE address SET phone = '0000 111111', last_updated = '2030-01-01' "
            "WHERE address_id = %s",
            (address_id,),
        )
    results = pipeline.run()
    locations = pipeline.parquet(results["dim_location"].gold_key).to_pylist()
    parties = pipeline.parquet(results["dim_counterparty"].gold_key).to_pylist()
    # (rows near the old watermark may be re-read with it: the look-back contract)
    phones = {row["location_id"]: row["phone"] for row in locations}
    assert phones[address_id] == "0000 111111"
    assert "0000 111111" in {row["counterparty_legal_phone_number"] for row in parties}
    with connect(pipeline.source_dsn) as conn:
        current = dict(conn.execute("SELECT address_id, phone FROM address").fetchall())
    assert all(current[key] == phone for key, phone in phones.items())


def test_every_version_of_an_order_becomes_its_own_fact_row(pipeline: Pipeline) -> None:
    pipeline.run()
    with connect(pipeline.source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = '2030-01-01' "
            "WHERE sales_order_id = 5"
        )
    results = pipeline.run()
    assert results["fact_sales_order"].rows == 1
    versions = [
        row for row in pipeline.gold("fact_sales_order").to_pylist() if row["sales_order_id"] == 5
    ]
    assert len(versions) == 2
    assert versions[0]["units_sold"] + 1 == versions[1]["units_sold"]


def test_an_agreed_date_that_is_not_a_date_is_quarantined_with_a_reason(
    pipeline: Pipeline,
) -> None:
    with connect(pipeline.source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = 'next Tuesday' WHERE sales_order_id = 3"
        )
    results = pipeline.run()
    assert results["fact_sales_order"].rows_rejected == 1
    [rejects_key] = pipeline.keys("rejects/fact_sales_order/")
    rejected = pipeline.parquet(rejects_key).to_pylist()
    assert rejected[0]["sales_order_id"] == 3
    assert rejected[0]["reject_reason"] == (
        "agreed_delivery_date 'next Tuesday' is not a YYYY-MM-DD date"
    )
    loaded = set(pipeline.gold("fact_sales_order").column("sales_order_id").to_pylist())
    assert 3 not in loaded
    assert len(loaded) == _source_counts(pipeline.source_dsn)["sales_order"] - 1


def test_a_currency_outside_iso_4217_gets_a_placeholder_name_and_a_warning(
    pipeline: Pipeline,
) -> None:
    with connect(pipeline.source_dsn) as conn:
        conn.execute(
            "INSERT INTO currency (currency_code, last_updated) VALUES ('XTQ', '2030-01-01')"
        )
    results = pipeline.run()
    names = {
        row["currency_code"]: row["currency_name"]
        for row in pipeline.gold("dim_currency").to_pylist()
    }
    assert names["GBP"] == "Pound Sterling"
    assert names["XTQ"] == "Unknown currency (XTQ)"
    assert [finding.detail for finding in results["dim_currency"].findings] == [
        "currency code 'XTQ' is not in ISO 4217: named 'Unknown currency (XTQ)'"
    ]


class FailingStateWrite:
    """An S3 client whose process dies when the transform state is about to be saved."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **arguments: Any) -> Any:
        if arguments["Key"].startswith("_state/"):
            raise SystemExit("crash injected before the transform state is saved")
        return self._s3.put_object(**arguments)


def test_a_crash_before_the_state_is_saved_repeats_the_work_without_a_second_file(
    pipeline: Pipeline,
) -> None:
    # Given a transform that dies just before its state write
    _new_batches(pipeline)
    with pytest.raises(SystemExit):
        _transform_through(pipeline, FailingStateWrite(pipeline.s3), "fact_sales_order")
    staged = pipeline.keys("_staging/transform/fact_sales_order/")

    # Then nothing reached the gold zone: the staged file is not committed
    assert len(staged) == 1
    assert pipeline.keys("fact_sales_order/") == []

    # When it runs again
    retried = pipeline.transform("fact_sales_order")

    # Then the same work commits one gold file, from the same staged name, once
    assert pipeline.keys("_staging/transform/fact_sales_order/") == staged
    assert pipeline.keys("fact_sales_order/") == [retried.gold_key]
    assert pipeline.transform("fact_sales_order").rows == 0
    assert pipeline.keys("fact_sales_order/") == [retried.gold_key]


class FailingPublish(FailingStateWrite):
    """An S3 client whose process dies right after the state write committed a file."""

    def put_object(self, **arguments: Any) -> Any:
        if arguments["Key"].startswith("fact_") or arguments["Key"].startswith("dim_"):
            raise SystemExit("crash injected after the commit, before publishing")
        return self._s3.put_object(**arguments)


def test_a_crash_after_the_commit_is_published_by_the_next_run(pipeline: Pipeline) -> None:
    # Given a transform that committed its state and died before publishing its file
    _new_batches(pipeline)
    with pytest.raises(SystemExit):
        _transform_through(pipeline, FailingPublish(pipeline.s3), "fact_sales_order")
    assert pipeline.keys("fact_sales_order/") == []

    # When the next run of that target finds nothing new to transform
    nothing_new = pipeline.transform("fact_sales_order")

    # Then it still publishes the committed file first, exactly once
    assert nothing_new.rows == 0
    (published,) = pipeline.keys("fact_sales_order/")
    assert published.startswith("fact_sales_order/seq=0000000001/run=run-0001/0000000001-")
    assert pipeline.parquet(published).num_rows > 0


def test_two_executions_transforming_one_table_cannot_both_commit(pipeline: Pipeline) -> None:
    pipeline.runs += 1
    pipeline.ingest("staff")
    pipeline.ingest("department")
    real = pipeline.s3
    state = {"key": "_state/transform/dim_staff.json"}

    class RivalWritesFirst(FailingStateWrite):
        def put_object(self, **arguments: Any) -> Any:
            if arguments["Key"] == state["key"]:
                real.put_object(
                    Bucket=PROCESSED, Key=state["key"], Body=b'{"consumed": {}, "mirrors": {}}'
                )
            return real.put_object(**arguments)

    pipeline.s3 = RivalWritesFirst(real)
    with pytest.raises(
        TransformStateConflictError, match="another execution transformed dim_staff"
    ):
        pipeline.transform("dim_staff")


#: An ingest function's timeout, as the stack sets it for transform.
INGEST_TIMEOUT = timedelta(seconds=120)


def _move_a_staff_member(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "UPDATE staff SET email_address = 'moved@example.com', last_updated = now() "
            "WHERE staff_id = (SELECT min(staff_id) FROM staff)"
        )


def _emails(pipeline: Pipeline, result: TransformResult) -> list[str]:
    """The email addresses of the staff in a transform's gold file."""
    return list(pipeline.parquet(result.gold_key).column("email_address").to_pylist())


def test_a_manifest_written_as_its_ingest_timed_out_is_still_consumed(
    pipeline: Pipeline,
) -> None:
    # Given a transform that consumed the batches extracted now
    now = datetime.now(UTC)
    pipeline.ingest("staff", extracted_at=now)
    pipeline.ingest("department", extracted_at=now)
    pipeline.transform("dim_staff", ingest_timeout=INGEST_TIMEOUT)
    # When an ingest that started 170 s earlier (past its timeout, within the clock
    # margin) writes its manifest only now
    _move_a_staff_member(pipeline.source_dsn)
    late = pipeline.ingest("staff", extracted_at=now - timedelta(seconds=170))
    assert late.manifest_key is not None
    result = pipeline.transform("dim_staff", ingest_timeout=INGEST_TIMEOUT)

    # Then the next transform consumes it, and the change reaches the gold zone
    assert result.batches == 1
    rows = pipeline.parquet(result.gold_key).to_pylist()
    assert "moved@example.com" in {row["email_address"] for row in rows}


def _two_batches_ten_minutes_apart(pipeline: Pipeline) -> tuple[datetime, list[str | None]]:
    """Staff batches extracted ten minutes apart, each transformed as it came."""
    now = datetime.now(UTC)
    pipeline.ingest("department", extracted_at=now - timedelta(minutes=10))
    keys = [pipeline.ingest("staff", extracted_at=now - timedelta(minutes=10)).manifest_key]
    pipeline.transform("dim_staff", ingest_timeout=INGEST_TIMEOUT)
    _move_a_staff_member(pipeline.source_dsn)
    keys.append(pipeline.ingest("staff", extracted_at=now).manifest_key)
    pipeline.transform("dim_staff", ingest_timeout=INGEST_TIMEOUT)
    return now, keys


def test_transform_lists_manifests_from_ingests_timeout_and_a_minute_behind_the_newest(
    pipeline: Pipeline,
) -> None:
    # Given batches of staff extracted ten minutes apart, each transformed as it came
    now, _ = _two_batches_ten_minutes_apart(pipeline)
    # And a record of where each listing of the raw zone starts
    starts: dict[str, str] = {}

    def recorded(params: dict[str, Any], **_: Any) -> None:
        starts[params["Prefix"]] = params.get("StartAfter", "")

    pipeline.s3.meta.events.register("provide-client-params.s3.ListObjectsV2", recorded)
    # When another batch of staff arrives and the next transform looks for it
    _move_a_staff_member(pipeline.source_dsn)
    pipeline.ingest("staff")
    result = pipeline.transform("dim_staff", ingest_timeout=INGEST_TIMEOUT)
    # Then it lists staff's manifests from three minutes (the timeout and the margin)
    # before the newest it consumed: the older batch is not listed again
    assert starts["_manifests/staff/"] == (
        f"_manifests/staff/{now - timedelta(minutes=3):%Y/%m/%d/%H%M%S}"
    )
    assert result.batches == 1
    # And department, which has no batch it has not caught up with, is not listed
    assert "_manifests/department/" not in starts
    assert result.sources_listed == 1


def test_a_longer_ingest_timeout_transforms_no_batch_again(pipeline: Pipeline) -> None:
    # Given batches of staff extracted ten minutes apart, each transformed as it came
    _, keys = _two_batches_ten_minutes_apart(pipeline)
    # When ingest's timeout grows to ten minutes (transform's listing widens with it) and
    # a third batch makes the next transform list staff's manifests
    _move_a_staff_member(pipeline.source_dsn)
    third = pipeline.ingest("staff").manifest_key
    again = pipeline.transform("dim_staff", ingest_timeout=timedelta(minutes=10))
    # Then only the third batch is transformed: the state still knows the first two
    assert (again.sources_listed, again.batches) == (1, 1)
    body = pipeline.s3.get_object(Bucket=PROCESSED, Key="_state/transform/dim_staff.json")
    assert json.loads(body["Body"].read())["consumed"]["staff"] == [*keys, third]
