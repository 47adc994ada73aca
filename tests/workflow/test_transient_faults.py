"""A failover through the whole workflow, against a PostgreSQL server the test controls: sessions
ended mid-work are retried and the execution succeeds, saying so; a server down longer than
the retries fails the execution once, mailed as transient; the next run completes exactly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.controlled_postgres import ControlledServer, controlled_server
from totes.db import connect, create_database
from totes.names import TRANSIENT_ERRORS
from totes.warehouse.reconcile import reconcile
from totes.warehouse.schema import init_warehouse
from totes_local.cli import EXIT_FAILURE, main
from totes_local.runtime.assembly import CloudAssembly
from totes_local.source.generator import seed_synthetic

from .support import Fault, WorkflowFactory, emf_records, faulty_assembly

pytestmark = pytest.mark.slow

SOURCE, WAREHOUSE = "totesys", "warehouse"


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    """A source and a warehouse on a server of the test's own, seeded at scale 0.05."""
    with controlled_server() as running:
        for name in (SOURCE, WAREHOUSE):
            create_database(running.dsn(), name)
        with connect(running.dsn(SOURCE)) as conn:
            seed_synthetic(conn, scale=0.05, seed=7)
        with connect(running.dsn(WAREHOUSE)) as conn:
            init_warehouse(conn)
        yield running


def _run(
    capsys: pytest.CaptureFixture[str],
    server: ControlledServer,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
) -> tuple[int, dict[str, Any], str]:
    """`totes run --runs 1 --json`: its status, its JSON line and the summary it printed."""
    status = main(
        [
            "run",
            *("--source-dsn", server.dsn(SOURCE), "--warehouse-dsn", server.dsn(WAREHOUSE)),
            *("--data-dir", str(service_dir), "--cdk-out", str(cloud_assembly.directory)),
            *("--runs", "1", "--json"),
        ]
    )
    captured = capsys.readouterr()
    # One JSON line per execution; after a failed one, the warehouse's counts may be
    # unreadable (the database is down): `totes run` then ends with that error.
    (line,) = captured.out.splitlines()
    return status, json.loads(line), captured.err


def _reconciled(server: ControlledServer) -> None:
    with connect(server.dsn(SOURCE)) as source, connect(server.dsn(WAREHOUSE)) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


class _Failover(threading.Thread):
    """Ends the pipeline's sessions while they work (a statement running, or a transaction
    open), as a failover or ``pg_terminate_backend`` does, a few times, then stops. The
    stages name their sessions (``totes ingest``, ``totes load``); the local tooling's own
    are left alone."""

    def __init__(self, server: ControlledServer, times: int) -> None:
        super().__init__(daemon=True)
        self.server, self.times = server, times
        self.ended: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            while len(self.ended) < self.times and not self.done.wait(0.02):
                rows = admin.execute(
                    "SELECT datname, pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname IN (%s, %s) AND application_name LIKE 'totes %%' "
                    "AND state IN ('active', 'idle in transaction') LIMIT 1",
                    (SOURCE, WAREHOUSE),
                ).fetchall()
                self.ended.extend(database for database, _ in rows)


