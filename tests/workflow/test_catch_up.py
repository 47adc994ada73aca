"""A backlog of any size is caught up: the state machine loops over passes while work
remains and its time budget allows, an execution out of time says what remains, and
`totes run` keeps going until the warehouse has caught up (DESIGN.md section 11)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from totes.db import connect, row_counts
from totes.names import (
    METRICS_NAMESPACE,
    SERVICE_NAME,
    MetricName,
)
from totes.tables import SOURCE_TABLES
from totes.warehouse.reconcile import reconcile
from totes_local.runtime.console import ProgressPrinter
from totes_local.runtime.history import Outcome

from .support import REPO_ROOT, WorkflowFactory

pytestmark = pytest.mark.slow

#: Far below the seeded source's largest tables (about 110 sales orders, 160 payments).
SMALL_BITE = 40


def _assert_reconciled(source_dsn: str, warehouse_dsn: str) -> None:
    with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


def _source_counts(dsn: str) -> dict[str, int]:
    with connect(dsn) as conn:
        return row_counts(conn, SOURCE_TABLES)


def test_one_totes_run_catches_up_a_source_larger_than_every_stage_limit(
    seeded_source_dsn: str, warehouse_dsn: str, service_dir: Path, tmp_path: Path
) -> None:
    # Given a source whose big tables need several bites of every stage
    counts = _source_counts(seeded_source_dsn)
    assert counts["sales_order"] > 2 * SMALL_BITE

    # When `totes run` runs with small limits (as `cdk deploy -c ...` would set them)
    graph = tmp_path / "graph.md"
    completed = subprocess.run(  # noqa: S603 (this interpreter running the totes command)
        [
            sys.executable,
            *("-m", "totes_local.cli", "run", "--json"),
            *("--source-dsn", seeded_source_dsn, "--warehouse-dsn", warehouse_dsn),
            *("--data-dir", str(service_dir), "--graph", str(graph)),
            *("-c", f"ingest_max_rows={SMALL_BITE}", "-c", f"transform_max_rows={SMALL_BITE}"),
            *("-c", "load_max_files=1"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )

    # Then it succeeds, caught up, having looped through several passes
    assert completed.returncode == 0, completed.stderr
    executions = [json.loads(line) for line in completed.stdout.splitlines()]
    last = executions[-1]
    assert (last["status"], last["caught_up"], last["remaining"]) == ("SUCCEEDED", True, {})
    assert sum(execution["passes"] for execution in executions) > 2
    assert "Caught up with the source" in completed.stderr
    assert "Pass 2" in completed.stderr
    # And every source row was ingested exactly once, in bites no larger than the limit
    ingested = {
        table: sum(execution["tables"][table]["ingested"] for execution in executions)
        for table in SOURCE_TABLES
    }
    assert ingested == counts
    # And the warehouse equals a rebuild from the source
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    # And the graph shows the loop as an edge of its own, taken
    page = graph.read_text()
    assert '-- "$.next_pass is true" -->' in page
    assert "| StartNextPass | Pass | succeeded |" in page


def test_an_execution_out_of_time_ends_successfully_saying_what_remains_and_the_next_continues(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    # Given small ingest batches and a budget that leaves no room for a second pass
    counts = _source_counts(seeded_source_dsn)
    limits = {"INGEST_MAX_ROWS": str(SMALL_BITE), "CATCH_UP_BUDGET_SECONDS": "0"}
    with local_workflow(seeded_source_dsn, warehouse_dsn, extra_environment=limits) as workflow:
        # When one execution runs
        first = workflow.execute()
        backlog = workflow.client("cloudwatch").get_metric_statistics(
            Namespace=METRICS_NAMESPACE,
            MetricName=MetricName.BACKLOG_ROWS,
            Dimensions=[{"Name": "service", "Value": SERVICE_NAME}],
            StartTime=first.started,
            EndTime=(first.stopped or first.started) + timedelta(seconds=1),
            Period=1,
            Statistics=["Maximum"],
        )["Datapoints"]

        # Then it succeeds after one pass, not caught up, and says what each table has left
        assert first.status == "SUCCEEDED"
        assert (first.passes, first.caught_up) == (1, False)
        assert first.output["verdict"] == "out_of_time"
        assert first.history.outcome("StartNextPass") is Outcome.NOT_RUN
        remaining = first.remaining()
        assert remaining["sales_order"]["remaining"] == counts["sales_order"] - SMALL_BITE
        assert first.tables()["sales_order"]["ingested"] == SMALL_BITE
        # And the backlog it left is published for the alarm
        expected = sum(max(0, count - SMALL_BITE) for count in counts.values())
        assert [point["Maximum"] for point in backlog] == [expected]

        # When executions follow, like schedule ticks
        second = workflow.execute()
        later = [second]
        while not later[-1].caught_up and len(later) < 10:
            later.append(workflow.execute())

    # Then each continues where the one before stopped (no row ingested twice)
    assert second.tables()["sales_order"]["ingested"] == SMALL_BITE
    assert second.remaining()["sales_order"]["remaining"] == counts["sales_order"] - 2 * SMALL_BITE
    assert later[-1].caught_up
    total = {
        table: sum(report.tables()[table]["ingested"] for report in (first, *later))
        for table in SOURCE_TABLES
    }
    assert total == counts
    # And the warehouse equals a rebuild from the source
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)


def _totals(report: Any) -> dict[str, dict[str, int]]:
    return dict(report.output["tables"])


def test_the_execution_output_adds_up_every_pass(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    # Given small bites of every stage and the default budget
    limits = {
        "INGEST_MAX_ROWS": str(SMALL_BITE),
        "TRANSFORM_MAX_ROWS": str(SMALL_BITE),
        "LOAD_MAX_FILES": "1",
    }
    counts = _source_counts(seeded_source_dsn)
    printed = Console(record=True, width=300)
    with local_workflow(seeded_source_dsn, warehouse_dsn, extra_environment=limits) as workflow:
        # When one execution runs, followed in the terminal
        report = workflow.execute(on_progress=ProgressPrinter(printed))

    # Then it catches up alone, in several passes
    assert report.status == "SUCCEEDED"
    assert report.caught_up
    assert report.passes > 2
    # And the terminal says, before the second pass, which source tables still have rows
    pass_two = next(line for line in printed.export_text().splitlines() if "Pass 2" in line)
    assert "source tables with rows left: " in pass_two
    assert "rows left: none" not in pass_two
    # And its output's totals are the sums of what each pass's handlers reported
    totals = _totals(report)
    tables = report.tables()
    for table in SOURCE_TABLES:
        assert totals[table]["ingested"] == tables[table]["ingested"] == counts[table]
    for fact, source_table in (("fact_sales_order", "sales_order"), ("fact_payment", "payment")):
        assert totals[fact]["loaded"] == tables[fact]["loaded"] == counts[source_table]
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
