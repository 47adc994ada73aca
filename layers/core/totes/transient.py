"""Faults that a retry a few seconds later absorbs, named so that the state machine retries
them, and counted.

Database faults are named where the session is (:func:`totes.db.kept_connection`, which
also discards it); AWS faults here, at the handler's edge, once botocore's own attempts
(:data:`totes.aws.RETRYING`) are spent: a throttled call, a 5xx, a dropped or timed-out
connection. Classified by the service's error code and the exception's type, never by
message text. Every transient fault a handler raises is counted in the ``Retries`` metric
by stage and error: the state machine retries it (:data:`totes.names.TRANSIENT_ERRORS`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, TypeVar

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from totes.errors import (
    AwsTransientError,
    DatabaseTransientError,
    DatabaseUnreachableError,
    LakeCommitError,
)
from totes.names import METRICS_NAMESPACE, SERVICE_NAME, MetricName

#: Error codes AWS services answer a throttled or briefly unavailable call with.
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
    }
)
#: Network faults between the function and the AWS endpoint.
_NETWORK_FAULTS: Final = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
#: Every error the workflow retries, as the handlers raise them.
_RETRIED: Final = (
    AwsTransientError,
    DatabaseTransientError,
    DatabaseUnreachableError,
    LakeCommitError,
)

Handler = TypeVar("Handler", bound=Callable[..., object])


def aws_transient_fault(exc: Exception) -> AwsTransientError | None:
    """The named transient error for an AWS call that failed on every attempt, or None.

    Examples
    --------
    >>> slow_down = ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
    >>> print(aws_transient_fault(slow_down))
    PutObject was throttled or failed on every attempt: SlowDown (HTTP None)
    >>> denied = ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")
    >>> aws_transient_fault(denied) is None
    True
    """
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLING_CODES or (isinstance(status, int) and status >= 500):
            return AwsTransientError(
                f"{exc.operation_name} was throttled or failed on every attempt: "
                f"{code} (HTTP {status})"
            )
    if isinstance(exc, _NETWORK_FAULTS):
        return AwsTransientError(f"an AWS endpoint did not answer: {type(exc).__name__}")
    return None


def retried_when_transient(stage: str) -> Callable[[Handler], Handler]:
    """Name a handler's transient AWS faults and count every transient fault it raises.

    Parameters
    ----------
    stage : str
        The stage the handler runs (``ingest``, ``transform``, ``load``): the metric's
        ``stage`` dimension.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def handle(*args: object, **kwargs: object) -> object:
            try:
                return handler(*args, **kwargs)
            except _RETRIED as exc:
                _count(stage, type(exc).__name__)
                raise
            except Exception as exc:
                transient = aws_transient_fault(exc)
                if transient is None:
                    raise
                _count(stage, type(transient).__name__)
                raise transient from exc

        return handle  # type: ignore[return-value]

    return decorate


def _count(stage: str, error: str) -> None:
    with single_metric(
        name=MetricName.RETRIES,
        unit=MetricUnit.Count,
        value=1,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": SERVICE_NAME, "stage": stage, "error": error},
    ):
        pass
