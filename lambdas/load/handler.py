"""Load Lambda: the pending gold files of one warehouse table into the warehouse (a Map item)."""

from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.aws import client
from totes.credentials import database_dsn, forgetting_secrets_on_refused_login
from totes.findings import Stage
from totes.lake.iceberg import Lake, LakeSettings
from totes.load.stage import LoadRequest, LoadSettings, load_target
from totes.names import WAREHOUSE_SECRET_NAME, EnvironmentVariable, MetricName
from totes.observability import logger, publish_for_alarm
from totes.transient import retried_when_transient


@cache
def _lake() -> Lake:
    """One lake per container: warm invocations reuse its catalog and file system."""
    return Lake(LakeSettings.from_environment())


def _warehouse_dsn() -> str:
    return database_dsn(
        EnvironmentVariable.WAREHOUSE_DSN,
        EnvironmentVariable.WAREHOUSE_SECRET_NAME,
        WAREHOUSE_SECRET_NAME,
    )


@logger.inject_lambda_context(clear_state=True)
@retried_when_transient(Stage.LOAD)
@forgetting_secrets_on_refused_login
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Load the gold files of ``event["target"]`` that the ledger lacks, for ``event["run_id"]``."""
    request = LoadRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    logger.append_keys(table=request.target)
    settings = LoadSettings.from_environment()
    result = load_target(
        request, settings, warehouse_dsn=_warehouse_dsn, s3=client("s3"), lake=_lake()
    )
    if result.rows_rejected:
        publish_for_alarm(MetricName.ROWS_REJECTED, result.rows_rejected)
    if result.freshness_lag_seconds is not None:
        publish_for_alarm(
            MetricName.FRESHNESS_LAG_SECONDS, result.freshness_lag_seconds, MetricUnit.Seconds
        )
    for finding in result.findings:
        log = logger.warning if finding.kind.needs_attention else logger.info
        log(finding.describe(), extra={"finding": finding.model_dump(mode="json")})
    for outcome in result.file_outcomes:
        logger.info(
            "file applied elsewhere" if outcome.applied_elsewhere else "file loaded",
            extra=outcome.log_fields(),
        )
    logger.info("loaded" if result.applied else "nothing to load", extra=result.log_fields())
    return result.payload()
