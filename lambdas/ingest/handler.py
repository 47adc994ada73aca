"""Ingest Lambda: the next batch of one source table into the raw zone (a Map item)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.aws import client
from totes.credentials import database_dsn, forgetting_secrets_on_refused_login
from totes.errors import SourceSchemaDriftError
from totes.findings import Stage
from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import DynamoWatermarkStore
from totes.names import SOURCE_SECRET_NAME, EnvironmentVariable, MetricName
from totes.observability import logger, publish_for_alarm
from totes.transient import retried_when_transient


def _source_dsn() -> str:
    return database_dsn(
        EnvironmentVariable.SOURCE_DSN, EnvironmentVariable.SOURCE_SECRET_NAME, SOURCE_SECRET_NAME
    )


@logger.inject_lambda_context(clear_state=True)
@retried_when_transient(Stage.INGEST)
@forgetting_secrets_on_refused_login
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Extract one batch of ``event["table"]`` for run ``event["run_id"]``."""
    request = IngestRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    logger.append_keys(table=request.table)
    settings = IngestSettings.from_environment()
    try:
        result = ingest_table(
            request,
            settings,
            source_dsn=_source_dsn,
            s3=client("s3"),
            watermarks=DynamoWatermarkStore(client("dynamodb"), settings.watermark_table),
        )
    except SourceSchemaDriftError as exc:
        # The SchemaDrift alarm watches this; the error itself fails the execution.
        publish_for_alarm(MetricName.MISSING_COLUMNS, exc.drift.broken)
        raise
    # Published on every run, zeros included: SchemaDrift describes how things stand, and
    # its alarm clears when a run finds no drift.
    publish_for_alarm(MetricName.UNEXPECTED_COLUMNS, len(result.unexpected_columns))
    publish_for_alarm(MetricName.MISSING_COLUMNS, len(result.missing_columns))
    for finding in result.findings:
        logger.warning(finding.describe(), extra={"finding": finding.model_dump(mode="json")})
    # Per table in the log, not as metrics: Logs Insights charts them (the dashboard
    # does) without a custom metric per table and figure.
    logger.info("ingested" if result.rows else "nothing new", extra=result.log_fields())
    return result.payload()
