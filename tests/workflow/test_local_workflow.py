"""The synthesised state machine, run by the local AWS service with the real handlers in
Lambda workers, against real PostgreSQL: first load, incremental changes, faults in every
stage (exceptions, timeouts, crashed workers), state kept between `totes run` processes,
--fresh, a killed service, and `totes stop`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from totes.db import connect, row_counts, with_database
from totes.failure_notice import FailedState, decode_failure
from totes.names import (
    METRICS_NAMESPACE,
    MetricName,
)
from totes.tables import (
    FACT_TABLES,
    SOURCE_TABLES,
    WAREHOUSE_TABLES,
)
from totes.warehouse.reconcile import reconcile
from totes.warehouse.schema import init_warehouse
from totes_local.cli import EXIT_FAILURE, main
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.history import Outcome
from totes_local.runtime.service import find_service, stop_service
from totes_local.runtime.workflow import ExecutionReport, LocalWorkflow
from totes_local.source.mutate import mutate

from .support import (
    REPO_ROOT,
    Fault,
    WorkflowFactory,
    faulty_assembly,
    invocation_reports,
    log_records,
    warehouse_digest,
)

pytestmark = pytest.mark.slow

FACT_SOURCES = {
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}
#: The failure path: each task's <Task>Failed and <Task>Stopped, then the notification.
FAILURE_PATH = {"DescribeFailure", "UseRawFailure", "NotifyFailure", "PipelineFailed"}
#: States only a run with work left after its first pass enters.
LOOP_STATES = {"StartNextPass"}


def _assert_reconciled(source_dsn: str, warehouse_dsn: str) -> None:
    with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


def _succeeded(report: ExecutionReport) -> ExecutionReport:
    assert report.status == "SUCCEEDED", json.dumps(report.to_json(), indent=1)
    return report


def test_one_execution_fills_every_warehouse_table_with_a_rebuild_of_the_source(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    # Given a seeded source and an empty warehouse
    with connect(seeded_source_dsn) as conn:
        source_counts = row_counts(conn, SOURCE_TABLES)

    # When the synthesised state machine runs once
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        report = _succeeded(workflow.execute())
        metrics = workflow.client("cloudwatch").list_metrics(Namespace=METRICS_NAMESPACE)["Metrics"]
        notifications = workflow.notifications()
        log_lines = log_records(workflow)

    # Then every table is populated and the warehouse equals a rebuild from the source
    with connect(warehouse_dsn) as conn:
        counts = row_counts(conn, WAREHOUSE_TABLES)
    assert all(counts[table] > 0 for table in WAREHOUSE_TABLES), counts
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    tables = report.tables()
    assert {table: tables[table]["ingested"] for table in SOURCE_TABLES} == source_counts
    for fact, source_table in FACT_SOURCES.items():
        assert tables[fact]["loaded"] == counts[fact] == source_counts[source_table]
    # And every state ran except the failure path and the loop (one pass caught up),
    # with its own log lines and metrics
    outcomes = report.history.outcomes()
    not_run = LOOP_STATES | {
        name for name in outcomes if name in FAILURE_PATH or name.endswith(("Failed", "Stopped"))
    }
    assert {name for name, outcome in outcomes.items() if outcome is Outcome.NOT_RUN} == not_run
    assert all(
        outcome is Outcome.SUCCEEDED for name, outcome in outcomes.items() if name not in not_run
    )
    assert (report.caught_up, report.passes, report.remaining()) == (True, 1, {})
    assert report.to_json()["tables"] == tables
    assert notifications == []
    assert report.local_state == "fresh"
    assert report.run_id is not None
    assert report.run_id.endswith(report.name)
    assert {line.get("correlation_id") for line in log_lines if "correlation_id" in line} == {
        report.run_id
    }
    assert {metric["MetricName"] for metric in metrics} >= {
        MetricName.FRESHNESS_LAG_SECONDS,
        MetricName.BACKLOG_ROWS,
        MetricName.CATCH_UP_PASSES,
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
    service_dir: Path,
) -> dict[str, tuple[int, str]]:
    """The warehouse one fault-free execution builds from the small source."""
    source = with_database(
        pg_server.admin_dsn, database_factory("source", template=small_source_template)
    )
    warehouse = with_database(pg_server.admin_dsn, database_factory("warehouse"))
    with connect(warehouse) as conn:
        init_warehouse(conn)
    with LocalWorkflow(
        cloud_assembly, source_dsn=source, warehouse_dsn=warehouse, data_dir=service_dir
    ) as workflow:
        _succeeded(workflow.execute())
    return warehouse_digest(warehouse)


@dataclass(frozen=True)
class FaultCase:
    """A fault, the Lambda error the state machine sees, and the attempts its Retry allows."""

    fault: Fault
    error: str
    #: 1 + the retries the state machine's Retry rules allow for that error.
    attempts: int


FAULTS = [
    FaultCase(
        Fault("IngestTable", "ingest_table", "sales_order", "raise InjectedFaultError('boom')"),
        "InjectedFaultError",
        1,
    ),
    FaultCase(
        Fault("IngestTable", "ingest_table", "staff", "raise WatermarkConflictError('moved')"),
        "WatermarkConflictError",
        3,
    ),
    FaultCase(
        Fault("TransformTable", "transform_target", "dim_staff", "raise InjectedFaultError()"),
        "InjectedFaultError",
        1,
    ),
    FaultCase(
        Fault("LoadDimension", "load_target", "dim_location", "raise InjectedFaultError()"),
        "InjectedFaultError",
        1,
    ),
    FaultCase(
        Fault("LoadFact", "load_target", "fact_sales_order", "raise InjectedFaultError()"),
        "InjectedFaultError",
        1,
    ),
    # The function's timeout, shortened for the test, is enforced: the worker is killed.
    FaultCase(
        Fault("IngestTable", "ingest_table", "design", "_fault_time.sleep(60)", {"Timeout": 2}),
        "Sandbox.Timedout",
        1,
    ),
    # A worker that exits or is killed mid-invocation is reported as Lambda reports it.
    FaultCase(
        Fault("TransformTable", "transform_target", "dim_currency", "_fault_os._exit(3)"),
        "Runtime.ExitError",
        1,
    ),
    FaultCase(
        Fault(
            "LoadFact",
            "load_target",
            "fact_payment",
            "_fault_os.kill(_fault_os.getpid(), _fault_signal.SIGKILL)",
        ),
        "Runtime.ExitError",
        1,
    ),
]


@pytest.mark.parametrize(
    "case",
    FAULTS,
    ids=[f"{c.fault.state}-{c.fault.item}-{c.error}" for c in FAULTS],
)
def test_a_fault_in_any_task_fails_the_execution_there_and_the_next_one_repairs_the_warehouse(
    case: FaultCase,
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    fault_free_digest: dict[str, tuple[int, str]],
    tmp_path: Path,
) -> None:
    fault = case.fault
    # Given a deployment whose code for one table in one stage misbehaves
    broken = faulty_assembly(cloud_assembly, fault, tmp_path / "faulty-cdk.out")
    with local_workflow(seeded_source_dsn, warehouse_dsn, assembly=broken) as workflow:
        # When the state machine runs
        failed = workflow.execute()
        notifications = workflow.notifications()
    # And runs again once the fixed code is deployed
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        repaired = workflow.execute()

    # Then the execution fails in that state, with the error the Lambda service names
    assert failed.status == "FAILED"
    assert failed.error == case.error
    cause = FailedState.model_validate_json(failed.cause or "")
    assert (cause.state, cause.item) == (fault.state, fault.item)
    assert json.loads(cause.cause or "{}")["errorType"] == case.error
    entry = failed.failed_entry
    assert entry is not None
    assert (entry.name, entry.item, entry.error, entry.attempts) == (
        fault.state,
        fault.item,
        case.error,
        case.attempts,
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
    # And the alert topic is told which state failed, for which table, and why
    assert [note.subject for note in notifications] == [
        f"totes: {fault.state} failed for {fault.item} ({case.error})"
    ]
    body = notifications[0].message
    assert f"execution {failed.name} failed" in body
    assert f"Error:          {case.error}\n" in body
    assert f"Message:        {failed.cause_message}\n" in body
    assert f"Run id:         {failed.run_id}\n" in body
    assert f"#/express-executions/details/{failed.arn}?startDate=" in body
    assert "stackTrace" not in body
    # And the next execution leaves exactly the warehouse a fault-free run builds
    _succeeded(repaired)
    assert repaired.local_state == "continued"
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    assert warehouse_digest(warehouse_dsn) == fault_free_digest


def _totes_run(*arguments: str) -> dict[str, Any]:
    """``totes run --json`` in a process of its own; its one JSON line, parsed."""
    completed = subprocess.run(  # noqa: S603 (this interpreter running the totes command)
        [sys.executable, "-m", "totes_local.cli", "run", "--json", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.splitlines()
    result: dict[str, Any] = json.loads(line)
    result["stderr"] = completed.stderr
    return result


def test_totes_run_processes_in_a_row_continue_one_state_and_fresh_starts_over(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    tmp_path: Path,
) -> None:
    common = (
        *("--source-dsn", seeded_source_dsn, "--warehouse-dsn", warehouse_dsn),
        *("--data-dir", str(service_dir), "--cdk-out", str(cloud_assembly.directory)),
    )
    with connect(seeded_source_dsn) as conn:
        source_counts = row_counts(conn, SOURCE_TABLES)

    # Given one `totes run` process that loaded the warehouse and exited
    first = _totes_run(*common)
    assert first["status"] == "SUCCEEDED"
    assert {t: first["tables"][t]["ingested"] for t in SOURCE_TABLES} == source_counts

    # When the source changes and a second `totes run` process runs
    with connect(seeded_source_dsn) as conn:
        changes = mutate(conn, seed=5, changes=10)
    touched = {table: set[int]() for table in SOURCE_TABLES}
    for table, key in changes.touched:
        touched[table].add(key)
    graph = tmp_path / "graph.md"
    second = _totes_run(*common, "--graph", str(graph))

    # Then it continues the first one's state: only the changes are ingested
    assert (second["status"], second["local_state"]) == ("SUCCEEDED", "continued")
    assert "continued" in second["stderr"]
    for table in SOURCE_TABLES:
        ingested = second["tables"][table]["ingested"]
        if touched[table]:
            assert ingested >= len(touched[table]), table
        else:
            assert ingested == 0, table
    moved = sum(second["tables"][table]["ingested"] for table in SOURCE_TABLES)
    assert moved < sum(source_counts.values()) / 4
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    loaded = warehouse_digest(warehouse_dsn)
    # And it says where the logs and the graph of the execution are
    assert str(service_dir / "logs" / "pipeline.jsonl") in second["stderr"]
    page = graph.read_text()
    assert "```mermaid\nflowchart TD" in page
    assert "| LoadFact | Task | succeeded | 3 |" in page

    # When a third run asks for --fresh
    with connect(seeded_source_dsn) as conn:
        source_counts = row_counts(conn, SOURCE_TABLES)
    third = _totes_run(*common, "--fresh")

    # Then it starts from empty local state, re-ingests everything, and adds no fact twice
    assert (third["status"], third["local_state"]) == ("SUCCEEDED", "fresh")
    assert {t: third["tables"][t]["ingested"] for t in SOURCE_TABLES} == source_counts
    for fact in FACT_SOURCES:
        assert third["tables"][fact]["loaded"] == 0
    assert warehouse_digest(warehouse_dsn) == loaded
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)


def test_totes_run_names_the_failing_state_error_and_cause_and_exits_non_zero(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a deployment whose transform of one warehouse table raises
    fault = Fault(
        "TransformTable",
        "transform_target",
        "dim_staff",
        "raise InjectedFaultError('the staff shapes are broken')",
    )
    broken = faulty_assembly(cloud_assembly, fault, tmp_path / "faulty-cdk.out")
    graph = tmp_path / "graph.md"

    # When `totes run` runs the state machine
    status = main(
        [
            "run",
            *("--source-dsn", seeded_source_dsn, "--warehouse-dsn", warehouse_dsn),
            *("--data-dir", str(service_dir), "--cdk-out", str(broken.directory)),
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
    assert decode_failure(result["error"], result["cause"]).message == (
        "the staff shapes are broken"
    )
    assert "in state TransformTable (dim_staff)" in captured.err
    assert "error: InjectedFaultError" in captured.err
    assert "cause: the staff shapes are broken" in captured.err
    # And the graph shows where it stopped
    page = graph.read_text()
    assert "| TransformTable | Task | failed | 10 |" in page
    assert "| LoadDimensions | Map | not run | 0 |" in page
    assert "| NotifyFailure | Task | succeeded | 1 |" in page
    assert "✖ InjectedFaultError (dim_staff)" in page
    # And the handlers' logs went to the log file, not to the terminal
    logged = (service_dir / "logs" / "pipeline.jsonl").read_text()
    assert '"errorType": "InjectedFaultError"' in logged
    assert "correlation_id" not in captured.out + captured.err


def _interval(report: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(report["started"]), datetime.fromisoformat(report["ended"])


def test_map_items_run_at_once_in_separate_warm_worker_processes(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    # Given a deployed stack
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        # When two executions run
        _succeeded(workflow.execute())
        _succeeded(workflow.execute())
        reports = invocation_reports(workflow, "FunctionsIngest")

    # Then ingest items overlapped in time, each in a worker process of its own
    assert len(reports) == 2 * len(SOURCE_TABLES)
    overlapping = [
        (a, b)
        for index, a in enumerate(reports)
        for b in reports[index + 1 :]
        if _interval(a)[0] < _interval(b)[1] and _interval(b)[0] < _interval(a)[1]
    ]
    assert overlapping
    assert all(a["worker_pid"] != b["worker_pid"] for a, b in overlapping)
    # And no more workers than the local concurrency cap, each cold at most once (on its
    # first invocation; an earlier test may have warmed it) and warm after
    pids = {report["worker_pid"] for report in reports}
    assert 2 <= len(pids) <= max(2, os.cpu_count() or 1)
    for pid in pids:
        mine = sorted((r for r in reports if r["worker_pid"] == pid), key=lambda r: r["started"])
        assert all(report["init_duration_ms"] is None for report in mine[1:])
    assert all(report["max_memory_used_mb"] > 0 for report in reports)


def test_a_killed_service_is_replaced_and_the_next_run_leaves_the_warehouse_exact(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    service_dir: Path,
) -> None:
    # Given an execution under way
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        assert workflow.service is not None
        service = workflow.service.service
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["report"] = workflow.execute()
            except Exception as exc:  # the client loses its service mid-execution
                outcome["error"] = exc

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 60
        while not invocation_reports(workflow, "FunctionsIngest"):
            assert time.monotonic() < deadline, "no ingest invocation finished"
            time.sleep(0.05)
        workers = service.worker_pids()

        # When the service is killed
        os.kill(service.pid, signal.SIGKILL)
        runner.join(timeout=120)
    assert "error" in outcome

    # Then the next run starts a new service with fresh state, and the warehouse is exact
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        assert workflow.service is not None
        assert workflow.service.replaced_dead
        assert workflow.service.service.pid != service.pid
        report = _succeeded(workflow.execute())
    assert report.local_state == "fresh"
    _assert_reconciled(seeded_source_dsn, warehouse_dsn)
    # And the old service's workers ended with it
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_totes_stop_leaves_no_process_of_the_data_folder_running(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a service of its own data folder that ran an execution
    data_dir = tmp_path / "data"
    try:
        with LocalWorkflow(
            cloud_assembly,
            source_dsn=seeded_source_dsn,
            warehouse_dsn=warehouse_dsn,
            data_dir=data_dir,
        ) as workflow:
            _succeeded(workflow.execute())
        service = find_service(data_dir)
        assert service is not None
        processes = [service.pid, *service.worker_pids()]
        assert len(processes) > 1
        assert main(["status", "--data-dir", str(data_dir)]) == 0
        assert f"running at {service.endpoint}" in capsys.readouterr().out

        # When `totes stop` runs
        assert main(["stop", "--data-dir", str(data_dir)]) == 0
    finally:
        stop_service(data_dir)

    # Then it says what it stopped, and no process of the folder is left
    out = capsys.readouterr().out
    assert f"Stopped the local AWS service of {data_dir.resolve()} (pid {service.pid}" in out
    assert not any(_running(pid) for pid in processes)
    assert find_service(data_dir) is None
    assert main(["status", "--data-dir", str(data_dir)]) == 0
    assert "local AWS service: not running" in capsys.readouterr().out
