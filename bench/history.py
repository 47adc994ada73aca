"""Does an execution's work grow with the history behind it? `make bench-history`.

Seeds a source with the generator (default scale 1), runs a backfill, then N executions
(default 500) with a few business changes in the source before each (default 5, about
what five minutes bring at the client's rates). For the first and the last 50 it prints
the median execution time and the mean AWS requests per execution, by service and action,
as the local service counted them for the Lambda functions; the last line compares the
two. Growth in either is work that depends on history, which a month of five-minute
runs (8,640 executions) would multiply.

Usage::

    python bench/history.py [--executions 500] [--changes 5] [--scale 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from totes.db import connect, create_database, drop_database, with_database
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.assembly import find_project_root, synthesise
from totes_local.runtime.call_trail import CALL_TRAIL_VARIABLE, call_counts
from totes_local.runtime.postgres import find_or_start_server
from totes_local.runtime.service import stop_service
from totes_local.runtime.workflow import LocalWorkflow
from totes_local.source.generator import seed_synthetic
from totes_local.source.mutate import mutate

WINDOW = 50


def _requests(endpoint: str) -> Counter[str]:
    totals: Counter[str] = Counter()
    for actions in call_counts(endpoint).values():
        totals.update(actions)
    return totals


def _summary(executions: list[dict[str, Any]]) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    for execution in executions:
        requests.update(execution["requests"])
    return {
        "execution_s": statistics.median(e["execution_s"] for e in executions),
        "requests": {a: n / len(executions) for a, n in sorted(requests.items())},
    }


def _print_comparison(executions: list[dict[str, Any]], window: int, *, as_json: bool) -> None:
    first, last = _summary(executions[:window]), _summary(executions[-window:])
    print(f"\nper execution, first {window} and last {window} of {len(executions)}:")
    print(f"  {'execution (median)':32} {first['execution_s']:8.3f} s {last['execution_s']:8.3f} s")
    for action in sorted(set(first["requests"]) | set(last["requests"])):
        print(
            f"  {action:32} {first['requests'].get(action, 0):8.1f}   "
            f"{last['requests'].get(action, 0):8.1f}"
        )
    total_first, total_last = sum(first["requests"].values()), sum(last["requests"].values())
    if as_json:
        print(json.dumps({"first": first, "last": last, "executions": executions}))
    print(
        f"last/first: execution {last['execution_s'] / first['execution_s']:.2f}, "
        f"requests {total_last / total_first:.2f} ({total_first:.1f} -> {total_last:.1f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--changes", type=int, default=5, help="source changes before each")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="one JSON line with every figure")
    args = parser.parse_args(argv)
    window = min(WINDOW, max(1, args.executions // 2))

    assembly = synthesise(find_project_root(), Path(".totes/cdk.out"))
    executions: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="totes-bench-history-") as scratch:
        os.environ[CALL_TRAIL_VARIABLE] = str(Path(scratch) / "call-trail.jsonl")
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        data_dir = Path(scratch) / "data"
        source, warehouse = "totes_bench_history_source", "totes_bench_history_warehouse"
        try:
            for database in (source, warehouse):
                drop_database(server.admin_dsn, database)
                create_database(server.admin_dsn, database)
            source_dsn = with_database(server.admin_dsn, source)
            warehouse_dsn = with_database(server.admin_dsn, warehouse)
            with connect(source_dsn) as conn:
                seed_synthetic(conn, scale=args.scale, seed=42)
            with connect(warehouse_dsn) as conn:
                init_warehouse(conn)
            with LocalWorkflow(
                assembly, source_dsn=source_dsn, warehouse_dsn=warehouse_dsn, data_dir=data_dir
            ) as workflow:
                if workflow.service is None:  # pragma: no cover - entering starts it
                    raise RuntimeError("the local AWS service did not start")
                endpoint = workflow.service.service.endpoint
                backfill = workflow.execute()
                print(f"backfill: {backfill.status} in {backfill.duration_s:.2f} s", flush=True)
                for number in range(1, args.executions + 1):
                    with connect(source_dsn) as conn:
                        mutate(conn, seed=number, changes=args.changes)
                    before = _requests(endpoint)
                    report = workflow.execute()
                    if report.status != "SUCCEEDED":
                        print(f"execution {number}: {report.status}", file=sys.stderr)
                        return 1
                    executions.append(
                        {
                            "execution_s": report.duration_s,
                            "requests": dict(_requests(endpoint) - before),
                        }
                    )
                    if number % 50 == 0:
                        print(f"{number} executions", flush=True)
        finally:
            stop_service(data_dir)
            for database in (source, warehouse):
                drop_database(server.admin_dsn, database)
            server.stop()

    _print_comparison(executions, window, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
