"""What the stage benchmarks share: a kept source database, moto's AWS, peak memory."""

from __future__ import annotations

import json
import os
import re
import resource
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from totes.db import connect, create_database, drop_database, with_database
from totes.source.schema import existing_source_tables
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.assembly import find_project_root, synthesise
from totes_local.runtime.call_trail import CALL_TRAIL_VARIABLE, call_counts, call_seconds
from totes_local.runtime.postgres import find_or_start_server
from totes_local.runtime.service import stop_service
from totes_local.runtime.workflow import ExecutionReport, LocalWorkflow
from totes_local.source.generator import seed_synthetic

REGION = "eu-west-2"
#: A function's logical id in the template, ``FunctionsLoadE70802C8``: its role, ``Load``.
_LOGICAL_NAME = re.compile(r"^Functions(\w+?)[0-9A-F]{8}$")
INGESTED, PROCESSED, WATERMARKS = "bench-ingested", "bench-processed", "bench-watermarks"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def bench_source(scale: float) -> Iterator[str]:
    """The DSN of a source seeded at ``scale``, kept as ``totes_bench_source_<scale>``."""
    with tempfile.TemporaryDirectory() as scratch:
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        try:
            database = f"totes_bench_source_{str(scale).replace('.', '_')}"
            create_database(server.admin_dsn, database)
            dsn = with_database(server.admin_dsn, database)
            with connect(dsn) as conn:
                if not existing_source_tables(conn):
                    print(f"seeding scale {scale:g} (kept for later runs) ...", flush=True)
                    seed_synthetic(conn, scale=scale, seed=0)
            yield dsn
        finally:
            server.stop()


@contextmanager
def bench_aws() -> Iterator[tuple[Any, Any]]:
    """moto's S3 and DynamoDB with the pipeline's buckets and watermark table."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for bucket in (INGESTED, PROCESSED):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        dynamodb.create_table(
            TableName=WATERMARKS,
            KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield s3, dynamodb


@contextmanager
def measured_workflow(name: str, scale: float) -> Iterator[tuple[LocalWorkflow, str, str]]:
    """A workflow over a seeded source (generator at ``scale``) and an empty warehouse, in
    a local service that counts the functions' requests: ``(workflow, source DSN,
    service endpoint)``. Everything it started is stopped and dropped afterwards."""
    assembly = synthesise(find_project_root(), Path(".totes/cdk.out"))
    with tempfile.TemporaryDirectory(prefix=f"totes-bench-{name}-") as scratch:
        os.environ[CALL_TRAIL_VARIABLE] = str(Path(scratch) / "call-trail.jsonl")
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        data_dir = Path(scratch) / "data"
        databases = (f"totes_bench_{name}_source", f"totes_bench_{name}_warehouse")
        try:
            for database in databases:
                drop_database(server.admin_dsn, database)
                create_database(server.admin_dsn, database)
            source_dsn, warehouse_dsn = (with_database(server.admin_dsn, d) for d in databases)
            with connect(source_dsn) as conn:
                seed_synthetic(conn, scale=scale, seed=42)
            with connect(warehouse_dsn) as conn:
                init_warehouse(conn)
            with LocalWorkflow(
                assembly, source_dsn=source_dsn, warehouse_dsn=warehouse_dsn, data_dir=data_dir
            ) as workflow:
                if workflow.service is None:  # pragma: no cover - entering starts it
                    raise RuntimeError("the local AWS service did not start")
                yield workflow, source_dsn, workflow.service.service.endpoint
        finally:
            stop_service(data_dir)
            for database in databases:
                drop_database(server.admin_dsn, database)
            server.stop()


def _reports_of(
    workflow: LocalWorkflow, report: ExecutionReport, log_offset: int
) -> list[dict[str, Any]]:
    names = {function.name for function in workflow.platform.functions}
    stopped = report.stopped or datetime.now(report.started.tzinfo)
    found = []
    with workflow.log_path.open("rb") as log:
        log.seek(log_offset)
        lines = log.read().decode("utf-8").splitlines()
    for line in lines:
        if '"platform.report"' not in line:
            continue
        record = json.loads(line)
        started = datetime.fromisoformat(record["started"])
        if record["function_name"] in names and report.started <= started <= stopped:
            found.append(record)
    return found


def _busy_seconds(intervals: Sequence[tuple[datetime, datetime]]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def measure(
    workflow: LocalWorkflow, report: ExecutionReport, *, log_offset: int = 0
) -> dict[str, Any]:
    """One execution's figures: its seconds, seconds per stage, handler seconds per
    function (summed over invocations, cold starts' init phases included and also shown
    alone, and the CPU seconds of them: their own work, without their waits),
    the handlers' critical path (seconds in which at least one ran, from the
    workers' own start and end times), the local runtime's overhead (execution minus
    that), each function's peak worker RSS. ``log_offset``: where in the local log the
    execution's records begin (read from there only)."""
    assert report.succeeded, json.dumps(report.to_json(), indent=1)  # noqa: S101
    records = _reports_of(workflow, report, log_offset)
    short = {function.name: function.logical_id for function in workflow.platform.functions}
    per_function: dict[str, dict[str, float]] = {}
    for record in records:
        name = _role(short[record["function_name"]])
        figures = per_function.setdefault(
            name, {"handler_s": 0.0, "init_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0}
        )
        init_s = (record["init_duration_ms"] or 0) / 1000
        figures["handler_s"] += record["duration_ms"] / 1000 + init_s
        figures["init_s"] += init_s
        figures["cpu_s"] += (record.get("local_cpu_ms") or 0) / 1000
        figures["peak_rss_mb"] = max(figures["peak_rss_mb"], record["max_memory_used_mb"] or 0)
    busy = _busy_seconds(
        [
            (datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["ended"]))
            for r in records
        ]
    )
    return {
        "execution_s": report.duration_s,
        "stages_s": report.stage_durations(),
        "functions": per_function,
        "handlers_critical_path_s": busy,
        "overhead_s": report.duration_s - busy,
        "invocations": len(records),
    }


def _role(logical_id: str) -> str:
    """``FunctionsLoadE70802C8`` -> ``Load``."""
    return _LOGICAL_NAME.sub(r"\1", logical_id)


def _function_role(function: str) -> str:
    """A deployed function's name (``<instance>-<logical id>``) -> its role."""
    return _role(function.rsplit("-", 1)[-1])


def service_seconds_so_far(endpoint: str) -> dict[str, float]:
    """Seconds the local service took to answer each function's requests so far (part of
    its handler seconds that AWS would spend instead, at its own speed), by function."""
    totals: dict[str, float] = {}
    for function, actions in call_seconds(endpoint).items():
        role = _function_role(function)
        totals[role] = totals.get(role, 0.0) + sum(actions.values())
    return totals


def requests_so_far(endpoint: str, *, by_function: bool = False) -> Counter[str]:
    """Every request the functions have made so far, by action (``"s3:GetObject"``), or
    by function and action (``"Load s3:GetObject"``) when ``by_function``."""
    totals: Counter[str] = Counter()
    for function, actions in call_counts(endpoint).items():
        if by_function:
            role = _function_role(function)
            totals.update({f"{role} {action}": count for action, count in actions.items()})
        else:
            totals.update(actions)
    return totals
