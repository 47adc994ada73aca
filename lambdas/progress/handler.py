"""Progress Lambda: totals a pass, publishes the backlog and decides whether another pass runs."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.names import MetricName
from totes.observability import logger, publish_for_alarm
from totes.progress import ProgressRequest, ProgressSettings, check_progress


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Add the pass in ``event`` to the execution's totals; say what remains and what is next."""
    request = ProgressRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    progress = check_progress(request, ProgressSettings.from_environment(), now=datetime.now(UTC))
    if not progress.next_pass:
        # One value per execution, with the service dimension alone: what the alarm watches.
        publish_for_alarm(MetricName.BACKLOG_ROWS, progress.backlog_rows)
        publish_for_alarm(MetricName.CATCH_UP_PASSES, progress.passes)
    logger.info(
        f"pass {progress.passes}: {progress.verdict}",
        extra={
            "verdict": progress.verdict,
            "elapsed_seconds": progress.elapsed_seconds,
            "longest_pass_seconds": progress.longest_pass_seconds,
            "backlog_rows": progress.backlog_rows,
            "files_remaining": progress.files_remaining,
            "files_waiting": progress.files_waiting,
            "rows_rejected": progress.rows_rejected,
            "findings": len(progress.findings),
            "remaining": {name: table.model_dump() for name, table in progress.remaining.items()},
            "next_tables": progress.visiting.model_dump(),
        },
    )
    return progress.model_dump(mode="json")
