"""Names shared by the CDK application and the runtime.

This module must stay free of third-party imports: the infrastructure side
imports it to name metrics, tables and prefixes exactly as the handlers do, so
no name is written twice.
"""

from typing import Final

SOURCE_DATABASE: Final = "totesys"
WAREHOUSE_DATABASE: Final = "warehouse"

#: The tables themselves (source and warehouse) are described in :mod:`totes.tables`.

#: Partition key of the DynamoDB watermark table: one item per source table.
WATERMARK_PARTITION_KEY: Final = "table_name"

#: The warehouse table that records every loaded gold file (exactly-once loads).
LOAD_LEDGER_TABLE: Final = "load_ledger"
#: Where load's listing of each table's gold files starts (the last of the loaded ones).
LOAD_LISTING_TABLE: Final = "load_listing"
#: The warehouse table that keeps each fact table's newest ``last_updated`` (freshness).
NEWEST_VERSIONS_TABLE: Final = "newest_versions"

#: Secrets Manager names of the database credentials (JSON: host, port, user,
#: password, database).
SOURCE_SECRET_NAME: Final = "totesys_db_credentials"  # noqa: S105 (a name, not a secret)
WAREHOUSE_SECRET_NAME: Final = "postgres_db_credentials"  # noqa: S105 (a name, not a secret)


class EnvironmentVariable:
    """Environment variables of the functions: set by the stack, read by the handlers."""

    INGESTED_BUCKET: Final = "INGESTED_BUCKET"
    PROCESSED_BUCKET: Final = "PROCESSED_BUCKET"
    WATERMARK_TABLE: Final = "WATERMARK_TABLE"
    SOURCE_SECRET_NAME: Final = "SOURCE_SECRET_NAME"  # noqa: S105 (a variable's name)
    WAREHOUSE_SECRET_NAME: Final = "WAREHOUSE_SECRET_NAME"  # noqa: S105 (a variable's name)
    #: Local runs: the database DSNs themselves, instead of the secrets' names.
    SOURCE_DSN: Final = "TOTES_SOURCE_DSN"
    WAREHOUSE_DSN: Final = "TOTES_WAREHOUSE_DSN"
    INGEST_MAX_ROWS: Final = "INGEST_MAX_ROWS"
    INGEST_LOOKBACK_SECONDS: Final = "INGEST_LOOKBACK_SECONDS"
    LOAD_FK_TRIGGERS: Final = "LOAD_FK_TRIGGERS"
    LOAD_REJECT_AFTER_SECONDS: Final = "LOAD_REJECT_AFTER_SECONDS"
    TRANSFORM_MAX_ROWS: Final = "TRANSFORM_MAX_ROWS"
    #: Transform's: the longest an ingest invocation runs (its function's timeout), so
    #: the longest a manifest can arrive after the extraction time its key carries.
    INGEST_TIMEOUT_SECONDS: Final = "INGEST_TIMEOUT_SECONDS"
    LOAD_MAX_FILES: Final = "LOAD_MAX_FILES"
    CATCH_UP_BUDGET_SECONDS: Final = "CATCH_UP_BUDGET_SECONDS"
    #: The Glue database of the lake's Iceberg tables (load writes them, the maintenance
    #: step compacts them).
    LAKE_DATABASE: Final = "LAKE_DATABASE"
    LAKE_MAINTAIN_EVERY_COMMITS: Final = "LAKE_MAINTAIN_EVERY_COMMITS"
    LAKE_SNAPSHOT_RETENTION_HOURS: Final = "LAKE_SNAPSHOT_RETENTION_HOURS"
    LAKE_TARGET_FILE_MB: Final = "LAKE_TARGET_FILE_MB"


#: CloudWatch namespace of every metric the handlers emit (Powertools EMF).
METRICS_NAMESPACE: Final = "Totes/DataPlatform"
#: Powertools ``service`` dimension, shared by every handler.
SERVICE_NAME: Final = "totes-pipeline"


