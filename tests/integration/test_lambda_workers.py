"""Lambda execution environments as worker processes: what the local service's worker pool
does with handlers that misbehave, seen as the Lambda service would report it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from totes_local.runtime.emf import MetricDatum
from totes_local.runtime.lambda_bootstrap import ABSENT_PACKAGES_VARIABLE
from totes_local.runtime.lambda_workers import FunctionSnapshot, LogSink, WorkerPool

HANDLER = textwrap.dedent(
    """
    import os
    import sys
    import time

    def handler(event, context):
        if event.get("noisy"):
            print('{"_aws": {"CloudWatchMetrics": ["not a directive"]}}', flush=True)
            sys.stdout.buffer.write(b"\\xff\\xfe not utf-8\\n")
            sys.stdout.flush()
        if event.get("sleep"):
            time.sleep(event["sleep"])
        return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis()}
    """
)


def _snapshot(
    source: str, *, timeout_s: float = 5.0, environment: dict[str, str] | None = None
) -> FunctionSnapshot:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", source)
    code = buffer.getvalue()
    return FunctionSnapshot(
        name="probe",
        arn="arn:aws:lambda:eu-west-2:123456789012:function:probe",
        handler="handler.handler",
        timeout_s=timeout_s,
        memory_mb=128,
        environment=environment or {},
        code=code,
        code_sha256=hashlib.sha256(code).hexdigest(),
        layers=(),
        log_group="/aws/lambda/probe",
    )


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[WorkerPool, list[MetricDatum], Path]]:
    metrics: list[MetricDatum] = []
    log = tmp_path / "pipeline.jsonl"
    sink = LogSink(log, metrics.extend)
    workers = WorkerPool(tmp_path / "lambda", sink, {"AWS_REGION": "eu-west-2"}, concurrency=2)
    yield workers, metrics, log
    workers.shutdown()
    sink.close()


def _invoke(pool: WorkerPool, snapshot: FunctionSnapshot, event: Any) -> tuple[Any, dict[str, str]]:
    headers: dict[str, str] = {}
    body = pool.invoke(snapshot, json.dumps(event).encode(), headers)
    return json.loads(body), headers


def test_a_handler_printing_garbage_still_answers_at_once_and_its_lines_are_kept(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    snapshot = _snapshot(HANDLER)
    # When a handler prints a malformed metric line and bytes that are not UTF-8, twice
    started = time.monotonic()
    first, headers = _invoke(workers, snapshot, {"noisy": True})
    second, _ = _invoke(workers, snapshot, {"noisy": True})
    # Then both invocations succeed without waiting on the log readers, in one warm worker
    assert time.monotonic() - started < 4
    assert "x-amz-function-error" not in headers
    assert first["pid"] == second["pid"]
    assert 0 < first["remaining"] <= 5000
    # And the lines reached the log file
    text = log.read_text(encoding="utf-8")
    assert "not utf-8" in text
    assert "not a directive" in text


def test_a_timeout_kills_the_worker_and_answers_sandbox_timedout(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    snapshot = _snapshot(HANDLER, timeout_s=1)
    before, _ = _invoke(workers, snapshot, {})

    payload, headers = _invoke(workers, snapshot, {"sleep": 30})

    assert headers["x-amz-function-error"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    after, _ = _invoke(workers, snapshot, {})
    assert after["pid"] != before["pid"]
    assert before["pid"] not in workers.worker_pids()


def test_a_handler_that_fails_to_import_is_reported_and_its_environment_not_reused(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    snapshot = _snapshot("import not_a_module_anywhere\n")

    payload, headers = _invoke(workers, snapshot, {})

    assert headers["x-amz-function-error"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'handler'" in payload["errorMessage"]
    assert workers.worker_pids() == []


def test_a_slow_init_phase_does_not_count_against_the_timeout_and_is_reported_apart(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    # Given a function whose import takes longer than its timeout (Lambda gives init 10 s)
    snapshot = _snapshot("import time\ntime.sleep(1.5)\n" + HANDLER, timeout_s=1)

    # When it is invoked cold
    payload, headers = _invoke(workers, snapshot, {})

    # Then the invocation succeeds with its whole timeout left to the handler
    assert "x-amz-function-error" not in headers
    assert 500 < payload["remaining"] <= 1000
    # And the report gives the init phase apart from the invocation's duration
    reports = [
        json.loads(line)
        for line in log.read_text(encoding="utf-8").splitlines()
        if '"platform.report"' in line
    ]
    assert len(reports) == 1
    assert reports[0]["init_duration_ms"] >= 1500
    assert reports[0]["duration_ms"] < 1000


CONVERTING_HANDLER = textwrap.dedent(
    """
    import sys

    import pyarrow as pa

    def handler(event, context):
        pa.array([1, 2, None])  # pyarrow imports pandas here, when it can
        return {"imported": sorted({"numpy", "pandas"} & set(sys.modules))}
    """
)


def test_packages_the_layers_would_not_hold_cannot_be_imported_and_are_not_imported_by_others(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    hidden = {ABSENT_PACKAGES_VARIABLE: "pandas,numpy"}
    # Given a function whose layers hold pyarrow but not pandas nor numpy, which the local
    # environment has
    converting = _snapshot(CONVERTING_HANDLER, environment=hidden)
    # When it converts Python values to Arrow, as every transform does
    payload, headers = _invoke(workers, converting, {})
    # Then it works without them, as in Lambda, and neither was imported
    assert "x-amz-function-error" not in headers
    assert payload == {"imported": []}
    # And a function that imports one outright fails to import, as Lambda reports it
    importing = _snapshot("import pandas.core.api\n" + HANDLER, environment=hidden)
    failed, headers = _invoke(workers, importing, {})
    assert failed["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'pandas'" in failed["errorMessage"]
    # While a function whose layers hold them (no variable) imports them as before
    unhidden, _ = _invoke(workers, _snapshot(CONVERTING_HANDLER), {})
    assert unhidden == {"imported": ["numpy", "pandas"]}


SNAPSHOT_HANDLER = textwrap.dedent(
    """
    import os
    import time

    INITIALISED_AT = time.time()
    INITIALISED_IN = os.getpid()

    def handler(event, context):
        if event.get("exit"):
            os._exit(event["exit"])
        if event.get("sleep"):
            time.sleep(event["sleep"])
        return {
            "pid": os.getpid(),
            "initialised_at": INITIALISED_AT,
            "initialised_in": INITIALISED_IN,
            "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        }
    """
)


def _published(source: str, *, version: str = "1", timeout_s: float = 5.0) -> FunctionSnapshot:
    """A published version of a function with SnapStart."""
    latest = _snapshot(source, timeout_s=timeout_s)
    return dataclasses.replace(
        latest, arn=f"{latest.arn}:{version}", version=version, snap_start=True
    )


def _reports(log: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in log.read_text(encoding="utf-8").splitlines()
        if '"platform.report"' in line
    ]


def test_environments_of_a_snapstart_version_are_restored_from_one_initialised_snapshot(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    # Given a version published with SnapStart, whose snapshot is taken on publishing
    version = _published("import time\ntime.sleep(0.5)\n" + SNAPSHOT_HANDLER)
    workers.prepare(version)
    assert workers.version_state(version) == "Pending"
    deadline = time.monotonic() + 10
    while workers.version_state(version) == "Pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers.version_state(version) == "Active"

    # When two invocations run at once, each in a new environment
    with concurrent.futures.ThreadPoolExecutor(2) as callers:
        answers = list(callers.map(lambda _: _invoke(workers, version, {"sleep": 0.3}), range(2)))

    # Then both environments were restored from the one initialised process: its module
    # state, not an import of their own (which would take the 0.5 s again)
    (first, first_headers), (second, _) = answers
    assert first["pid"] != second["pid"]
    assert first["initialised_at"] == second["initialised_at"]
    assert first["initialised_in"] == second["initialised_in"] not in {first["pid"], second["pid"]}
    assert first["version"] == "1"
    assert first_headers["x-amz-executed-version"] == "1"
    # And their reports give a restore duration instead of an init duration, as Lambda's do
    reports = _reports(log)
    assert len(reports) == 2
    assert all(r["init_duration_ms"] is None for r in reports)
    assert all(0 < r["restore_duration_ms"] < 500 for r in reports)


def test_a_restored_environment_that_dies_or_times_out_is_reported_and_replaced(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    version = _published(SNAPSHOT_HANDLER, timeout_s=1)
    before, _ = _invoke(workers, version, {})

    # When the runtime of a restored environment exits, and another's handler hangs
    exited, exited_headers = _invoke(workers, version, {"exit": 3})
    hung, _ = _invoke(workers, version, {"sleep": 30})

    # Then each is reported as Lambda reports it, with the exit status
    assert exited_headers["x-amz-function-error"] == "Unhandled"
    assert exited["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in exited["errorMessage"]
    assert hung["errorType"] == "Sandbox.Timedout"
    # And the next invocation gets a new environment restored from the same snapshot
    after, _ = _invoke(workers, version, {})
    assert after["pid"] != before["pid"]
    assert after["initialised_in"] == before["initialised_in"]
    assert before["pid"] not in workers.worker_pids()


def test_a_new_version_gets_a_new_snapshot_and_shutting_down_ends_every_process(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    first, _ = _invoke(workers, _published(SNAPSHOT_HANDLER, version="1"), {})
    # When version 2 is published and invoked
    second, _ = _invoke(workers, _published(SNAPSHOT_HANDLER, version="2"), {})
    # Then it was initialised anew, and version 1's snapshot is gone
    assert second["version"] == "2"
    assert second["initialised_in"] != first["initialised_in"]
    running = workers.worker_pids()
    assert first["initialised_in"] not in running
    assert second["initialised_in"] in running
    # And shutting down ends the snapshot and the environments restored from it
    workers.shutdown()
    for pid in (second["initialised_in"], second["pid"], first["pid"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_version_whose_init_fails_is_failed_and_each_invocation_says_why(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    version = _published("import not_a_module_anywhere\n" + SNAPSHOT_HANDLER)
    workers.prepare(version)
    deadline = time.monotonic() + 10
    while workers.version_state(version) == "Pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then the version is Failed, as Lambda reports a version whose snapshot's init failed
    assert workers.version_state(version) == "Failed"
    # And an invocation still answers with the import error
    payload, headers = _invoke(workers, version, {})
    assert headers["x-amz-function-error"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
