"""The monthly AWS bill, from executions measured at the client's change rate: `make bench-cost`.

Seeds a source with the generator (scale 1), runs a backfill (not billed: it happens
once), then N executions (default 48, four hours at the five-minute schedule) with the
client's rate of business changes between them: the 2024-11-14 snapshot holds about 42
order, payment and design events a day, so one execution in seven follows a change. It
measures, per execution, what AWS bills: each function's invocations, billed seconds
(duration and init phases), the functions' requests by
service and action (counted by the local service), the Express execution's duration and
the log bytes the handlers wrote; then, from the whole run, the custom metrics (each
distinct name and dimension values in the embedded metric format), and from the template
the alarms, dashboards, keys and the functions' memory, architecture and SnapStart.

It prints the bill per service at the five-minute and the one-minute schedule (prices in
``totes_local.cost``), and last the five-minute monthly total in US dollars. Secret reads
are one per ingest or load invocation and cache period (an upper bound: the workflow here
is given DSNs),
and X-Ray traces those its default sampling rule keeps (one a second, 5 % of the rest).

Usage::

    python bench/cost.py [--executions 48] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from common import measured_workflow, requests_so_far

from totes.credentials import SECRET_CACHE_SECONDS
from totes.db import connect
from totes_local.cost import (
    ExecutionUsage,
    FunctionUsage,
    Standing,
    monthly_bill,
    sampled_traces,
)
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.workflow import ExecutionReport, LocalWorkflow
from totes_local.source.mutate import mutate

#: One execution in this many follows a business change, at the client's rate.
CHANGE_EVERY = 7
#: The client's secrets: source and warehouse credentials.
SECRETS = 2


def _reports(log: Path, names: dict[str, str], report: ExecutionReport) -> list[dict[str, Any]]:
    """The Lambda REPORT records of the execution's invocations."""
    stopped = report.stopped or datetime.now(report.started.tzinfo)
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if '"platform.report"' not in line:
            continue
        record = json.loads(line)
        if record["function_name"] in names and (
            report.started <= datetime.fromisoformat(record["started"]) <= stopped
        ):
            found.append(record)
    return found


def _custom_metrics(log: Path) -> int:
    """Distinct metrics (namespace, name, dimension values) in the embedded metric format."""
    metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        if '"CloudWatchMetrics"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                values = tuple((name, str(record.get(name))) for name in dimensions)
                for metric in directive["Metrics"]:
                    metrics.add((directive["Namespace"], metric["Name"], values))
    return len(metrics)


def _billed_seconds(record: dict[str, Any]) -> float:
    """Duration and init phase: Lambda bills both."""
    return float(record["duration_ms"] + (record["init_duration_ms"] or 0)) / 1000


def _standing(assembly: CloudAssembly, custom_metrics: int) -> Standing:
    resources = assembly.template["Resources"].values()
    count = Counter(resource["Type"] for resource in resources)
    return Standing(
        custom_metrics=custom_metrics,
        alarms=count["AWS::CloudWatch::Alarm"],
        dashboards=count["AWS::CloudWatch::Dashboard"],
        kms_keys=count["AWS::KMS::Key"],
        secrets=SECRETS,
    )


