"""One ingest step: a batch of one source table from PostgreSQL into the raw zone.

Order of effects, which is what makes a crash at any point harmless:

1. read the watermark (and remember it for the compare-and-set);
2. in one REPEATABLE READ snapshot, plan the batch and stream it to S3 as parts;
3. write the manifest (the batch is now complete and visible downstream);
4. advance the watermark, only if nobody else did since step 1, naming the manifest:
   transform lists a table's manifests only when that name is new to it.

A crash before 4 leaves a complete or incomplete batch in the raw zone and the
watermark where it was: the next execution extracts the same rows again, and
downstream stages are idempotent (transform finds the batch left behind when it lists
for the next one). A lost race at 4 raises
:class:`~totes.errors.WatermarkConflictError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from totes.contracts import (
    NonEmptyText,
    Seconds,
    StrictPositiveInt,
    parse_event,
    settings_from_environment,
)
from totes.db import kept_connection, unverified_tls
from totes.errors import SourceSchemaDriftError
from totes.findings import Finding, FindingKind, Stage, unverified_tls_findings
from totes.ingest.columns import SourceColumn
from totes.ingest.extract import plan_batch, stream_csv
from totes.ingest.raw_zone import Manifest, RawZoneWriter, cursor_json
from totes.ingest.watermarks import WatermarkStore
from totes.names import DEFAULT_INGEST_MAX_ROWS, SOURCE_DATABASE, EnvironmentVariable
from totes.results import IngestResult
from totes.source.columns import SchemaDrift, schema_drift
from totes.tables import IGNORED_SOURCE_TABLES, SOURCE_TABLES

DEFAULT_LOOKBACK = timedelta(minutes=15)


class IngestRequest(BaseModel):
    """The event of one ingest Map item.

    Examples
    --------
    >>> IngestRequest.from_event({"table": "staff", "run_id": "exec-1"}).max_rows is None
    True
    >>> IngestRequest.from_event({"table": "staff", "run_id": "exec-1", "max_rows": 0})
    Traceback (most recent call last):
    ...
    totes.errors.InvalidEventError: ingest event: max_rows: Input should be greater than 0 (got 0)
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    table: NonEmptyText
    run_id: NonEmptyText
    max_rows: StrictPositiveInt | None = None

    @classmethod
    def from_event(cls, event: Any) -> IngestRequest:
        """Validate a Lambda event.

        Raises
        ------
        InvalidEventError
            ``table`` or ``run_id`` is missing or empty, or ``max_rows`` is not a
            positive whole number (the message names the field).
        """
        return parse_event(cls, event, what="ingest event")


