"""The synthesised state machine, executed by moto's interpreter with the real handlers,
against real PostgreSQL: first load, incremental changes, faults in every stage, and a
second run in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from totes.db import connect, row_counts, with_database
from totes.errors import WatermarkConflictError
from totes.names import (
    FACT_TABLES,
    METRICS_NAMESPACE,
    SOURCE_TABLES,
    WAREHOUSE_TABLES,
    MetricName,
)
from totes.transform import stage as transform_stage
from totes.warehouse.reconcile import reconcile
from totes.warehouse.schema import init_warehouse
from totes_local.cli import EXIT_FAILURE, main
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.history import Outcome
from totes_local.runtime.platform import LOCAL_REGION
from totes_local.runtime.workflow import ExecutionReport, LocalWorkflow
from totes_local.source.mutate import mutate

from .support import REPO_ROOT, WorkflowFactory, warehouse_digest

pytestmark = pytest.mark.slow

FACT_SOURCES = {
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}
END_STATES = {"NotifyFailure", "PipelineFailed"}


class InjectedFaultError(Exception):
    """Raised by a test in place of one table's work."""


def _assert_reconciled(source_dsn: str, warehouse_dsn: str) -> None:
    with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


def _succeeded(report: ExecutionReport) -> ExecutionReport:
    assert report.status == "SUCCEEDED", json.dumps(report.to_json(), indent=1)
    return report


def test_one_execution_fills_every_warehouse_table_with_a_rebuild_of_the_source(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory, tmp_path: Path
) -> None:
    # Given a seeded source and an empty warehouse
    with connect(seeded_source_dsn) as conn:
        source_counts = row_counts(conn, SOURCE_TABLES)

    # When the synthesised state machine runs once
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        report = _succeeded(workflow.execute())
        metrics = boto3.client("cloudwatch", region_name=LOCAL_REGION).list_metrics(
            Namespace=METRICS_NAMESPACE
        )["Metrics"]
        notifications = workflow.notifications()

    # Then every table is populated and the warehouse equals a rebuild from the source
    with connect(warehouse_dsn) as conn:
        counts = row_counts(conn, WAREHOUSE_TABLES)
    assert all(counts[table] > 0 for table in WAREHOUSE_TABLES), counts
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    tables = report.tables()
    assert {table: tables[table]["ingested"] for table in SOURCE_TABLES} == source_counts
    for fact, source_table in FACT_SOURCES.items():
        assert tables[fact]["loaded"] == counts[fact] == source_counts[source_table]
    # And every state ran except the failure path, with its own log lines and metrics
    outcomes = report.history.outcomes()
    assert {name for name, outcome in outcomes.items() if outcome is Outcome.NOT_RUN} == END_STATES
    assert all(
        outcome is Outcome.SUCCEEDED for name, outcome in outcomes.items() if name not in END_STATES
    )
    assert report.to_json()["tables"] == tables
    assert notifications == []
    log_lines = [
        json.loads(line) for line in (tmp_path / "pipeline.jsonl").read_text().splitlines()
    ]
    assert report.run_id is not None
    assert report.run_id.endswith(report.name)
    assert {line.get("correlation_id") for line in log_lines if "correlation_id" in line} == {
        report.run_id
    }
    assert {metric["MetricName"] for metric in metrics} >= {
        MetricName.ROWS_INGESTED,
        MetricName.ROWS_TRANSFORMED,
        MetricName.ROWS_LOADED,
        MetricName.FRESHNESS_LAG_SECONDS,
    }
    assert report.freshness_lag_s is not None
    assert report.freshness_lag_s > 0


def _fact_count(dsn: str, fact: str) -> int:
    with connect(dsn) as conn:
        return row_counts(conn, (fact,))[fact]