def _average(measured: list[dict[str, Any]], workflow: LocalWorkflow) -> ExecutionUsage:
    n = len(measured)
    resources = workflow.assembly.template["Resources"]
    functions: dict[str, FunctionUsage] = {}
    for spec in workflow.platform.functions:
        stage = spec.logical_id.removeprefix("Functions")[:-8]
        architectures = resources[spec.logical_id]["Properties"].get("Architectures", ["x86_64"])
        records = [r for m in measured for r in m["reports"] if r["function_name"] == spec.name]
        functions[stage] = FunctionUsage(
            memory_mb=spec.memory_mb,
            invocations=len(records) / n,
            billed_seconds=sum(
                (r["duration_ms"] + (r["init_duration_ms"] or 0)) / 1000 for r in records
            )
            / n,
            architecture=architectures[0],
            snapstart="SnapStart" in resources[spec.logical_id]["Properties"],
        )
    requests: Counter[str] = Counter()
    for m in measured:
        requests.update(m["requests"])
    # Each environment reads a secret once per cache period: at five-minute ticks, an
    # environment's invocations read it once in SECRET_CACHE_SECONDS / 300 executions.
    reads = sum(functions[s].invocations for s in ("Ingest", "Load") if s in functions) * min(
        1.0, 300 / SECRET_CACHE_SECONDS
    )
    return ExecutionUsage(
        functions=functions,
        requests={action: count / n for action, count in requests.items()},
        express_seconds=sum(m["execution_s"] for m in measured) / n,
        log_bytes=sum(m["log_bytes"] for m in measured) / n,
        secret_reads=reads,
        traces=sum(sampled_traces(sum(1 for r in m["reports"]), m["execution_s"]) for m in measured)
        / n,
    )


def _print_bill(usage: ExecutionUsage, standing: Standing, as_json: bool) -> None:
    print("\nan average execution:")
    for stage, function in usage.functions.items():
        print(
            f"  {stage:18} {function.invocations:5.1f} invocations, "
            f"{function.billed_seconds:6.3f} billed s at {function.memory_mb} MB "
            f"({function.architecture}{', SnapStart' if function.snapstart else ''})"
        )
    print(f"  requests: {sum(usage.requests.values()):.1f}, log bytes: {usage.log_bytes:,.0f}")
    for action, count in sorted(usage.requests.items(), key=lambda item: -item[1]):
        print(f"    {action:30} {count:6.1f}")
    print(
        f"standing: {standing.custom_metrics} custom metrics, {standing.alarms} alarms, "
        f"{standing.dashboards} dashboards, {standing.kms_keys} KMS keys, "
        f"{standing.secrets} secrets"
    )
    bills = {minutes: monthly_bill(usage, standing, schedule_minutes=minutes) for minutes in (5, 1)}
    print(f"\nmonthly bill (US$, eu-west-2)      {'5 min':>9} {'1 min':>9}")
    for line in sorted(set(bills[5].lines) | set(bills[1].lines)):
        print(f"  {line:32} {bills[5].lines.get(line, 0):9.2f} {bills[1].lines.get(line, 0):9.2f}")
    print(f"  {'total':32} {bills[5].total:9.2f} {bills[1].total:9.2f}")
    if as_json:
        print(json.dumps({str(m): b.lines for m, b in bills.items()}))
    print(f"monthly total at the five-minute schedule: ${bills[5].total:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=48)
    parser.add_argument("--json", action="store_true", help="the bill's lines as JSON too")
    args = parser.parse_args(argv)

    measured: list[dict[str, Any]] = []
    with measured_workflow("cost", 1.0) as (workflow, source_dsn, endpoint):
        names = {f.name: f.logical_id for f in workflow.platform.functions}
        print(f"backfill: {workflow.execute().status}", flush=True)
        for number in range(1, args.executions + 1):
            if number % CHANGE_EVERY == 0:
                with connect(source_dsn) as conn:
                    mutate(conn, seed=number, changes=1)
            before, log_before = requests_so_far(endpoint), workflow.log_path.stat().st_size
            report = workflow.execute()
            if report.status != "SUCCEEDED":
                print(f"execution {number}: {report.status}", file=sys.stderr)
                return 1
            measured.append(
                {
                    "execution_s": report.duration_s,
                    "requests": dict(requests_so_far(endpoint) - before),
                    "log_bytes": workflow.log_path.stat().st_size - log_before,
                    "reports": _reports(workflow.log_path, names, report),
                }
            )
        usage = _average(measured, workflow)
        standing = _standing(workflow.assembly, _custom_metrics(workflow.log_path))
    _print_bill(usage, standing, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
