"""The progress Lambda handler as CheckProgress calls it: the pass in, the next state out,
and the backlog metric the BacklogGrowing alarm watches, as EMF."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.progress.handler import handler
from tests.lambda_context import FakeContext
from totes.errors import InvalidEventError
from totes.names import METRICS_NAMESPACE, SERVICE_NAME, MetricName


def _event(*, started_ago: float, **fields: Any) -> dict[str, Any]:
    started = (datetime.now(UTC) - timedelta(seconds=started_ago)).isoformat()
    return {
        "run_id": "2024-11-14T09:00:00Z-exec-1",
        "passes": 0,
        "execution_started": started,
        "pass_started": started,
        "visiting": {},
        "tables": {},
        **fields,
    }


def test_an_execution_that_ends_publishes_its_backlog_and_passes(
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a pass that took most of the budget and left sales orders behind
    event = _event(
        started_ago=150,
        ingested=[
            {
                "table": "sales_order",
                "run_id": "r",
                "rows": 50,
                "has_more": True,
                "remaining": 617_500,
            }
        ],
    )

    # When CheckProgress invokes the function
    state = handler(event, FakeContext("totes-progress"))

    # Then the execution ends (no time for another pass), saying what remains
    assert (state["verdict"], state["next_pass"], state["caught_up"]) == (
        "out_of_time",
        False,
        False,
    )
    assert state["remaining"]["sales_order"]["remaining"] == 617_500
    # And the backlog and the passes go out as EMF, with the service dimension alone
    blobs = [record for record in stdout_records() if "_aws" in record]
    metrics = {
        definition["Name"]: blob
        for blob in blobs
        for directive in blob["_aws"]["CloudWatchMetrics"]
        for definition in directive["Metrics"]
    }
    backlog = metrics[MetricName.BACKLOG_ROWS]
    assert backlog[MetricName.BACKLOG_ROWS] == [617_500]
    assert backlog["_aws"]["CloudWatchMetrics"][0]["Namespace"] == METRICS_NAMESPACE
    assert backlog["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert backlog["service"] == SERVICE_NAME
    assert metrics[MetricName.CATCH_UP_PASSES][MetricName.CATCH_UP_PASSES] == [1]


def test_a_pass_followed_by_another_publishes_no_backlog_yet(
    stdout_records: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a quick pass with rows left
    event = _event(
        started_ago=1,
        ingested=[{"table": "staff", "run_id": "r", "rows": 5, "has_more": True, "remaining": 3}],
    )

    # When CheckProgress invokes the function
    state = handler(event, FakeContext("totes-progress"))

    # Then another pass follows, for staff and what is built from it
    assert state["next_pass"] is True
    assert state["visiting"]["source"] == ["staff"]
    assert state["visiting"]["warehouse"] == ["dim_staff"]
    # And the backlog is published once per execution, when it ends: not now
    records = stdout_records()
    assert [record for record in records if "_aws" in record] == []
    # And the log line says which pass it was and what it decided
    (line,) = [record for record in records if record.get("message", "").startswith("pass 1")]
    assert line["correlation_id"] == event["run_id"]
    assert line["verdict"] == "keep_going"


def test_an_event_without_the_pass_count_is_refused_by_name() -> None:
    # Given an event that lost its passes (a definition edited by hand)
    event = _event(started_ago=1)
    del event["passes"]

    # When the function is invoked, Then it names the missing field
    with pytest.raises(InvalidEventError, match="progress event: passes is not set"):
        handler(event, FakeContext("totes-progress"))
