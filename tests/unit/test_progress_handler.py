"""The progress Lambda handler as CheckProgress calls it: the pass in, the next state out,
and the backlog metric the BacklogGrowing alarm watches, as EMF."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.progress.handler import handler
from totes.errors import InvalidEventError
from totes.names import METRICS_NAMESPACE, SERVICE_NAME, MetricName
from totes.observability import logger


@dataclass
class FakeContext:
    function_name: str = "totes-progress"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-2:123456789012:function:totes-progress"
    aws_request_id: str = "request-1"


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines (logs and EMF) the function printed, as CloudWatch receives them."""
    logs = io.StringIO()
    log_handler = logger.registered_handler
    previous = log_handler.setStream(logs)  # type: ignore[attr-defined]

    def read() -> list[dict[str, Any]]:
        text = logs.getvalue() + capsys.readouterr().out
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield read
    log_handler.setStream(previous)  # type: ignore[attr-defined]


def _event(*, started_ago: float, **fields: Any) -> dict[str, Any]:
    started = (datetime.now(UTC) - timedelta(seconds=started_ago)).isoformat()
    return {
        "run_id": "2024-11-14T09:00:00Z-exec-1",
        "passes_done": 0,
        "execution_started": started,
        "pass_started": started,
        "tables": {},
        "totals": {},
        **fields,
    }


def test_an_execution_that_ends_publishes_its_backlog_and_passes(
    printed: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a pass that took most of the budget and left sales orders behind
    event = _event(
        started_ago=150,
        ingested=[{"table": "sales_order", "rows": 50, "has_more": True, "remaining": 617_500}],
    )

    # When CheckProgress invokes the function
    state = handler(event, FakeContext())

    # Then the execution ends (no time for another pass), saying what remains
    assert (state["verdict"], state["next_pass"], state["caught_up"]) == (
        "out_of_time",
        False,
        False,
    )
    assert state["remaining"]["sales_order"]["remaining"] == 617_500
    # And the backlog and the passes go out as EMF, with the service dimension alone
    blobs = [record for record in printed() if "_aws" in record]
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
    printed: Callable[[], list[dict[str, Any]]],
) -> None:
    # Given a quick pass with rows left
    event = _event(
        started_ago=1, ingested=[{"table": "staff", "rows": 5, "has_more": True, "remaining": 3}]
    )

    # When CheckProgress invokes the function
    state = handler(event, FakeContext())

    # Then another pass follows, for staff and what is built from it
    assert state["next_pass"] is True
    assert state["tables"]["source"] == ["staff"]
    assert state["tables"]["warehouse"] == ["dim_staff"]
    # And the backlog is published once per execution, when it ends: not now
    records = printed()
    assert [record for record in records if "_aws" in record] == []
    # And the log line says which pass it was and what it decided
    (line,) = [record for record in records if record.get("message", "").startswith("pass 1")]
    assert line["correlation_id"] == event["run_id"]
    assert line["verdict"] == "keep_going"


def test_an_event_without_the_pass_count_is_refused_by_name() -> None:
    # Given an event that lost its passes_done (a definition edited by hand)
    event = _event(started_ago=1)
    del event["passes_done"]

    # When the function is invoked, Then it names the missing field
    with pytest.raises(InvalidEventError, match="progress event: passes_done is not set"):
        handler(event, FakeContext())
