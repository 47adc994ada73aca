"""Lambda execution environments as worker processes: what the local service's worker pool
does with handlers that misbehave, seen as the Lambda service would report it."""

from __future__ import annotations

import hashlib
import io
import json
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from totes_local.runtime.emf import MetricDatum
from totes_local.runtime.lambda_bootstrap import ABSENT_PACKAGES_VARIABLE
from totes_local.runtime.lambda_workers import FunctionRevision, LogSink, WorkerPool

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
        if event.get("busy"):
            until = time.process_time() + event["busy"]
            while time.process_time() < until:
                pass
        return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis()}
    """
)


def _revision(
    source: str, *, timeout_s: float = 5.0, environment: dict[str, str] | None = None
) -> FunctionRevision:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", source)
    code = buffer.getvalue()
    return FunctionRevision(
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


def _invoke(pool: WorkerPool, revision: FunctionRevision, event: Any) -> tuple[Any, dict[str, str]]:
    headers: dict[str, str] = {}
    body = pool.invoke(revision, json.dumps(event).encode(), headers)
    return json.loads(body), headers


def test_a_handler_printing_garbage_still_answers_at_once_and_its_lines_are_kept(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    revision = _revision(HANDLER)
    # When a handler prints a malformed metric line and bytes that are not UTF-8, twice
    started = time.monotonic()
    first, headers = _invoke(workers, revision, {"noisy": True})
    second, _ = _invoke(workers, revision, {"noisy": True})
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
    revision = _revision(HANDLER, timeout_s=1)
    before, _ = _invoke(workers, revision, {})

    payload, headers = _invoke(workers, revision, {"sleep": 30})

    assert headers["x-amz-function-error"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    after, _ = _invoke(workers, revision, {})
    assert after["pid"] != before["pid"]
    assert before["pid"] not in workers.worker_pids()


def test_a_handler_that_fails_to_import_is_reported_and_its_environment_not_reused(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, _ = pool
    revision = _revision("import not_a_module_anywhere\n")

    payload, headers = _invoke(workers, revision, {})

    assert headers["x-amz-function-error"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'handler'" in payload["errorMessage"]
    assert workers.worker_pids() == []


def test_a_slow_init_phase_does_not_count_against_the_timeout_and_is_reported_apart(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    # Given a function whose import takes longer than its timeout (Lambda gives init 10 s)
    revision = _revision("import time\ntime.sleep(1.5)\n" + HANDLER, timeout_s=1)

    # When it is invoked cold
    payload, headers = _invoke(workers, revision, {})

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


def test_the_report_gives_the_cpu_an_invocation_used_apart_from_its_waits(
    pool: tuple[WorkerPool, list[MetricDatum], Path],
) -> None:
    workers, _, log = pool
    revision = _revision(HANDLER)
    _invoke(workers, revision, {})  # the init phase's CPU goes to the first report
    # When a warm environment waits half a second, then computes for half a second
    _invoke(workers, revision, {"sleep": 0.5})
    _invoke(workers, revision, {"busy": 0.5})
    # Then both last half a second or more, and only the second used the CPU
    reports = [
        json.loads(line)
        for line in log.read_text(encoding="utf-8").splitlines()
        if '"platform.report"' in line
    ]
    waited, computed = reports[1:]
    assert waited["duration_ms"] >= 500
    assert computed["duration_ms"] >= 500
    assert waited["local_cpu_ms"] < 100
    assert 400 <= computed["local_cpu_ms"] < 1000  # the kernel counts CPU in ticks


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
    converting = _revision(CONVERTING_HANDLER, environment=hidden)
    # When it converts Python values to Arrow, as every transform does
    payload, headers = _invoke(workers, converting, {})
    # Then it works without them, as in Lambda, and neither was imported
    assert "x-amz-function-error" not in headers
    assert payload == {"imported": []}
    # And a function that imports one outright fails to import, as Lambda reports it
    importing = _revision("import pandas.core.api\n" + HANDLER, environment=hidden)
    failed, headers = _invoke(workers, importing, {})
    assert failed["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'pandas'" in failed["errorMessage"]
    # While a function whose layers hold them (no variable) imports them as before
    unhidden, _ = _invoke(workers, _revision(CONVERTING_HANDLER), {})
    assert unhidden == {"imported": ["numpy", "pandas"]}
