"""Does an execution's work grow with the history behind it? `make bench-history`.

Seeds a source with the generator (default scale 1), runs a backfill, then N executions
(default 500) with a few business changes in the source before each (default 5, about
what five minutes bring at the client's rates). The changes repeat every 50 executions
(seeds 1 to 50 over again, the last 50 with the first 50's), so the last 50 make the
same kinds of change as the first 50, in the same order, and differ only in the
history behind them.

The last 50 run side by side with a second deployment of the same source, new: its
backfill, then its first 50 executions with the same seeds, one of each deployment in
turn. A shared machine's speed drifts by a third within minutes; side by side, the
drift falls on both alike, where the first 50 of the run were measured ten minutes
before the last.

For the first 50, the new deployment's 50 and the last 50 it prints the median
execution time, the handlers' seconds (and of them, the seconds the local service took
to answer: AWS answers at its own speed, whatever the bucket holds), the CPU seconds of
them (the handlers' own work, without their waits for the local service or for a core
it shares) and the mean AWS requests per execution, by function, service and action,
as the local service counted them; the last lines compare the last 50 with the first
and with the new deployment's. Growth in any is work that depends on history, which a
month of five-minute runs (8,640 executions) would multiply.

Usage::

    python bench/history.py [--executions 500] [--changes 5] [--scale 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from common import measure, measured_workflow, requests_so_far, service_seconds_so_far

from totes.db import connect
from totes_local.runtime.workflow import LocalWorkflow
from totes_local.source.mutate import mutate

WINDOW = 50


def _seed(number: int, window: int) -> int:
    """The seed of execution ``number`` of a deployment: 1 to ``window`` over again."""
    return (number - 1) % window + 1


def _summary(executions: list[dict[str, Any]]) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    handlers: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    served: dict[str, float] = {}
    for execution in executions:
        requests.update(execution["requests"])
        handlers.update(execution["handler_s"])
        cpu.update(execution["cpu_s"])
        for function, seconds in execution["service_s"].items():
            served[function] = served.get(function, 0.0) + seconds
    return {
        "execution_s": statistics.median(e["execution_s"] for e in executions),
        "critical_path_s": statistics.median(e["critical_path_s"] for e in executions),
        "handler_s": {f: s / len(executions) for f, s in sorted(handlers.items())},
        "service_s": {f: s / len(executions) for f, s in sorted(served.items())},
        "cpu_s": {f: s / len(executions) for f, s in sorted(cpu.items())},
        "requests": {a: n / len(executions) for a, n in sorted(requests.items())},
    }


def _ratios(base: dict[str, Any], other: dict[str, Any]) -> str:
    """``other`` over ``base``: execution, handler s less the local service's, CPU, requests."""
    less_service = [
        sum(figures["handler_s"].values()) - sum(figures["service_s"].values())
        for figures in (base, other)
    ]
    # A log without CPU figures (an earlier runtime's) gives none; the ratio is then 0.
    cpu = [sum(figures["cpu_s"].values()) for figures in (base, other)]
    requests = [sum(figures["requests"].values()) for figures in (base, other)]
    return (
        f"execution {other['execution_s'] / base['execution_s']:.2f}, "
        f"handler s less the local service's {less_service[1] / less_service[0]:.2f} "
        f"({less_service[0]:.3f} -> {less_service[1]:.3f}), "
        f"handlers' CPU s {cpu[1] / cpu[0] if cpu[0] else 0:.2f} ({cpu[0]:.3f} -> {cpu[1]:.3f}), "
        f"requests {requests[1] / requests[0]:.2f} ({requests[0]:.1f} -> {requests[1]:.1f})"
    )


