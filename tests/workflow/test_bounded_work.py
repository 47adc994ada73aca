"""An execution's work is bounded by what is new, not by the history behind it: an idle
execution asks AWS for as much after many executions as after a few."""

from __future__ import annotations

from collections import Counter

import pytest

from totes.db import connect
from totes_local.runtime.call_trail import call_counts
from totes_local.source.mutate import mutate

from .support import WorkflowFactory

pytestmark = pytest.mark.slow


def _s3_requests(endpoint: str) -> Counter[str]:
    """S3 requests of every function so far, by action."""
    totals: Counter[str] = Counter()
    for actions in call_counts(endpoint).values():
        totals.update({a: n for a, n in actions.items() if a.startswith("s3:")})
    return totals


def test_an_idle_execution_makes_as_many_s3_requests_after_60_executions_as_after_10(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        assert workflow.service is not None
        endpoint = workflow.service.service.endpoint
        assert workflow.execute().status == "SUCCEEDED"
        idle: dict[int, Counter[str]] = {}
        for done in range(1, 61):
            # Given executions that each follow a change in the source
            with connect(seeded_source_dsn) as conn:
                mutate(conn, seed=100 + done, changes=1)
            assert workflow.execute().status == "SUCCEEDED"
            if done in (10, 60):
                # When an execution follows no change
                before = _s3_requests(endpoint)
                assert workflow.execute().status == "SUCCEEDED"
                idle[done] = _s3_requests(endpoint) - before

    # Then it makes the same S3 requests, action by action, after 60 as after 10
    assert idle[60] == idle[10], (idle[10], idle[60])
    assert sum(idle[10].values()) > 0