def test_after_source_changes_only_changed_rows_move_and_dimensions_cascade(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        # Given a warehouse loaded from the source
        _succeeded(workflow.execute())
        facts_before = {fact: _fact_count(warehouse_dsn, fact) for fact in FACT_TABLES}

        # When orders, payments, staff and addresses change, and a department moves city
        with connect(seeded_source_dsn) as conn:
            changes = mutate(conn, seed=11, changes=40)
            largest = conn.execute(
                "SELECT department_id, count(*) FROM staff GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
            ).fetchone()
            assert largest is not None
            department, staff = int(largest[0]), int(largest[1])
            conn.execute(
                "UPDATE department SET location = 'Sheffield', last_updated = greatest("
                "localtimestamp(3), (SELECT max(last_updated) FROM department) + interval '1 ms'"
                ") WHERE department_id = %s",
                (department,),
            )
        touched = {table: set[int]() for table in SOURCE_TABLES}
        for table, key in [*changes.touched, ("department", department)]:
            touched[table].add(key)
        report = _succeeded(workflow.execute())

    # Then unchanged tables move nothing, and changed tables at least their changed rows
    tables = report.tables()
    for table in SOURCE_TABLES:
        if touched[table]:
            assert tables[table]["ingested"] >= len(touched[table]), table
        else:
            assert tables[table]["ingested"] == 0, table
    # And each changed order version adds exactly one fact row, and nothing else does
    for fact, source_table in FACT_SOURCES.items():
        added = _fact_count(warehouse_dsn, fact) - facts_before[fact]
        assert added == len(touched[source_table]), fact
        assert tables[fact]["loaded"] == added, fact
    # And the department's move reached every staff member's dimension row
    assert tables["dim_staff"]["transformed"] >= staff
    with connect(warehouse_dsn) as conn:
        moved = conn.execute(
            "SELECT count(*) FROM dim_staff WHERE location = 'Sheffield'"
        ).fetchone()
    assert moved is not None
    assert moved[0] >= staff
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)


@pytest.fixture(scope="module")
def fault_free_digest(
    cloud_assembly: CloudAssembly,
    database_factory: Callable[..., str],
    pg_server: Any,
    small_source_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, str]]:
    """The warehouse one fault-free execution builds from the small source."""
    source = with_database(
        pg_server.admin_dsn, database_factory("source", template=small_source_template)
    )
    warehouse = with_database(pg_server.admin_dsn, database_factory("warehouse"))
    with connect(warehouse) as conn:
        init_warehouse(conn)
    with LocalWorkflow(
        cloud_assembly,
        source_dsn=source,
        warehouse_dsn=warehouse,
        log_path=tmp_path_factory.mktemp("fault-free") / "pipeline.jsonl",
    ) as workflow:
        _succeeded(workflow.execute())
    return warehouse_digest(warehouse)


@dataclass(frozen=True)
class Fault:
    """An exception raised in one Task state's handler, for one item of its Map."""

    state: str
    #: The core function the handler calls, patched on the handler module.
    attribute: str
    item: str
    error: type[Exception]
    #: 1 + the retries the state machine's Retry rules allow for that error.
    attempts: int

    def inject(self, monkeypatch: pytest.MonkeyPatch, workflow: LocalWorkflow) -> None:
        """Make the core function of the state's handler raise ``error`` for ``item`` only."""
        module = workflow.function_for_state(self.state).module
        real = getattr(module, self.attribute)

        def failing(request: Any, *args: Any, **kwargs: Any) -> Any:
            if self.item in (getattr(request, "table", None), getattr(request, "target", None)):
                raise self.error(f"injected into {self.state} for {self.item}")
            return real(request, *args, **kwargs)

        monkeypatch.setattr(module, self.attribute, failing)


FAULTS = [
    Fault("IngestTable", "ingest_table", "sales_order", InjectedFaultError, 1),
    Fault("IngestTable", "ingest_table", "staff", WatermarkConflictError, 3),
    Fault("TransformTable", "transform_target", "dim_staff", InjectedFaultError, 1),
    Fault("LoadDimension", "load_target", "dim_location", InjectedFaultError, 1),
    Fault("LoadFact", "load_target", "fact_sales_order", InjectedFaultError, 1),
]


@pytest.mark.parametrize(
    "fault", FAULTS, ids=[f"{f.state}-{f.item}-{f.error.__name__}" for f in FAULTS]
)
def test_a_fault_in_any_task_fails_the_execution_there_and_the_next_one_repairs_the_warehouse(
    fault: Fault,
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    fault_free_digest: dict[str, tuple[int, str]],
) -> None:
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        # Given one table's work in one stage raises
        with pytest.MonkeyPatch.context() as patch:
            fault.inject(patch, workflow)
            # When the state machine runs
            failed = workflow.execute()
        notifications = workflow.notifications()
        # And runs again once the fault is gone
        repaired = workflow.execute()

    # Then the execution fails in that state, with the exception's type as its error
    assert failed.status == "FAILED"
    error = fault.error.__name__
    assert failed.error == error
    assert json.loads(failed.cause or "{}")["errorType"] == error
    entry = failed.failed_entry
    assert entry is not None
    assert (entry.name, entry.item, entry.error, entry.attempts) == (
        fault.state,
        fault.item,
        error,
        fault.attempts,
    )
    outcomes = failed.history.outcomes()
    assert outcomes[fault.state] is Outcome.FAILED
    assert outcomes["RunPipeline"] is Outcome.FAILED
    assert outcomes["Summarise"] is Outcome.NOT_RUN
    assert (outcomes["NotifyFailure"], outcomes["PipelineFailed"]) == (
        Outcome.SUCCEEDED,
        Outcome.FAILED,
    )
    assert f"| {fault.state} | Task | failed |" in failed.markdown()
    # And the alert topic is told which execution failed, and why
    assert [note.subject for note in notifications] == [
        "totes data platform: a pipeline execution failed"
    ]
    assert failed.name in notifications[0].message
    assert error in notifications[0].message
    # And the next execution leaves exactly the warehouse a fault-free run builds
    _succeeded(repaired)
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    assert warehouse_digest(warehouse_dsn) == fault_free_digest


