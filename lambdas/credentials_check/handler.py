"""CredentialsCheck Lambda: a deployment's custom resource, answered before the schedule
exists: both credentials secrets readable and complete, or a refusal saying why."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.credentials_check import (
    CredentialsCheckRequest,
    answer_cloudformation,
    check_credentials,
)
from totes.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Check the secrets named in ``event`` and answer CloudFormation."""
    request = CredentialsCheckRequest.from_event(event)
    response = check_credentials(request)
    logger.info(
        "credentials checked",
        extra={
            "request_type": request.request_type,
            "status": response.status,
            "reason": response.reason,
        },
    )
    answer_cloudformation(request.response_url, response)
