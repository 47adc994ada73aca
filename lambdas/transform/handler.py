"""Transform Lambda: one warehouse table's new raw batches into a gold file (a Map item)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.aws import client
from totes.findings import Stage
from totes.ingest.watermarks import DynamoWatermarkStore
from totes.names import MetricName
from totes.observability import logger, publish_for_alarm
from totes.transform.stage import TransformRequest, TransformSettings, transform_target
from totes.transient import retried_when_transient


@logger.inject_lambda_context(clear_state=True)
@retried_when_transient(Stage.TRANSFORM)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Transform ``event["target"]`` for run ``event["run_id"]``."""
    request = TransformRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    logger.append_keys(table=request.target)
    settings = TransformSettings.from_environment()
    result = transform_target(
        request,
        settings,
        s3=client("s3"),
        watermarks=DynamoWatermarkStore(client("dynamodb"), settings.watermark_table),
    )
    if result.rows_rejected:
        publish_for_alarm(MetricName.ROWS_REJECTED, result.rows_rejected)
    if result.unknown_codes:
        publish_for_alarm(MetricName.UNKNOWN_CODES, result.unknown_codes)
    for finding in result.findings:
        logger.warning(finding.describe(), extra={"finding": finding.model_dump(mode="json")})
    # Per table in the log, not as metrics: Logs Insights charts them.
    logger.info("transformed" if result.rows else "nothing new", extra=result.log_fields())
    return result.payload()