class IngestSettings(BaseModel):
    """Where ingest reads and writes, and its limits (environment variables in Lambda).

    Examples
    --------
    >>> settings = IngestSettings.from_environment({"INGESTED_BUCKET": "raw",
    ...     "WATERMARK_TABLE": "wm", "INGEST_LOOKBACK_SECONDS": "60"})
    >>> settings.max_rows, settings.lookback
    (500000, datetime.timedelta(seconds=60))
    >>> IngestSettings.from_environment({"INGESTED_BUCKET": "raw", "WATERMARK_TABLE": "wm",
    ...     "INGEST_MAX_ROWS": "many"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable INGEST_MAX_ROWS: ... (got 'many')
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: NonEmptyText = Field(alias=EnvironmentVariable.INGESTED_BUCKET)
    watermark_table: NonEmptyText = Field(alias=EnvironmentVariable.WATERMARK_TABLE)
    max_rows: PositiveInt = Field(
        DEFAULT_INGEST_MAX_ROWS, alias=EnvironmentVariable.INGEST_MAX_ROWS
    )
    lookback: Seconds = Field(DEFAULT_LOOKBACK, alias=EnvironmentVariable.INGEST_LOOKBACK_SECONDS)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> IngestSettings:
        """Read the settings from the function's environment variables.

        ``INGESTED_BUCKET`` and ``WATERMARK_TABLE`` are required; ``INGEST_MAX_ROWS`` and
        ``INGEST_LOOKBACK_SECONDS`` are optional.

        Raises
        ------
        InvalidSettingError
            A required variable is not set or a value does not fit (named in the message).
        """
        return settings_from_environment(cls, environment)


def ingest_table(
    request: IngestRequest,
    settings: IngestSettings,
    *,
    source_dsn: Callable[[], str],
    s3: Any,
    watermarks: WatermarkStore,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestResult:
    """Extract the next batch of one table into the raw zone and advance its watermark.

    Parameters
    ----------
    request
        Table and run id (and an optional row limit overriding the settings).
    settings
        Bucket, watermark table, default row limit and look-back window.
    source_dsn
        Returns the source DSN (called once, after cheap checks: secrets cost a call).
    s3, watermarks
        The S3 client and the watermark store.
    clock
        Extraction time for key names only; never a watermark.

    Returns
    -------
    IngestResult
        Rows and parts written, the new cursor, whether more rows wait, and the
        source columns that differ from the contract (findings).

    Raises
    ------
    SourceSchemaDriftError
        A column a transform needs is gone or changed type; nothing was written and
        the watermark did not move.

    Examples
    --------
    >>> from totes.db import connect
    >>> from totes.ingest.watermarks import DynamoWatermarkStore
    >>> from totes.source.schema import create_source_tables
    >>> with connect(dsn) as source:
    ...     create_source_tables(source)
    ...     _ = source.execute("INSERT INTO staff (first_name, last_name, department_id, "
    ...         "email_address, last_updated) VALUES ('Jeremie', 'Franey', 1, "
    ...         "'jeremie@example.com', '2024-11-14 09:05'), ('Deron', 'Beier', 2, "
    ...         "'deron@example.com', '2024-11-14 09:06')")
    >>> settings = IngestSettings.from_environment(
    ...     {"INGESTED_BUCKET": "ingested", "WATERMARK_TABLE": "watermarks"})
    >>> def ingest() -> IngestResult:
    ...     return ingest_table(IngestRequest.from_event({"table": "staff", "run_id": "exec-1"}),
    ...         settings, source_dsn=lambda: dsn, s3=s3,
    ...         watermarks=DynamoWatermarkStore(dynamodb, "watermarks"))
    >>> first = ingest()
    >>> first.rows, first.parts, first.manifest_key.startswith("_manifests/staff/")
    (2, 1, True)
    >>> ingest().rows  # the watermark moved: nothing new
    0
    """
    started = time.perf_counter()
    result = IngestResult(table=request.table, run_id=request.run_id)
    if request.table in IGNORED_SOURCE_TABLES or request.table not in SOURCE_TABLES:
        result.skipped = "not a table the pipeline extracts"
        return result
    expected = watermarks.read(request.table)
    max_rows = request.max_rows or settings.max_rows
    extracted_at = clock()
    # Named, so the source's operators see which sessions are the pipeline's.
    dsn = source_dsn()
    connection_findings = unverified_tls_findings(
        unverified_tls(dsn), SOURCE_DATABASE, Stage.INGEST
    )
    with kept_connection(dsn, application_name="totes ingest") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            plan = plan_batch(
                conn, request.table, expected, max_rows=max_rows, lookback=settings.lookback
            )
            drift = _checked_columns(request.table, plan.columns)
            result.unexpected_columns = drift.unexpected
            result.missing_columns = [*drift.missing_optional, *drift.retyped_optional]
            result.findings = [*connection_findings, *_drift_findings(drift)]
            result.has_more = plan.has_more
            result.remaining = plan.remaining
            if plan.new_watermark is None:
                result.duration_ms = (time.perf_counter() - started) * 1000
                return result
            writer = RawZoneWriter(s3, settings.bucket, request.table, request.run_id, extracted_at)
            parts = writer.write_csv(stream_csv(conn, plan))
    manifest = Manifest(
        table=request.table,
        run_id=request.run_id,
        batch_id=writer.batch_id,
        extracted_at=extracted_at.isoformat(timespec="microseconds"),
        columns=plan.columns,
        rows=sum(part.rows for part in parts),
        cursor_from=cursor_json(plan.read_after),
        cursor_to=cursor_json(plan.read_through),
        rereads_window=plan.rereads_window,
        parts=parts,
        unexpected_columns=drift.unexpected,
    )
    result.manifest_key = writer.write_manifest(manifest)
    watermarks.advance(
        request.table, expected, plan.new_watermark.with_manifest(result.manifest_key)
    )
    result.rows = manifest.rows
    result.parts = len(parts)
    result.bytes_written = sum(part.bytes for part in parts)
    result.rereads_window = plan.rereads_window
    result.cursor_to = manifest.cursor_to
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _checked_columns(table: str, columns: list[SourceColumn]) -> SchemaDrift:
    """The table's drift from the column contract; stop if a transform would break."""
    drift = schema_drift(table, {column.name: column.data_type for column in columns})
    if drift.breaks_transforms:
        raise SourceSchemaDriftError(
            f"{drift.describe_breakage()}: a transform needs it; nothing was extracted and "
            "the watermark stays. Restore the column in totesys (or change the pipeline's "
            "column contract) and the next run continues from here",
            drift,
        )
    return drift


def _drift_findings(drift: SchemaDrift) -> list[Finding]:
    details = [
        *(
            (
                FindingKind.UNEXPECTED_COLUMNS,
                f"new source column {name}: kept in the raw zone, not loaded",
            )
            for name in drift.unexpected
        ),
        *(
            (FindingKind.MISSING_COLUMNS, f"source column {name} is gone (no transform reads it)")
            for name in drift.missing_optional
        ),
        *(
            (
                FindingKind.MISSING_COLUMNS,
                f"source column {name} is {change} (no transform reads it)",
            )
            for name, change in drift.retyped_optional.items()
        ),
    ]
    return [
        Finding(kind=kind, table=drift.table, stage=Stage.INGEST, detail=detail)
        for kind, detail in details
    ]