class MetricName:
    """The custom metrics: what the alarms watch, with the ``service`` dimension alone.

    Figures per table (rows ingested, transformed, loaded, skipped; bytes; durations) are
    fields of each invocation's log line, charted with Logs Insights: as metrics, each
    name and table would be billed as a custom metric (ADR 20).
    """

    ROWS_REJECTED: Final = "RowsRejected"
    #: Source columns the pipeline does not know (kept raw, not loaded) and columns gone.
    UNEXPECTED_COLUMNS: Final = "UnexpectedColumns"
    MISSING_COLUMNS: Final = "MissingColumns"
    #: Rows that carry a code the pipeline could not name (a placeholder was used).
    UNKNOWN_CODES: Final = "UnknownCodes"
    FRESHNESS_LAG_SECONDS: Final = "FreshnessLagSeconds"
    #: Rows (and files) still waiting in any stage when an execution's pass ends: the backlog.
    BACKLOG_ROWS: Final = "BacklogRows"
    CATCH_UP_PASSES: Final = "CatchUpPasses"
    #: Invocations that failed with a transient fault, by stage and error: each is retried
    #: by the state machine unless its retries are spent.
    RETRIES: Final = "Retries"


#: Default bite of each stage per invocation, and the time an execution may keep catching
#: up (the stack sets them from CDK context; the handlers fall back to them).
DEFAULT_INGEST_MAX_ROWS: Final = 500_000
DEFAULT_TRANSFORM_MAX_ROWS: Final = 500_000
DEFAULT_LOAD_MAX_FILES: Final = 8
DEFAULT_CATCH_UP_BUDGET_SECONDS: Final = 180

#: The client's requirement: data older than this in the warehouse raises an alarm.
FRESHNESS_LAG_ALARM_SECONDS: Final = 30 * 60

#: Key prefixes inside the buckets.
RAW_MANIFEST_PREFIX: Final = "_manifests"
MIRROR_PREFIX: Final = "mirror"
REJECTS_PREFIX: Final = "rejects"
#: The lakehouse zone of the processed bucket: the Iceberg tables the Glue catalog lists.
LAKE_PREFIX: Final = "lake"
#: Where transform stages gold and rejects files until its state write commits them;
#: load never reads it, and the processed bucket expires what a lost race left there.
TRANSFORM_STAGING_PREFIX: Final = "_staging/transform"
#: Where transform keeps its state per warehouse table (what it has shaped so far).
TRANSFORM_STATE_PREFIX: Final = "_state/transform"
#: Days a staged file is kept: far longer than a commit takes to be published.
TRANSFORM_STAGING_RETENTION_DAYS: Final = 30


#: The error the maintenance step raises when a table of the lake could not be maintained.
LAKE_MAINTENANCE_ERROR: Final = "LakeMaintenanceError"

#: Error types a Step Functions Retry may safely repeat: another execution got there
#: first, and a retry re-reads the newer state. The runtime raises exceptions of
#: these class names (the Lambda service reports the class name as the error).
WATERMARK_CONFLICT_ERROR: Final = "WatermarkConflictError"
TRANSFORM_STATE_CONFLICT_ERROR: Final = "TransformStateConflictError"

#: Faults a retry a few seconds later absorbs (a failover, a restart, throttling): the
#: state machine retries every task that raises one, with this policy (ADR 3), and only
#: a fault that outlasts it fails the execution.
TRANSIENT_ERRORS: Final = (
    "DatabaseTransientError",
    "DatabaseUnreachableError",
    "AwsTransientError",
    # pyarrow's S3 client names no error code (only text), so an Iceberg commit's I/O
    # fault cannot be told transient from permanent: a retry is safe (the commit's
    # position is in the table), and one that keeps failing is named after the retries.
    "LakeCommitError",
)
TRANSIENT_RETRY_ATTEMPTS: Final = 4
TRANSIENT_RETRY_FIRST_INTERVAL_SECONDS: Final = 3
TRANSIENT_RETRY_BACKOFF_RATE: Final = 2
TRANSIENT_RETRY_MAX_DELAY_SECONDS: Final = 20
#: Attempts every AWS client makes of one call (botocore's ``standard`` retry mode)
#: before the handler gives up on it with ``AwsTransientError``.
AWS_CALL_ATTEMPTS: Final = 5
