"""Does an execution's work grow with the history behind it? `make bench-history`.

Seeds a source with the generator (default scale 1), runs a backfill, then N executions
(default 500) with a few business changes in the source before each (default 5, about
what five minutes bring at the client's rates). The changes repeat every 50 executions
(seeds 1 to 50 over again, the last 50 with the first 50's), so the last 50 make the
same kinds of change as the first 50, in the same order, and differ only in the
history behind them. For the first and the last 50 it prints the median execution
time, the handlers' seconds (and of them, the seconds the local service took to
answer: AWS answers at its own speed, whatever the bucket holds), the CPU seconds of
them (the handlers' own work, without their waits for the local service or for a core
it shares) and the mean AWS requests per execution, by function, service and action,
as the local service counted them; the last line compares the two. Growth in any is
work that depends on history, which a month of five-minute runs (8,640 executions)
would multiply.

Usage::

    python bench/history.py [--executions 500] [--changes 5] [--scale 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from typing import Any

from common import measure, measured_workflow, requests_so_far, service_seconds_so_far

from totes.db import connect
from totes_local.source.mutate import mutate

WINDOW = 50


def _seed(number: int, executions: int, window: int) -> int:
    """The seed of execution ``number``: 1 to ``window`` over again, the last window's
    the same as the first's, whatever the number of executions."""
    last_window_from = executions - window
    if number > last_window_from:
        return number - last_window_from
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


def _print_comparison(executions: list[dict[str, Any]], window: int, *, as_json: bool) -> None:
    first, last = _summary(executions[:window]), _summary(executions[-window:])
    print(f"\nper execution, first {window} and last {window} of {len(executions)}:")
    print(f"  {'execution (median)':44} {first['execution_s']:8.3f} s {last['execution_s']:8.3f} s")
    print(
        f"  {'handlers critical path (median)':44} {first['critical_path_s']:8.3f} s "
        f"{last['critical_path_s']:8.3f} s"
    )
    for function in sorted(set(first["handler_s"]) | set(last["handler_s"])):
        for label, figures in (
            ("handler s", "handler_s"),
            ("of it, local service s", "service_s"),
            ("CPU s", "cpu_s"),
        ):
            print(
                f"  {f'{function} {label} (mean)':44} "
                f"{first[figures].get(function, 0):8.3f} s {last[figures].get(function, 0):8.3f} s"
            )
    for action in sorted(set(first["requests"]) | set(last["requests"])):
        print(
            f"  {action:44} {first['requests'].get(action, 0):8.1f}   "
            f"{last['requests'].get(action, 0):8.1f}"
        )
    total_first, total_last = sum(first["requests"].values()), sum(last["requests"].values())
    summed_first, summed_last = (
        sum(first["handler_s"].values()) - sum(first["service_s"].values()),
        sum(last["handler_s"].values()) - sum(last["service_s"].values()),
    )
    # A log without CPU figures (an earlier runtime's) gives none; the ratio is then 0.
    cpu_first, cpu_last = sum(first["cpu_s"].values()), sum(last["cpu_s"].values())
    if as_json:
        print(json.dumps({"first": first, "last": last, "executions": executions}))
    print(
        f"last/first: execution {last['execution_s'] / first['execution_s']:.2f}, "
        f"handler s less the local service's {summed_last / summed_first:.2f} "
        f"({summed_first:.3f} -> {summed_last:.3f}), "
        f"handlers' CPU s {cpu_last / cpu_first if cpu_first else 0:.2f} "
        f"({cpu_first:.3f} -> {cpu_last:.3f}), "
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

    executions: list[dict[str, Any]] = []
    with measured_workflow("history", args.scale) as (workflow, source_dsn, endpoint):
        backfill = workflow.execute()
        print(f"backfill: {backfill.status} in {backfill.duration_s:.2f} s", flush=True)
        for number in range(1, args.executions + 1):
            with connect(source_dsn) as conn:
                mutate(conn, seed=_seed(number, args.executions, window), changes=args.changes)
            before = requests_so_far(endpoint, by_function=True)
            log_offset = workflow.log_path.stat().st_size
            served_before = service_seconds_so_far(endpoint)
            report = workflow.execute()
            if report.status != "SUCCEEDED":
                print(f"execution {number}: {report.status}", file=sys.stderr)
                return 1
            figures = measure(workflow, report, log_offset=log_offset)
            executions.append(
                {
                    "execution_s": report.duration_s,
                    "handler_s": {
                        name: function["handler_s"]
                        for name, function in figures["functions"].items()
                    },
                    "cpu_s": {
                        name: function["cpu_s"] for name, function in figures["functions"].items()
                    },
                    "critical_path_s": figures["handlers_critical_path_s"],
                    "service_s": {
                        function: seconds - served_before.get(function, 0.0)
                        for function, seconds in service_seconds_so_far(endpoint).items()
                    },
                    "requests": dict(requests_so_far(endpoint, by_function=True) - before),
                }
            )
            if number % 50 == 0:
                print(f"{number} executions", flush=True)
    _print_comparison(executions, window, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
