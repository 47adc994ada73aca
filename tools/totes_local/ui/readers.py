"""What the console shows, read from a local deployment through the APIs the CLI uses.

- Executions and their histories: Step Functions (``ListExecutions``,
  ``DescribeExecution``, ``GetExecutionHistory`` followed page by page with
  ``nextToken``, each event read once), turned into the same
  :class:`~totes_local.runtime.workflow.ExecutionReport` that ``totes run`` prints.
- The warehouse: its DSN as the load function's configuration gives it (the local
  deployment hands the functions DSNs instead of secrets), row counts, the load
  ledger and the newest version of each fact table.
- The quarantine (:func:`totes_local.rejects.quarantined_rows`) and the messages the
  alert topic received (the local service keeps them).
"""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from totes.db import connect, row_counts
from totes.failure_notice import decode_failure
from totes.names import EnvironmentVariable
from totes.tables import FACT_TABLES, WAREHOUSE_TABLES
from totes_local.rejects import QuarantinedRow, quarantined_rows
from totes_local.runtime.graph import mermaid_flowchart, node_ids
from totes_local.runtime.history import HistoryFollower, Outcome, StateEntry
from totes_local.runtime.service import sent_notifications
from totes_local.runtime.workflow import ExecutionReport
from totes_local.stacks import StackOutputs

_RUNNING = "RUNNING"
_HISTORY_PAGE = 1000
#: The health page's charts cover this many executions.
_HEALTH_EXECUTIONS = 20
#: A value shown in the state panel is cut after this many characters of JSON.
_SHOWN_JSON_CHARS = 20_000


@dataclass
class _FollowedExecution:
    """An execution's history as read so far, and where to continue reading it."""

    follower: HistoryFollower
    token: str | None = None
    report: ExecutionReport | None = None
    #: Held while the history is read on, so two requests never read the same page twice.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def finished(self) -> bool:
        return self.report is not None and self.report.status != _RUNNING and self.token is None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def _shown(value: Any) -> str | None:
    """A state's input or output as indented JSON, cut when it is very long."""
    if value is None:
        return None
    text = json.dumps(value, indent=2, default=str)
    if len(text) > _SHOWN_JSON_CHARS:
        return text[:_SHOWN_JSON_CHARS] + f"\n... ({len(text):,} characters in all)"
    return text


def execution_summary(report: ExecutionReport) -> dict[str, Any]:
    """One row of the executions page.

    ``rows_moved`` is what reached the warehouse (rows loaded, every table and pass).

    Examples
    --------
    >>> execution_summary(report)["status"]  # doctest: +SKIP
    'SUCCEEDED'
    """
    tables = report.tables()
    failed = report.failed_entry
    return {
        "name": report.name,
        "run_id": report.run_id,
        "status": report.status,
        "started": _iso(report.started),
        "duration_s": round(report.duration_s, 3),
        "passes": report.passes,
        "rows_ingested": sum(counts.get("ingested", 0) for counts in tables.values()),
        "rows_moved": sum(counts.get("loaded", 0) for counts in tables.values()),
        "rows_rejected": report.rows_rejected,
        "caught_up": report.caught_up,
        "error": report.error,
        "failed_state": failed.name if failed else None,
        "failed_item": failed.item if failed else None,
    }


def _entry_json(entry: StateEntry) -> dict[str, Any]:
    return {
        "item": entry.item,
        "outcome": entry.outcome.value,
        "started": _iso(entry.started),
        "duration_s": entry.duration_s,
        "attempts": entry.attempts,
        "input": _shown(entry.input),
        "output": _shown(entry.output),
        "error": entry.error,
        # The error's own message first; the whole cause (a stack trace) on request.
        "message": decode_failure(entry.error, entry.cause).message if entry.error else None,
        "cause": entry.cause,
    }


