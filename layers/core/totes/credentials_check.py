"""The check a deployment makes before it schedules anything: are both credentials
secrets there, readable and complete?

Without them every scheduled execution fails and mails the alert topic, every five
minutes, from the first deployment on. So the stack holds a CloudFormation custom
resource that runs this check when it is created, or when the secret names change, and
the schedule depends on it: a deployment whose secrets are missing stops with a message
that says which secret and what it must hold, before the schedule exists.

The custom resource protocol is CloudFormation's: the request carries a pre-signed
``ResponseURL``, and the function answers with a PUT of ``SUCCESS`` or ``FAILED`` and
a reason, which CloudFormation shows as the resource's status reason.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from totes.contracts import NonEmptyText, parse_event
from totes.credentials import dsn_from_secrets_manager
from totes.errors import InvalidEventError, SecretFormatError, SecretNotFoundError

#: What each secret must hold, said once in every refusal.
_SECRET_SHAPE = "a JSON object with host, port, user, password and database"  # noqa: S105  # nosec B105 (a description, not a password)
#: Seconds the answer to CloudFormation may take to arrive.
_RESPONSE_TIMEOUT_SECONDS = 30


class CheckedSecrets(BaseModel):
    """The resource's properties: the secrets the pipeline's functions read."""

    model_config = ConfigDict(populate_by_name=True)

    secret_names: list[NonEmptyText] = Field(alias="SecretNames", min_length=1)


class CredentialsCheckRequest(BaseModel):
    """A CloudFormation custom resource request, as the check's function receives it."""

    model_config = ConfigDict(populate_by_name=True)

    request_type: Literal["Create", "Update", "Delete"] = Field(alias="RequestType")
    response_url: NonEmptyText = Field(alias="ResponseURL")
    stack_id: NonEmptyText = Field(alias="StackId")
    request_id: NonEmptyText = Field(alias="RequestId")
    logical_resource_id: NonEmptyText = Field(alias="LogicalResourceId")
    physical_resource_id: str | None = Field(default=None, alias="PhysicalResourceId")
    properties: CheckedSecrets = Field(alias="ResourceProperties")

    @classmethod
    def from_event(cls, event: object) -> CredentialsCheckRequest:
        """Parse the request.

        Raises
        ------
        InvalidEventError
            The event is not a custom resource request with the secret names.
        """
        return parse_event(cls, event, what="credentials check request")


class CredentialsCheckResponse(BaseModel):
    """What CloudFormation is told: the check's outcome and, when it failed, why."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    status: Literal["SUCCESS", "FAILED"] = Field(alias="Status")
    reason: str = Field(alias="Reason")
    physical_resource_id: str = Field(alias="PhysicalResourceId")
    stack_id: str = Field(alias="StackId")
    request_id: str = Field(alias="RequestId")
    logical_resource_id: str = Field(alias="LogicalResourceId")


def unreadable_secrets(
    secret_names: list[str], read: Callable[[str], str] = dsn_from_secrets_manager
) -> list[str]:
    """Why each secret that the functions could not use is unusable (never its values).

    Examples
    --------
    >>> def read(name):
    ...     if name == "missing":
    ...         raise SecretNotFoundError(f"secret {name!r} does not exist or may not be read")
    ...     return "host=db ..."
    >>> unreadable_secrets(["totesys_db_credentials", "missing"], read)
    ["secret 'missing' does not exist or may not be read"]
    """
    problems = []
    for name in secret_names:
        try:
            read(name)
        except (SecretNotFoundError, SecretFormatError) as exc:
            problems.append(str(exc))
    return problems


def check_credentials(
    request: CredentialsCheckRequest, read: Callable[[str], str] = dsn_from_secrets_manager
) -> CredentialsCheckResponse:
    """Answer a custom resource request: both secrets usable, or a refusal saying why.

    Deleting the resource checks nothing: a stack must always be removable.

    Examples
    --------
    >>> request = CredentialsCheckRequest.from_event({
    ...     "RequestType": "Create", "ResponseURL": "https://example.com/r",
    ...     "StackId": "stack", "RequestId": "1", "LogicalResourceId": "Check",
    ...     "ResourceProperties": {"SecretNames": ["source", "warehouse"]}})
    >>> def absent(name):
    ...     raise SecretNotFoundError(f"secret {name!r} does not exist or may not be read")
    >>> answer = check_credentials(request, absent)
    >>> answer.status
    'FAILED'
    >>> print(answer.reason)  # doctest: +ELLIPSIS
    The pipeline's credentials are not ready, so nothing was scheduled: secret 'source' ...
    """
    problems: list[str] = []
    if request.request_type != "Delete":
        try:
            problems = unreadable_secrets(request.properties.secret_names, read)
        # CloudFormation waits for an answer whatever went wrong: it gets one, naming it.
        except Exception as exc:
            problems = [f"the secrets could not be read ({type(exc).__name__})"]
    if problems:
        reason = (
            "The pipeline's credentials are not ready, so nothing was scheduled: "
            + "; ".join(problems)
            + f". Create each secret as {_SECRET_SHAPE} in this account and region, then "
            "deploy again (README: First deployment)."
        )
    else:
        reason = "Both credentials secrets are readable and complete."
    return CredentialsCheckResponse(
        status="FAILED" if problems else "SUCCESS",
        reason=reason,
        physical_resource_id=request.physical_resource_id or request.logical_resource_id,
        stack_id=request.stack_id,
        request_id=request.request_id,
        logical_resource_id=request.logical_resource_id,
    )


def _put(request: urllib.request.Request) -> None:
    with urllib.request.urlopen(request, timeout=_RESPONSE_TIMEOUT_SECONDS):  # noqa: S310  # nosec B310
        pass


def answer_cloudformation(
    response_url: str,
    response: CredentialsCheckResponse,
    send: Callable[[urllib.request.Request], None] = _put,
) -> None:
    """PUT the answer to the pre-signed URL CloudFormation waits on.

    Raises
    ------
    InvalidEventError
        The URL is not HTTPS (CloudFormation's always are; anything else is refused
        rather than followed).
    """
    if urlsplit(response_url).scheme != "https":
        raise InvalidEventError("credentials check request: ResponseURL is not an https URL")
    body = response.model_dump_json().encode()
    put = urllib.request.Request(  # noqa: S310 (https only, checked above)
        response_url,
        data=body,
        method="PUT",
        # The pre-signed URL is signed for an empty content type.
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    send(put)
