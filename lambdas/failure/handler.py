"""DescribeFailure Lambda: the email about a failed execution, its subject and body."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.failure_notice import FailureEvent, describe_failure
from totes.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Describe the failure in ``event`` for the alert topic: ``{"subject", "message"}``."""
    failure = FailureEvent.from_event(event)
    logger.set_correlation_id(failure.run_id)
    notice = describe_failure(failure)
    logger.info("failure described", extra={"subject": notice.subject, "error": failure.error})
    return notice.model_dump()