def _event_rows(follower: HistoryFollower, started: datetime) -> list[dict[str, Any]]:
    """The history's events for the table under the graph, each with the state it is about.

    An event that names no state (an attempt, a Map iteration) is shown with the state
    of the event it follows.
    """
    state_of: dict[int, str] = {}
    rows = []
    for event_id in sorted(follower.by_id):
        event = follower.by_id[event_id]
        details: Mapping[str, Any] = next(
            (value for key, value in event.items() if key.endswith("EventDetails")), {}
        )
        name = details.get("name")
        if not isinstance(name, str):
            name = state_of.get(int(event.get("previousEventId") or 0), "")
        state_of[event_id] = name
        moment = event["timestamp"]
        moment = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
        detail = details.get("error") or ""
        if details.get("cause"):
            detail = f"{detail}: {str(details['cause'])[:300]}"
        rows.append(
            {
                "id": event_id,
                "type": str(event["type"]),
                "state": name,
                "elapsed_ms": round((moment - started).total_seconds() * 1000),
                "time": _iso(moment),
                "detail": detail,
            }
        )
    return rows


class DeploymentReader:
    """Reads one deployment for the console; safe to share between request threads.

    Finished executions are read once and kept; a running one is read on from where
    the last look stopped.

    Parameters
    ----------
    stack
        The deployment (:func:`totes_local.stacks.local_stack`).
    """

    def __init__(self, stack: StackOutputs) -> None:
        self.stack = stack
        self.state_machine_arn = stack.output("PipelineStateMachineArn")
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._executions: dict[str, _FollowedExecution] = {}
        self._definition: dict[str, Any] | None = None

    def client(self, service: str) -> Any:
        """A client of the deployment's service, made once (boto3 clients are thread-safe)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.stack.client(service)
            return self._clients[service]

    @property
    def definition(self) -> dict[str, Any]:
        """The state machine's definition, as deployed."""
        if self._definition is None:
            described = self.client("stepfunctions").describe_state_machine(
                stateMachineArn=self.state_machine_arn
            )
            self._definition = json.loads(described["definition"])
        return self._definition

    # -- executions -----------------------------------------------------------------------

    def execution_arns(self) -> list[str]:
        """Every execution of the state machine, newest first."""
        listed = [
            execution
            for page in self.client("stepfunctions")
            .get_paginator("list_executions")
            .paginate(stateMachineArn=self.state_machine_arn)
            for execution in page["executions"]
        ]
        listed.sort(key=lambda execution: execution["startDate"], reverse=True)
        return [str(execution["executionArn"]) for execution in listed]

    def arn_of(self, name: str) -> str:
        """An execution's ARN from its name (execution ARNs are the machine's plus the name)."""
        prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        return f"{prefix}:{name}"

    def report(self, arn: str) -> ExecutionReport:
        """An execution as ``totes run`` reports it, as far as it has got.

        Examples
        --------
        >>> reader.report(reader.execution_arns()[0]).status  # doctest: +SKIP
        'SUCCEEDED'
        """
        definition = self.definition
        with self._lock:
            followed = self._executions.get(arn)
            if followed is None:
                followed = _FollowedExecution(HistoryFollower(definition))
                self._executions[arn] = followed
        with followed.lock:
            if followed.finished and followed.report is not None:
                return followed.report
            sfn = self.client("stepfunctions")
            description = sfn.describe_execution(executionArn=arn)
            while True:
                page = sfn.get_execution_history(
                    executionArn=arn,
                    maxResults=_HISTORY_PAGE,
                    **({"nextToken": followed.token} if followed.token else {}),
                )
                followed.follower.feed(page["events"])
                followed.token = page.get("nextToken")
                # A short page is all there is for now (a running execution's last page
                # carries a token that continues with its next event).
                if followed.token is None or len(page["events"]) < _HISTORY_PAGE:
                    break
            if description["status"] != _RUNNING and followed.token is not None:
                # Its history still goes on past what was read: shown as running until
                # the next look has read it to the end.
                description = {**description, "status": _RUNNING, "stopDate": None}
            followed.report = ExecutionReport.described(
                description, self.definition, followed.follower.history
            )
            return followed.report

    def executions(self, limit: int | None = None) -> dict[str, Any]:
        """The executions page's rows, newest first: every one, or the newest ``limit``.

        Each execution's history is read for its figures (once, when it has ended): the
        newest first, so that a deployment with months of executions opens quickly.

        Examples
        --------
        >>> reader.executions(limit=50)["total"]  # doctest: +SKIP
        1207
        """
        arns = self.execution_arns()
        shown = arns if limit is None else arns[:limit]
        return {
            "total": len(arns),
            "executions": [execution_summary(self.report(arn)) for arn in shown],
        }

    def execution_detail(self, name: str) -> dict[str, Any]:
        """One execution for its graph page: summary, flowchart, states, events.

        Examples
        --------
        >>> sorted(reader.execution_detail("local-2026...")["states"])  # doctest: +SKIP
        ['CheckProgress', 'IngestTable', 'IngestTables', ...]
        """
        arn = self.arn_of(name)
        report = self.report(arn)
        history = report.history
        with self._executions[arn].lock:
            events = _event_rows(self._executions[arn].follower, report.started)
        at_work = (
            frozenset(entry.name for entry in history.entries if not entry.left)
            if report.status == _RUNNING
            else frozenset()
        )
        states = {}
        for state, info in history.tree.items():
            entries = history.of_state(state)
            durations = [entry.duration_s for entry in entries if entry.duration_s is not None]
            states[state] = {
                "type": info.type,
                "parent": info.parent,
                "outcome": history.outcome(state).value,
                "running": state in at_work,
                "seconds": round(sum(durations), 3) if durations else None,
                "entries": [_entry_json(entry) for entry in entries],
                # A Map's items: what its task did for each table, pass after pass.
                "items": [
                    {
                        "state": item.name,
                        "item": item.item,
                        "outcome": item.outcome.value,
                        "duration_s": item.duration_s,
                        "attempts": item.attempts,
                        "error": item.error,
                    }
                    for item in history.entries
                    if info.type == "Map"
                    and history.tree.get(item.name) is not None
                    and history.tree[item.name].parent == state
                    and item.type == "Task"
                ],
            }
        return {
            "summary": execution_summary(report),
            "cause": report.cause_message,
            "mermaid": mermaid_flowchart(report.definition, history, running=at_work),
            "node_ids": node_ids(history.tree),
            "states": states,
            "events": events,
            "findings": [finding.describe() for finding in report.findings()],
        }

    def last_reports(self, count: int) -> list[ExecutionReport]:
        """The newest ``count`` executions, oldest first (for charts over time)."""
        return [self.report(arn) for arn in self.execution_arns()[:count]][::-1]

    # -- health ---------------------------------------------------------------------------

    def warehouse_dsn(self) -> str | None:
        """The warehouse's DSN, as the local deployment gave it to the load function."""
        functions = [
            function
            for page in self.client("lambda").get_paginator("list_functions").paginate()
            for function in page["Functions"]
            if str(function["FunctionName"]).startswith(f"{self.stack.name}-")
        ]
        for function in functions:
            variables = function.get("Environment", {}).get("Variables", {})
            if EnvironmentVariable.WAREHOUSE_DSN in variables:
                return str(variables[EnvironmentVariable.WAREHOUSE_DSN])
        return None

    def quarantine(self) -> list[QuarantinedRow]:
        """The quarantined rows, as ``totes rejects`` lists them."""
        return list(quarantined_rows(self.client("s3"), self.stack.output("ProcessedBucketName")))

    def alert_emails(self) -> list[dict[str, str | None]] | None:
        """The messages the deployment's alert topic received, newest first.

        None when the service cannot tell: one started by an older release, which
        answers no ``/totes-local/notifications`` (``totes stop``, then ``totes run``).
        """
        if self.stack.endpoint_url is None:
            return None
        topic = self.stack.outputs.get("AlertTopicArn")
        try:
            received = sent_notifications(self.stack.endpoint_url)
        except urllib.error.HTTPError as exc:
            if exc.code == HTTPStatus.NOT_FOUND:
                return None
            raise
        return [message for message in received if message["topic_arn"] == topic][::-1]

    def health(self) -> dict[str, Any]:
        """Per table: rows, last load, freshness lag, backlog, rejected and waiting rows;
        charts' figures over the last executions; findings; quarantine; alert e-mails.

        Examples
        --------
        >>> reader.health()["tables"][0]["table"]  # doctest: +SKIP
        'dim_date'
        """
        reports = self.last_reports(_HEALTH_EXECUTIONS)
        last = reports[-1] if reports else None
        # What is left is in a succeeded execution's summary: a failed one has none.
        summarised = next((report for report in reversed(reports) if report.succeeded), None)
        remaining = summarised.remaining() if summarised else {}
        quarantine = self.quarantine()
        rejected: dict[str, int] = {}
        for row in quarantine:
            rejected[row.table] = rejected.get(row.table, 0) + 1
        counts, last_loads, newest = self._warehouse_figures()
        now = datetime.now(UTC).replace(tzinfo=None)
        tables = []
        for table in WAREHOUSE_TABLES:
            left = remaining.get(table, {})
            lag = (now - newest[table]).total_seconds() if table in newest else None
            tables.append(
                {
                    "table": table,
                    "rows": counts.get(table),
                    "last_load": _iso(last_loads.get(table)),
                    "freshness_lag_s": lag,
                    "backlog_rows": left.get("remaining", 0),
                    "backlog_files": left.get("files_remaining", 0),
                    "files_waiting": left.get("files_waiting", 0),
                    "rows_rejected": rejected.get(table, 0),
                }
            )
        source_backlog = {
            name: counts_left.get("remaining", 0)
            for name, counts_left in remaining.items()
            if name not in WAREHOUSE_TABLES and counts_left.get("remaining")
        }
        return {
            "tables": tables,
            "source_backlog": source_backlog,
            "last_execution": execution_summary(last) if last else None,
            "backlog_from": summarised.name if summarised else None,
            "findings": [
                {
                    "table": finding.table,
                    "stage": str(finding.stage),
                    "text": finding.describe(),
                    "needs_attention": finding.kind.needs_attention,
                }
                for finding in (last.findings() if last else [])
            ],
            "executions": [
                {
                    "name": report.name,
                    "status": report.status,
                    "stages_s": {
                        stage: round(seconds, 3)
                        for stage, seconds in report.stage_durations().items()
                        if seconds is not None
                    },
                    "rows_ingested": execution_summary(report)["rows_ingested"],
                    "rows_moved": execution_summary(report)["rows_moved"],
                    "rows_rejected": report.rows_rejected,
                }
                for report in reports
            ],
            "quarantine": [row.as_json() for row in quarantine],
            "alert_emails": self.alert_emails(),
        }

    def _warehouse_figures(
        self,
    ) -> tuple[dict[str, int], dict[str, datetime], dict[str, datetime]]:
        """Row counts, the last load of each table, and each fact table's newest version."""
        from totes.load.warehouse_sql import newest_version  # noqa: PLC0415

        dsn = self.warehouse_dsn()
        if dsn is None:
            return {}, {}, {}
        with connect(dsn) as conn:
            counts = row_counts(conn, WAREHOUSE_TABLES)
            last_loads = {
                str(table): loaded
                for table, loaded in conn.execute(
                    "SELECT warehouse_table, max(loaded_at) FROM load_ledger GROUP BY 1"
                )
            }
            newest = {
                table: found
                for table in FACT_TABLES
                if (found := newest_version(conn, table)) is not None
            }
        return counts, last_loads, newest


__all__ = ["DeploymentReader", "Outcome", "execution_summary"]