def _print_comparison(
    aged: list[dict[str, Any]], new: list[dict[str, Any]], window: int, *, as_json: bool
) -> None:
    first, beside, last = _summary(aged[:window]), _summary(new), _summary(aged[-window:])
    columns = (first, beside, last)
    print(
        f"\nper execution: first {window} of {len(aged)} | a new deployment's first {window}, "
        f"side by side with | the last {window}"
    )

    def row(label: str, values: list[float], unit: str = " s") -> None:
        print(f"  {label:44}" + "".join(f" {value:8.3f}{unit}" for value in values))

    row("execution (median)", [c["execution_s"] for c in columns])
    row("handlers critical path (median)", [c["critical_path_s"] for c in columns])
    for function in sorted(set().union(*(c["handler_s"] for c in columns))):
        for label, figures in (
            ("handler s", "handler_s"),
            ("of it, local service s", "service_s"),
            ("CPU s", "cpu_s"),
        ):
            row(f"{function} {label} (mean)", [c[figures].get(function, 0) for c in columns])
    for action in sorted(set().union(*(c["requests"] for c in columns))):
        row(action, [c["requests"].get(action, 0) for c in columns], unit="  ")
    if as_json:
        print(
            json.dumps(
                {
                    "first": first,
                    "beside": beside,
                    "last": last,
                    "executions": aged,
                    "new_deployment_executions": new,
                }
            )
        )
    print(f"last/first, minutes apart: {_ratios(first, last)}")
    print(f"last/new deployment's, side by side: {_ratios(beside, last)}")


class ExecutionFailedError(RuntimeError):
    """An execution of the benchmark did not succeed: its figures would mean nothing."""


@dataclass
class _Deployment:
    """One deployment under measurement: its workflow, its source and what it measured."""

    name: str
    workflow: LocalWorkflow
    source_dsn: str
    endpoint: str
    executions: list[dict[str, Any]] = field(default_factory=list)

    def backfill(self) -> None:
        """Run the first execution, which loads the whole source.

        Raises
        ------
        ExecutionFailedError
            It did not succeed.
        """
        report = self.workflow.execute()
        if report.status != "SUCCEEDED":
            raise ExecutionFailedError(f"{self.name}: the backfill ended {report.status}")
        print(f"{self.name}: backfill in {report.duration_s:.2f} s", flush=True)

    def execute(self, seed: int, changes: int) -> None:
        """Change the source with ``seed``, run one execution and keep its figures.

        Raises
        ------
        ExecutionFailedError
            The execution did not succeed.
        """
        with connect(self.source_dsn) as conn:
            mutate(conn, seed=seed, changes=changes)
        before = requests_so_far(self.endpoint, by_function=True)
        log_offset = self.workflow.log_path.stat().st_size
        served_before = service_seconds_so_far(self.endpoint)
        report = self.workflow.execute()
        if report.status != "SUCCEEDED":
            raise ExecutionFailedError(
                f"{self.name}: execution {len(self.executions) + 1} ended {report.status}"
            )
        figures = measure(self.workflow, report, log_offset=log_offset)
        functions = figures["functions"]
        self.executions.append(
            {
                "execution_s": report.duration_s,
                "handler_s": {name: function["handler_s"] for name, function in functions.items()},
                "cpu_s": {name: function["cpu_s"] for name, function in functions.items()},
                "critical_path_s": figures["handlers_critical_path_s"],
                "service_s": {
                    function: seconds - served_before.get(function, 0.0)
                    for function, seconds in service_seconds_so_far(self.endpoint).items()
                },
                "requests": dict(requests_so_far(self.endpoint, by_function=True) - before),
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--changes", type=int, default=5, help="source changes before each")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="one JSON line with every figure")
    args = parser.parse_args(argv)
    window = min(WINDOW, max(1, args.executions // 2))

    with ExitStack() as deployments:
        aged = _Deployment(
            "aged", *deployments.enter_context(measured_workflow("history", args.scale))
        )
        try:
            aged.backfill()
            for number in range(1, args.executions - window + 1):
                aged.execute(_seed(number, window), args.changes)
                if number % 50 == 0:
                    print(f"{number} executions", flush=True)
            # Made only now, so that it holds no history and its service sits idle through
            # none of the aged deployment's executions.
            new = _Deployment(
                "new", *deployments.enter_context(measured_workflow("history_new", args.scale))
            )
            new.backfill()
            for number in range(1, window + 1):
                # The same changes on both, each first in turn, so that whatever the machine
                # does in these minutes falls on both alike.
                for deployment in (new, aged) if number % 2 else (aged, new):
                    deployment.execute(_seed(number, window), args.changes)
        except ExecutionFailedError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{len(aged.executions)} executions", flush=True)
    _print_comparison(aged.executions, new.executions, window, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