def test_a_second_run_in_a_fresh_process_keeps_the_warehouse_exact(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    tmp_path: Path,
) -> None:
    # Given a warehouse loaded by one run
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        first = _succeeded(workflow.execute())
    loaded = warehouse_digest(warehouse_dsn)
    with connect(seeded_source_dsn) as conn:
        source_counts = row_counts(conn, SOURCE_TABLES)

    # When `totes run` runs in a new process: new buckets, no watermarks
    graph = tmp_path / "graph.md"
    completed = subprocess.run(  # noqa: S603 (this interpreter running the totes command)
        [
            sys.executable,
            "-m",
            "totes_local.cli",
            "run",
            "--source-dsn",
            seeded_source_dsn,
            "--warehouse-dsn",
            warehouse_dsn,
            "--data-dir",
            str(tmp_path / "second"),
            "--cdk-out",
            str(cloud_assembly.directory),
            "--json",
            "--graph",
            str(graph),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    # Then it re-ingests everything and the load adds nothing: no fact twice
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.splitlines()
    result = json.loads(line)
    assert result["status"] == "SUCCEEDED"
    assert result["execution"] != first.name
    assert {table: result["tables"][table]["ingested"] for table in SOURCE_TABLES} == source_counts
    for fact, source_table in FACT_SOURCES.items():
        assert result["tables"][fact]["loaded"] == 0
        assert result["tables"][fact]["skipped"] == source_counts[source_table]
    assert warehouse_digest(warehouse_dsn) == loaded
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    # And it says where the logs and the graph of the execution are
    assert "SUCCEEDED" in completed.stderr
    assert str(tmp_path / "second" / "logs" / "pipeline.jsonl") in completed.stderr
    page = graph.read_text()
    assert "```mermaid\nflowchart TD" in page
    assert "| LoadFact | Task | succeeded | 3 |" in page
    assert "| NotifyFailure | Task | not run | 0 |" in page


def test_totes_run_names_the_failing_state_error_and_cause_and_exits_non_zero(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the transform of one warehouse table raises (patched where the handler finds it)
    real = transform_stage.transform_target

    def failing(request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.target == "dim_staff":
            raise InjectedFaultError("the staff shapes are broken")
        return real(request, *args, **kwargs)

    graph = tmp_path / "graph.md"

    # When `totes run` runs the state machine
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transform_stage, "transform_target", failing)
        status = main(
            [
                "run",
                *("--source-dsn", seeded_source_dsn, "--warehouse-dsn", warehouse_dsn),
                *("--data-dir", str(tmp_path), "--cdk-out", str(cloud_assembly.directory)),
                *("--json", "--graph", str(graph)),
            ]
        )

    # Then it exits non-zero, naming the state, the error and the cause
    captured = capsys.readouterr()
    assert status == EXIT_FAILURE
    (line,) = captured.out.splitlines()
    result = json.loads(line)
    assert (result["status"], result["error"]) == ("FAILED", "InjectedFaultError")
    assert (result["failed_state"], result["failed_item"]) == ("TransformTable", "dim_staff")
    assert json.loads(result["cause"])["errorMessage"] == "the staff shapes are broken"
    assert "in state TransformTable (dim_staff)" in captured.err
    assert "error: InjectedFaultError" in captured.err
    assert "cause: the staff shapes are broken" in captured.err
    # And the graph shows where it stopped
    page = graph.read_text()
    assert "| TransformTable | Task | failed | 11 |" in page
    assert "| LoadDimensions | Map | not run | 0 |" in page
    assert "| NotifyFailure | Task | succeeded | 1 |" in page
    assert "✖ InjectedFaultError (dim_staff)" in page
    # And the handlers' logs went to the log file, not to the terminal
    logged = (tmp_path / "logs" / "pipeline.jsonl").read_text()
    assert '"errorType": "InjectedFaultError"' in logged
    assert "correlation_id" not in captured.out + captured.err