def test_sessions_ended_during_a_backfill_are_retried_and_the_warehouse_is_exact(
    server: ControlledServer,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a backfill during which the database ends the pipeline's working sessions:
    # whichever it finds at work, and for certain the first two loads that write their
    # ledger row (inside the transaction with the file's rows)
    with connect(server.dsn(WAREHOUSE), autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE faults")
        conn.execute(
            "CREATE FUNCTION end_session() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF nextval('faults') <= 2 THEN PERFORM pg_terminate_backend(pg_backend_pid()); "
            "PERFORM pg_sleep(1); END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER end_session BEFORE INSERT ON load_ledger "
            "FOR EACH ROW EXECUTE FUNCTION end_session()"
        )
        conn.execute("ALTER TABLE load_ledger ENABLE ALWAYS TRIGGER end_session")
    failover = _Failover(server, times=3)
    failover.start()

    # When the product runs
    try:
        status, result, printed = _run(capsys, server, cloud_assembly, service_dir)
    finally:
        failover.done.set()
        failover.join(timeout=10)

    # Then the execution succeeded all the same
    assert (status, result["status"]) == (0, "SUCCEEDED"), printed
    # And the retries are told, by state and error, in the JSON and in the summary: at
    # least the two loads whose sessions ended in their transaction
    assert {retry["error"] for retry in result["retries"]} <= set(TRANSIENT_ERRORS)
    loads = [r for r in result["retries"] if r["state"] in ("LoadDimension", "LoadFact")]
    assert sum(retry["attempts"] for retry in loads) >= 2, result["retries"]
    first = result["retries"][0]
    assert f"retried: {first['state']}: {first['attempts']} attempt" in printed
    # And the warehouse equals a rebuild from the source: nothing lost, nothing twice
    _reconciled(server)


class _Outage(threading.Thread):
    """Stops the server as soon as the pipeline opens its first session: a failover that
    starts once the execution has begun and outlasts it."""

    def __init__(self, server: ControlledServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            while not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'totes %'"
            ).fetchone():
                time.sleep(0.02)
        self.server.stop()
        self.stopped.set()


def test_a_database_down_longer_than_the_retries_fails_once_as_transient_then_recovers(
    server: ControlledServer,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a database that goes down once the execution has started, for longer than
    # every retry of the state machine (a failover that takes minutes)
    outage = _Outage(server)
    outage.start()

    # When the product runs
    status, failed, printed = _run(capsys, server, cloud_assembly, service_dir)
    outage.join(timeout=10)

    # Then the execution fails once, with a transient error, after retrying it
    assert outage.stopped.is_set()
    assert (status, failed["status"]) == (EXIT_FAILURE, "FAILED")
    assert failed["error"] in TRANSIENT_ERRORS
    assert any(retry["error"] in TRANSIENT_ERRORS for retry in failed["retries"])
    # And the mail says it was transient and that the next run will continue
    assert "Transient:      yes, retried 4 times over up to 41 s" in printed
    assert "the next run will continue" in printed

    # When the database is back and the product runs again
    server.start()
    status, again, _ = _run(capsys, server, cloud_assembly, service_dir)

    # Then it completes, and the warehouse is exact
    assert (status, again["status"]) == (0, "SUCCEEDED")
    _reconciled(server)


def test_a_throttled_s3_call_is_retried_by_the_state_machine_and_counted(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    tmp_path: Path,
) -> None:
    # Given a load whose S3 read is throttled on every botocore attempt, twice in a row
    # (an S3 prefix over its request rate), then answered
    attempts = tmp_path / "throttled-attempts"
    throttled = Fault(
        "LoadDimension",
        "load_target",
        "dim_design",
        f"""
        seen = _fault_os.path.getsize({str(attempts)!r}) if _fault_os.path.exists(
            {str(attempts)!r}) else 0
        if seen < 2:
            with open({str(attempts)!r}, "a") as mark:
                mark.write("x")
            from botocore.exceptions import ClientError
            raise ClientError(
                {{"Error": {{"Code": "SlowDown"}}, "ResponseMetadata": {{"HTTPStatusCode": 503}}}},
                "GetObject",
            )
        """,
    )
    deployed = faulty_assembly(cloud_assembly, throttled, tmp_path / "throttled-cdk.out")

    # When the state machine runs
    with local_workflow(seeded_source_dsn, warehouse_dsn, assembly=deployed) as workflow:
        report = workflow.execute()
        # EMF lines carry no function name (as in CloudWatch, where each function's log
        # group holds its own): every line since the test began.
        records = emf_records(workflow)

    # Then the item was retried after the named transient error, and the execution succeeded
    assert report.status == "SUCCEEDED", json.dumps(report.to_json(), indent=1)
    assert {"state": "LoadDimension", "error": "AwsTransientError", "attempts": 2} in (
        report.to_json()["retries"]
    )
    # And each throttled attempt was counted in the Retries metric, by stage and error
    counted = [
        record
        for record in records
        if "Retries" in record and record.get("error") == "AwsTransientError"
    ]
    assert [(record["stage"], record["Retries"]) for record in counted] == [
        ("load", [1.0]),
        ("load", [1.0]),
    ]
