"""Transient faults at a handler's edge: named so the state machine retries them, and counted
in the Retries metric by stage and error (asserted on the EMF CloudWatch receives)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from totes.errors import AwsTransientError, DatabaseTransientError
from totes.names import METRICS_NAMESPACE
from totes.transient import retried_when_transient


def _failing(exc: Exception) -> Callable[[dict[str, Any], object], dict[str, Any]]:
    @retried_when_transient("load")
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        raise exc

    return handler


def _retries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Retries metric points in the printed EMF: their dimensions and value."""
    found = []
    for record in records:
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == METRICS_NAMESPACE
            if [metric["Name"] for metric in directive["Metrics"]] == ["Retries"]:
                (dimensions,) = directive["Dimensions"]
                found.append({name: record[name] for name in [*dimensions, "Retries"]})
    return found


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), "SlowDown"),
        (
            ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem"
            ),
            "ProvisionedThroughputExceededException",
        ),
        (
            ClientError(
                {"Error": {"Code": "Unknown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "GetObject",
            ),
            "Unknown",
        ),
    ],
)
def test_a_throttled_or_failed_aws_call_becomes_a_named_transient_error_and_is_counted(
    fault: ClientError, code: str, stdout_records: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given a handler whose AWS call was throttled (or failed) on every botocore attempt
    handler = _failing(fault)

    # When it runs, then it raises the error the state machine retries, chained from botocore's
    with pytest.raises(AwsTransientError, match=code) as raised:
        handler({}, None)
    assert raised.value.__cause__ is fault
    # And one retry is counted for the stage and the error
    assert _retries(stdout_records()) == [
        {
            "service": "totes-pipeline",
            "stage": "load",
            "error": "AwsTransientError",
            "Retries": [1.0],
        }
    ]


def test_an_unreachable_endpoint_is_transient_too() -> None:
    with pytest.raises(AwsTransientError, match="EndpointConnectionError"):
        _failing(EndpointConnectionError(endpoint_url="https://s3.eu-west-2.amazonaws.com"))({}, 0)


def test_a_database_fault_named_at_the_session_passes_through_counted(
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a handler whose session was ended by the server (named where it happened)
    fault = DatabaseTransientError("PostgreSQL at etl@db:5432/warehouse: AdminShutdown: ...")

    # When it runs, then the same error goes to the state machine, and is counted
    with pytest.raises(DatabaseTransientError) as raised:
        _failing(fault)({}, None)
    assert raised.value is fault
    assert [point["error"] for point in _retries(stdout_records())] == ["DatabaseTransientError"]


def test_a_permanent_error_is_neither_renamed_nor_counted(
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a handler refused by S3 (a missing grant: no retry will help)
    denied = ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")

    # When it runs, then the error is botocore's own, and no retry is counted
    with pytest.raises(ClientError) as raised:
        _failing(denied)({}, None)
    assert raised.value is denied
    assert _retries(stdout_records()) == []
