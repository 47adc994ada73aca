"""What ``totes run`` shows while the local workflow runs, and after each execution."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from totes.findings import FindingKind
from totes.progress import Verdict
from totes_local.runtime.history import Outcome
from totes_local.runtime.workflow import (
    ExecutionReport,
    LocalWorkflow,
    Notification,
    Progress,
    ProgressKind,
)

_MARKS = {
    Outcome.SUCCEEDED: "[green]✔[/green]",
    Outcome.FAILED: "[red]✖[/red]",
    Outcome.NOT_RUN: "[yellow]…[/yellow]",
}
_COUNT_KEYS = ("rows", "rows_loaded")


def human_duration(seconds: float) -> str:
    """A duration for people: ``"3.2 s"``, ``"4 min 05 s"``, ``"412 days 3 h"``.

    Examples
    --------
    >>> human_duration(3.24), human_duration(245), human_duration(35_603_600)
    ('3.2 s', '4 min 05 s', '412 days 1 h')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    if seconds < 86_400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{int(seconds // 86_400)} days {int(seconds % 86_400 // 3600)} h"


class ProgressPrinter:
    """Prints one line per stage as it starts and ends, and one per table as it is done.

    Examples
    --------
    >>> workflow.execute(on_progress=ProgressPrinter(Console()))  # doctest: +SKIP
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, progress: Progress) -> None:
        """Show one state's start or end.

        Examples
        --------
        >>> ProgressPrinter(Console())(progress)  # doctest: +SKIP
            ✔ sales_order              11,175 rows   0.26 s
        """
        entry = progress.entry
        if entry.type == "Parallel":
            return
        if progress.map_state is not None:
            # An item's task is its story; the states that name a failure add nothing here.
            if progress.kind is ProgressKind.FINISHED and entry.type == "Task":
                self._item(progress)
            return
        if progress.kind is ProgressKind.ENTERED:
            if entry.type == "Map":
                suffix = f" ({progress.items} items)" if progress.items is not None else ""
                self.console.print(f"  [bold]{entry.name}[/bold]{suffix}")
            return
        seconds = f"{entry.duration_s:.2f} s" if entry.duration_s is not None else ""
        if entry.name == "StartNextPass" and isinstance(entry.output, dict):
            self._next_pass(entry.output)
        elif entry.name == "CheckProgress" and isinstance(entry.output, dict):
            self.console.print(
                f"  {_MARKS[entry.outcome]} {entry.name} {seconds}  {_verdict(entry.output)}"
            )
        elif entry.type == "Map":
            self.console.print(f"  {_MARKS[entry.outcome]} {entry.name} {seconds}")
        elif entry.type != "Succeed":
            error = f" [red]{entry.error}[/red]" if entry.error else ""
            self.console.print(f"  {_MARKS[entry.outcome]} {entry.name} {seconds}{error}")

    def _next_pass(self, state: dict[str, object]) -> None:
        visiting = state.get("visiting")
        source = visiting.get("source", []) if isinstance(visiting, dict) else []
        listed = ", ".join(map(str, source)) if isinstance(source, list) and source else "none"
        self.console.print(
            f"\n  [bold]Pass {int(str(state.get('passes', 0))) + 1}[/bold] "
            f"(source tables with rows left: {listed})"
        )

    def _item(self, progress: Progress) -> None:
        entry = progress.entry
        rows = next(
            (
                entry.output[key]
                for key in _COUNT_KEYS[::-1]
                if isinstance(entry.output, dict) and key in entry.output
            ),
            None,
        )
        counted = f"{rows:>10,} rows" if isinstance(rows, int) else " " * 15
        seconds = f"{entry.duration_s:6.2f} s" if entry.duration_s is not None else ""
        skipped = entry.output.get("rows_skipped") if isinstance(entry.output, dict) else None
        already = f"  ({skipped:,} already in the warehouse)" if skipped else ""
        retried = entry.attempts - 1
        retries = f"  ({retried} {'retry' if retried == 1 else 'retries'})" if retried > 0 else ""
        error = f"  [red]{entry.error}[/red]" if entry.outcome is Outcome.FAILED else ""
        self.console.print(
            f"    {_MARKS[entry.outcome]} {entry.item or entry.name:<20} {counted} "
            f"{seconds}{already}{retries}{error}"
        )


_STAGE_COLUMNS = ("ingested", "transformed", "loaded", "skipped", "rejected")
#: Shown only when some table has such rows.
_OCCASIONAL_COLUMNS = ("replayed",)


def _verdict(progress: dict[str, object]) -> str:
    """CheckProgress's decision, for people."""
    backlog = int(str(progress.get("backlog_rows", 0)))
    files = int(str(progress.get("files_remaining", 0)))
    left = f"{backlog:,} rows" + (f" and {files:,} files" if files else "")
    verdict = progress.get("verdict")
    if verdict == Verdict.CAUGHT_UP:
        return "caught up"
    if verdict == Verdict.KEEP_GOING:
        return f"{left} left: another pass"
    return f"{left} left: no time for another pass in this execution"


def describe_remaining(counts: dict[str, int]) -> str:
    """What one table has left, for people.

    Examples
    --------
    >>> describe_remaining({"remaining": 617500, "files_remaining": 0, "files_waiting": 1})
    '617,500 rows, 1 file waiting'
    """
    parts = []
    if counts.get("remaining"):
        parts.append(f"{counts['remaining']:,} rows")
    if counts.get("files_remaining"):
        parts.append(f"{counts['files_remaining']:,} files")
    if counts.get("files_waiting"):
        waiting = counts["files_waiting"]
        parts.append(f"{waiting:,} {'file' if waiting == 1 else 'files'} waiting")
    return ", ".join(parts)


def rows_table(report: ExecutionReport) -> Table:
    """Rows per table and stage in one execution (every pass), and what each has left.

    Examples
    --------
    >>> Console().print(rows_table(report))  # doctest: +SKIP
    """
    passes = f", {report.passes} passes" if report.passes > 1 else ""
    table = Table(title=f"rows moved by {report.name}{passes}", title_justify="left")
    tables = report.tables()
    columns = [
        *_STAGE_COLUMNS,
        *(
            column
            for column in _OCCASIONAL_COLUMNS
            if any(counts.get(column) for counts in tables.values())
        ),
    ]
    table.add_column("table")
    for stage in columns:
        table.add_column(stage, justify="right")
    table.add_column("left", justify="right")
    remaining = report.remaining()
    for name, counts in tables.items():
        table.add_row(
            name,
            *(_count(counts, stage) for stage in columns),
            f"[yellow]{describe_remaining(remaining[name])}[/yellow]" if name in remaining else "",
        )
    return table


def _count(counts: dict[str, int], stage: str) -> str:
    if stage not in counts:
        return ""
    shown = f"{counts[stage]:,}"
    return f"[yellow]{shown}[/yellow]" if stage == "rejected" and counts[stage] else shown


_FINDING_MARKS = {
    FindingKind.ROWS_REJECTED: "[red]✖[/red]",
    FindingKind.MISSING_COLUMNS: "[red]✖[/red]",
    FindingKind.ROWS_REPLAYED: "[green]✔[/green]",
}


def print_attention(console: Console, report: ExecutionReport, bucket: str | None) -> None:
    """The "needs attention" block: what the stages found, by cause, and where the rows are.

    Nothing is printed when nothing was found.

    Examples
    --------
    >>> print_attention(Console(), report, "totes-processed")  # doctest: +SKIP
    Needs attention
      ✖ fact_sales_order (transform): 2 rows rejected: agreed_delivery_date is not a ...
    """
    findings = report.findings()
    if not findings:
        return
    attention = [finding for finding in findings if finding.kind.needs_attention]
    console.print(
        "[bold yellow]Needs attention[/bold yellow]" if attention else "[bold]Noted[/bold]"
    )
    for finding in sorted(findings, key=lambda f: not f.kind.needs_attention):
        mark = _FINDING_MARKS.get(finding.kind, "[yellow]⚠[/yellow]")
        # Details quote source values, which may look like markup.
        console.print(f"  {mark} {finding.table} ({finding.stage}): {escape(finding.describe())}")
        for key in finding.where:
            where = f"s3://{bucket}/{key}" if bucket else key
            console.print(f"      kept at {where}")
        if finding.kind is FindingKind.ROWS_REJECTED:
            console.print(f"      see them with: totes rejects --table {finding.table}")


def stages_table(report: ExecutionReport) -> Table:
    """Seconds per stage in one execution.

    Examples
    --------
    >>> Console().print(stages_table(report))  # doctest: +SKIP
    """
    table = Table(title="seconds per stage", title_justify="left")
    table.add_column("stage")
    table.add_column("outcome")
    table.add_column("seconds", justify="right")
    for name, seconds in report.stage_durations().items():
        outcome = report.history.outcome(name)
        table.add_row(
            name, f"{_MARKS[outcome]} {outcome}", f"{seconds:.2f}" if seconds is not None else ""
        )
    table.add_row("[bold]execution[/bold]", report.status, f"{report.duration_s:.2f}")
    return table


def print_outcome(console: Console, report: ExecutionReport) -> None:
    """The execution's status line; for a failure, the failing state, its error and cause.

    Examples
    --------
    >>> print_outcome(Console(), report)  # doctest: +SKIP
    """
    if report.succeeded:
        passes = f" ({report.passes} passes)" if report.passes > 1 else ""
        rejected = report.rows_rejected
        if rejected:
            rows = f"{rejected:,} {'row' if rejected == 1 else 'rows'}"
            console.print(
                f"[yellow]⚠ {report.name} SUCCEEDED with {rows} rejected[/yellow] in "
                f"{human_duration(report.duration_s)}{passes}"
            )
        else:
            console.print(
                f"[green]✔ {report.name} SUCCEEDED[/green] in "
                f"{human_duration(report.duration_s)}{passes}"
            )
        if report.caught_up:
            waiting = sum(counts.get("files_waiting", 0) for counts in report.remaining().values())
            held = (
                f" ({waiting} fact {'file waits' if waiting == 1 else 'files wait'} for a "
                "dimension row)"
                if waiting
                else ""
            )
            console.print(f"  caught up: nothing left to ingest, transform or load{held}")
        else:
            left = "; ".join(
                f"{name} {describe_remaining(counts)}"
                for name, counts in report.remaining().items()
            )
            console.print(
                f"  [yellow]not caught up[/yellow]: the next execution continues ({left})"
            )
    else:
        failed = report.failed_entry
        where = ""
        if failed is not None:
            where = f" in state [bold]{failed.name}[/bold]" + (
                f" ({failed.item})" if failed.item else ""
            )
        console.print(
            f"[red]✖ {report.name} {report.status}[/red] after "
            f"{human_duration(report.duration_s)}{where}"
        )
        console.print(f"  error: [bold]{report.error}[/bold]")
        console.print(f"  cause: {report.cause_message}")
    for (state, error), attempts in report.history.retries().items():
        plural = "attempt" if attempts == 1 else "attempts"
        console.print(f"  retried: {state}: {attempts} {plural} after {error}")
    lag = report.freshness_lag_s
    if lag is not None:
        console.print(
            f"  freshness lag: {human_duration(lag)} (now minus the newest last_updated "
            "in the warehouse)"
        )


def print_service(console: Console, workflow: LocalWorkflow) -> None:
    """Where the local AWS service runs, and whether this run continues earlier state.

    Examples
    --------
    >>> print_service(Console(), workflow)  # doctest: +SKIP
    Local AWS service: http://127.0.0.1:40321 (pid 4242, running since ...)
    Local state: continued (watermarks, buckets and history of earlier runs of this pair)
    """
    start = workflow.service
    if start is None:
        return
    service = start.service
    if start.replaced_dead:
        how = "started: the previous one had stopped or been killed, and its state with it"
    elif start.started:
        how = "started"
    else:
        how = f"running since {service.started}"
    console.print(f"Local AWS service: {service.endpoint} (pid {service.pid}, {how})")
    pair = workflow.platform.stack_name
    if workflow.fresh:
        console.print(f"Local state of {pair}: [yellow]fresh[/yellow] (--fresh discarded it)")
    elif workflow.local_state == "continued":
        console.print(
            f"Local state of {pair}: continued (watermarks, buckets and history of earlier "
            "runs against this source and warehouse)"
        )
    else:
        console.print(
            f"Local state of {pair}: [yellow]fresh[/yellow] (none kept for this source and "
            "warehouse): everything is ingested again; the warehouse skips what it holds"
        )


def print_notification(console: Console, notification: Notification) -> None:
    """A message the alert topic received, as its email reads: subject, then body.

    Examples
    --------
    >>> print_notification(Console(), notification)  # doctest: +SKIP
    Alert email (topic arn:aws:sns:...:TotesDataPlatform-...-AlertsTopic...)
      Subject: totes: TransformTable failed for dim_staff (InjectedFaultError)
      ...
    """
    console.print(f"\n[bold]Alert email[/bold] (topic {notification.topic_arn})")
    console.print(f"  Subject: {notification.subject}", markup=False)
    for line in notification.message.splitlines():
        console.print(f"  {line}", markup=False)
