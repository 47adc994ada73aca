"""The synthesised state machine, run by the local AWS service, followed as a client.

:class:`LocalWorkflow` is what ``totes run`` does with the cloud assembly:

- it makes sure the local AWS service of its data folder runs
  (:mod:`totes_local.runtime.service`), starting one in the background if needed;
- it deploys the stack into it under names of its own for this source and
  warehouse pair (:mod:`totes_local.runtime.deployment`), keeping what earlier
  runs left (watermarks, buckets, history) unless asked to start fresh;
- it starts executions and follows each one's history page by page with
  ``nextToken``, reading each event once, and builds the progress, the summary
  and the graph from it.

It speaks to the service through the AWS APIs only (boto3, with the service's
endpoint): nothing here reaches into moto.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from totes.errors import TotesError
from totes.failure_notice import decode_failure
from totes.findings import Finding, after_visit
from totes.names import METRICS_NAMESPACE, SERVICE_NAME, EnvironmentVariable, MetricName
from totes.results import STAGE_RESULT, IngestResult, LoadResult, TransformResult
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.deployment import DeployResult, LocalDeployment
from totes_local.runtime.graph import markdown_report
from totes_local.runtime.history import (
    ExecutionHistory,
    HistoryFollower,
    Outcome,
    StateEntry,
    containers_of,
)
from totes_local.runtime.platform import LOCAL_REGION, LocalPlatform
from totes_local.runtime.service import (
    LOCAL_CREDENTIALS,
    ServiceStart,
    ensure_service,
    handler_log_path,
)
from totes_local.stacks import record_local_stack

_RUNNING = "RUNNING"
#: States that are no stage of their own: a Parallel holds the stages; the end states last no time.
_NOT_STAGES = frozenset({"Parallel", "Succeed", "Fail"})
#: Following beyond the definition's own TimeoutSeconds, before giving up on the service.
_STUCK_MARGIN_S = 60
_DEFAULT_EXECUTION_TIMEOUT_S = 300
_HISTORY_PAGE = 1000
#: Variables that tell a function where its databases are, instead of a secret's name.
_DSN_VARIABLES = {
    EnvironmentVariable.SOURCE_SECRET_NAME: EnvironmentVariable.SOURCE_DSN,
    EnvironmentVariable.WAREHOUSE_SECRET_NAME: EnvironmentVariable.WAREHOUSE_DSN,
}


class ExecutionStuckError(TotesError):
    """An execution was still running well after its definition's timeout."""


class ProgressKind(StrEnum):
    """What a :class:`Progress` report is about."""

    ENTERED = "entered"
    FINISHED = "finished"


@dataclass(frozen=True)
class Progress:
    """A state was entered or finished, as seen while the execution runs."""

    kind: ProgressKind
    entry: StateEntry
    #: The Map this state runs in as an item, if any.
    map_state: str | None
    #: For a Map: how many items its ``ItemsPath`` selects.
    items: int | None = None


@dataclass(frozen=True)
class Notification:
    """A message the state machine published to an SNS topic."""

    topic_arn: str
    subject: str | None
    message: str


@dataclass
class ExecutionReport:
    """One execution: its status and what each state did, read from its history."""

    name: str
    arn: str
    status: str
    started: datetime
    stopped: datetime | None
    error: str | None
    cause: str | None
    output: Any
    definition: dict[str, Any]
    history: ExecutionHistory
    #: ``continued`` earlier local state of this source and warehouse, or started ``fresh``.
    local_state: str = "fresh"
    #: Now minus the newest ``last_updated`` in the warehouse, as the load stage measured
    #: it (its metric in CloudWatch); ``None`` when no fact table was loaded.
    freshness_lag_s: float | None = None

    @classmethod
    def described(
        cls,
        description: Mapping[str, Any],
        definition: dict[str, Any],
        history: ExecutionHistory,
        **more: Any,
    ) -> ExecutionReport:
        """The report of an execution as Step Functions' ``DescribeExecution`` says it."""
        output = description.get("output")
        return cls(
            name=str(description["name"]),
            arn=str(description["executionArn"]),
            status=str(description["status"]),
            started=description["startDate"],
            stopped=description.get("stopDate"),
            error=description.get("error"),
            cause=description.get("cause"),
            output=json.loads(output) if output else None,
            definition=definition,
            history=history,
            **more,
        )

    @property
    def succeeded(self) -> bool:
        """Whether the execution ended in SUCCEEDED."""
        return self.status == "SUCCEEDED"

    @property
    def duration_s(self) -> float:
        """Seconds from start to stop (to now while running)."""
        return ((self.stopped or datetime.now(UTC)) - self.started).total_seconds()

    @property
    def run_id(self) -> str | None:
        """The pipeline's run id, as the state machine passed it to the handlers."""
        for entry in self.history.entries:
            for data in (entry.input, entry.output):
                if isinstance(data, dict) and isinstance(data.get("run_id"), str):
                    return str(data["run_id"])
        return None

    @property
    def failed_entry(self) -> StateEntry | None:
        """The state entry whose failure stopped the run (a Map item's Task, usually)."""
        return self.history.failed_task() if not self.succeeded else None

    @property
    def cause_message(self) -> str | None:
        """The cause for people: the failed task's error message, without the stack trace."""
        if self.cause is None or self.error is None:
            return self.cause
        return decode_failure(self.error, self.cause).message

    def stage_durations(self) -> dict[str, float | None]:
        """Seconds per stage: each state that is not an item of a Map, in the order they began.

        A stage run once per pass is summed over the passes. Parallels (which hold
        the stages) and the end states are left out.

        Examples
        --------
        >>> report.stage_durations()["IngestTables"]  # doctest: +SKIP
        1.64
        """
        durations: dict[str, float | None] = {}
        for entry in self.history.entries:
            info = self.history.tree.get(entry.name)
            if entry.type in _NOT_STAGES or info is None or _map_of(self.history, entry.name):
                continue
            earlier = durations.get(entry.name, 0.0)
            durations[entry.name] = (
                None if earlier is None or entry.duration_s is None else earlier + entry.duration_s
            )
        return durations

    def tables(self) -> dict[str, dict[str, int]]:
        """Rows per table and stage over every pass, from the handlers' results in the history.

        Source tables get ``ingested``; warehouse tables ``transformed``, ``loaded``,
        ``skipped`` (rows already in the warehouse), ``rejected`` (by transform or
        load) and ``replayed`` (quarantined rows that went in) as far as the run got.
        Read from the history, so a failed execution reports what it did before it
        failed.

        Examples
        --------
        >>> report.tables()["fact_sales_order"]  # doctest: +SKIP
        {'transformed': 11175, 'rejected': 0, 'loaded': 11175, 'skipped': 0, 'replayed': 0}
        """
        tables: dict[str, dict[str, int]] = {}
        for result in self._item_results():
            counts = tables.setdefault(result.table, {})
            for column, rows in result.counts().items():
                counts[column] = counts.get(column, 0) + rows
        return tables

    def _item_results(self) -> Iterator[IngestResult | TransformResult | LoadResult]:
        """Each result a stage handler returned to a Map item, in the order they ended."""
        for entry in self.history.entries:
            result = entry.output
            if entry.outcome is not Outcome.SUCCEEDED or not isinstance(result, dict):
                continue
            if entry.item is None or _map_of(self.history, entry.name) is None:
                continue
            if "stage" in result:
                yield STAGE_RESULT.validate_python(result)

    def findings(self) -> list[Finding]:
        """What the stages found (rejected rows by cause, schema drift, ...), as the run ended.

        Read from the handlers' results in the history, visit by visit, so a failed
        execution reports what it found before it failed.

        Examples
        --------
        >>> [finding.describe() for finding in report.findings()]  # doctest: +SKIP
        ["2 rows rejected: agreed_delivery_date is not a YYYY-MM-DD date (e.g. 'soon')"]
        """
        findings: list[Finding] = []
        for result in self._item_results():
            findings = after_visit(findings, *result.visited, result.findings)
        return findings

    @property
    def rows_rejected(self) -> int:
        """Rows rejected by any stage over every pass."""
        return sum(counts.get("rejected", 0) for counts in self.tables().values())

    @property
    def summary(self) -> dict[str, Any]:
        """The execution's output (``Summarise``), or ``{}`` when it did not get there."""
        return self.output if self.succeeded and isinstance(self.output, dict) else {}

    @property
    def caught_up(self) -> bool:
        """Whether the execution ended with no work left in any stage."""
        return self.summary.get("caught_up") is True

    @property
    def passes(self) -> int:
        """Passes (ingest, transform, load) the execution ran, the last one included."""
        return sum(1 for entry in self.history.entries if entry.name == "IngestTables")

    def remaining(self) -> dict[str, dict[str, int]]:
        """What each table has left when the execution ended (only tables with something).

        ``remaining`` is source rows not ingested (a source table) or raw rows not
        transformed (a warehouse table); ``files_remaining`` gold files not loaded;
        ``files_waiting`` fact files held back for a dimension row.

        Examples
        --------
        >>> report.remaining()  # doctest: +SKIP
        {'sales_order': {'remaining': 617500, 'files_remaining': 0, 'files_waiting': 0}}
        """
        found = self.summary.get("remaining")
        return (
            {
                name: {key: int(value) for key, value in counts.items()}
                for name, counts in found.items()
            }
            if isinstance(found, dict)
            else {}
        )

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready object (what ``totes run --json`` prints).

        Examples
        --------
        >>> sorted(report.to_json())  # doctest: +SKIP
        ['cause', 'duration_s', 'error', 'execution', 'failed_item', 'failed_state', ...]
        """
        failed = self.failed_entry
        return {
            "execution": self.name,
            "execution_arn": self.arn,
            "run_id": self.run_id,
            "status": self.status,
            "local_state": self.local_state,
            "started": self.started.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "cause": self.cause,
            "failed_state": failed.name if failed else None,
            "failed_item": failed.item if failed else None,
            "tables": self.tables(),
            "rows_rejected": self.rows_rejected,
            "warnings": [finding.model_dump(mode="json") for finding in self.findings()],
            "passes": self.passes,
            "retries": [
                {"state": state, "error": error, "attempts": attempts}
                for (state, error), attempts in self.history.retries().items()
            ],
            "caught_up": self.caught_up,
            "remaining": self.remaining(),
            "stages_s": {
                name: round(seconds, 3) if seconds is not None else None
                for name, seconds in self.stage_durations().items()
            },
            "freshness_lag_s": (
                round(self.freshness_lag_s, 3) if self.freshness_lag_s is not None else None
            ),
            "states": {name: outcome.value for name, outcome in self.history.outcomes().items()},
        }

    def markdown(self) -> str:
        """The state machine as a Mermaid flowchart coloured by this execution, in Markdown.

        Examples
        --------
        >>> Path("graph.md").write_text(report.markdown())  # doctest: +SKIP
        """
        return markdown_report(
            self.definition,
            self.history,
            title=self.name,
            status=self.status,
            started=self.started,
            error=self.error,
            cause=self.cause_message,
        )


def _map_of(history: ExecutionHistory, name: str) -> str | None:
    parent = history.tree[name].parent if name in history.tree else None
    while parent is not None:
        if history.tree[parent].type == "Map":
            return parent
        parent = history.tree[parent].parent
    return None


def _map_items(history: ExecutionHistory, entry: StateEntry) -> int | None:
    """How many items a Map entry iterates: its ``ItemsPath`` (a plain ``$.a.b`` path)."""
    if entry.type != "Map" or entry.name not in history.tree:
        return None
    selected: Any = entry.input
    path = str(history.tree[entry.name].definition.get("ItemsPath", "$"))
    for key in (part for part in path.removeprefix("$").split(".") if part):
        selected = selected.get(key) if isinstance(selected, dict) else None
    return len(selected) if isinstance(selected, list) else None


def new_execution_name(now: datetime | None = None) -> str:
    """A unique execution name that sorts by start time (it becomes the run id).

    Examples
    --------
    >>> new_execution_name(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))[:22]
    'local-20250102T030405Z'
    """
    moment = now or datetime.now(UTC)
    return f"local-{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def pair_id(source_dsn: str | None, warehouse_dsn: str | None) -> str:
    """The short id of a source and warehouse pair: its local state's own name.

    Examples
    --------
    >>> pair_id("dbname=a", "dbname=b") == pair_id("dbname=a", "dbname=b")
    True
    >>> pair_id("dbname=a", "dbname=b") == pair_id("dbname=a", "dbname=c")
    False
    """
    digest = hashlib.sha256(f"{source_dsn}\n{warehouse_dsn}".encode()).hexdigest()
    return digest[:8]


class LocalWorkflow:
    """The stack's state machine in the local AWS service, for one source and warehouse.

    Parameters
    ----------
    assembly
        The synthesised cloud assembly (see :func:`totes_local.runtime.assembly.synthesise`).
    source_dsn, warehouse_dsn
        Given to the functions as ``TOTES_SOURCE_DSN`` / ``TOTES_WAREHOUSE_DSN``
        instead of the Secrets Manager secrets they read in AWS.
    data_dir
        The data folder of the local service (``.totes``); handler logs go to
        ``logs/pipeline.jsonl`` inside it.
    extra_environment
        More environment variables for every function (e.g. ``INGEST_MAX_ROWS``).
    fresh
        Discard this pair's earlier local state (buckets, watermarks, history) first.
    poll_interval_s
        Seconds between two looks at a running execution that had nothing new.

    Examples
    --------
    >>> with LocalWorkflow(assembly, source_dsn=src, warehouse_dsn=wh,  # doctest: +SKIP
    ...                    data_dir=Path(".totes")) as workflow:
    ...     report = workflow.execute()
    >>> report.status  # doctest: +SKIP
    'SUCCEEDED'
    """

    def __init__(
        self,
        assembly: CloudAssembly,
        *,
        source_dsn: str | None,
        warehouse_dsn: str | None,
        data_dir: Path,
        extra_environment: Mapping[str, str] | None = None,
        fresh: bool = False,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.assembly = assembly
        self.source_dsn = source_dsn
        self.warehouse_dsn = warehouse_dsn
        self.data_dir = data_dir
        self.extra_environment = dict(extra_environment or {})
        self.fresh = fresh
        self.poll_interval_s = poll_interval_s
        self.platform = LocalPlatform.from_assembly(
            assembly,
            region=LOCAL_REGION,
            instance_name=f"{assembly.stack_name}-{pair_id(source_dsn, warehouse_dsn)}",
        )
        self.state_machine_arn = self.platform.state_machine.arn
        self.definition = self.platform.state_machine.definition_json
        self.service: ServiceStart | None = None
        self.deployed: DeployResult | None = None
        self._deployment: LocalDeployment | None = None
        self._clients: dict[str, Any] = {}

    @property
    def log_path(self) -> Path:
        """The JSON-lines file of the handlers' logs and metrics."""
        return handler_log_path(self.data_dir)

    @property
    def processed_bucket(self) -> str | None:
        """The processed bucket of this deployment (gold files, rejects, the lake)."""
        for function in self.platform.functions:
            if EnvironmentVariable.PROCESSED_BUCKET in function.environment:
                return function.environment[EnvironmentVariable.PROCESSED_BUCKET]
        return None

    @property
    def local_state(self) -> str:
        """``continued`` when earlier local state of this pair was found, else ``fresh``."""
        return "continued" if self.deployed is not None and self.deployed.continued else "fresh"

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalWorkflow:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Make sure the service runs and the stack is deployed in it, as it is now.

        Raises
        ------
        LocalServiceError
            The local AWS service did not start.

        Examples
        --------
        >>> workflow.start()  # doctest: +SKIP
        """
        self.service = ensure_service(self.data_dir)
        self._clients.clear()
        self._deployment = LocalDeployment(self.platform, self.client, self._function_environment())
        if self.fresh:
            self._deployment.destroy()
        self.deployed = self._deployment.deploy()
        # Like a stack's outputs: where `totes rejects` and `totes lake` find its resources.
        record_local_stack(
            self.data_dir, self.platform.stack_name, self.platform.outputs, self.platform.region
        )

    def stop(self) -> None:
        """Forget the clients; the service and its state keep running (``totes stop`` ends them).

        Examples
        --------
        >>> workflow.stop()  # doctest: +SKIP
        """
        self._clients.clear()

    def client(self, service: str) -> Any:
        """A boto3 client of the local service."""
        if self.service is None:
            raise RuntimeError("the local workflow is not started")
        if service not in self._clients:
            import boto3  # noqa: PLC0415

            self._clients[service] = boto3.client(
                service,
                region_name=self.platform.region,
                endpoint_url=self.service.service.endpoint,
                aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
        return self._clients[service]

    def _function_environment(self) -> dict[str, dict[str, str]]:
        environment: dict[str, dict[str, str]] = {}
        dsns = {
            EnvironmentVariable.SOURCE_DSN: self.source_dsn,
            EnvironmentVariable.WAREHOUSE_DSN: self.warehouse_dsn,
        }
        for function in self.platform.functions:
            variables = dict(self.extra_environment)
            # A function that reads a database secret in AWS gets the DSN itself here.
            for secret_variable, dsn_variable in _DSN_VARIABLES.items():
                dsn = dsns[dsn_variable]
                if secret_variable in function.environment and dsn:
                    variables[dsn_variable] = dsn
            environment[function.logical_id] = variables
        return environment

    # -- using it -------------------------------------------------------------------------

    def function_name(self, logical_id_prefix: str) -> str:
        """The local name of the function whose logical id starts with the prefix.

        Examples
        --------
        >>> workflow.function_name("FunctionsIngest")  # doctest: +SKIP
        'TotesDataPlatform-1a2b3c4d-FunctionsIngest66EFBB2C'
        """
        for function in self.platform.functions:
            if function.logical_id.startswith(logical_id_prefix):
                return function.name
        raise KeyError(logical_id_prefix)

    def execute(
        self,
        name: str | None = None,
        *,
        execution_input: Mapping[str, Any] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionReport:
        """Start one execution, follow its history to the end, and report what it did.

        Parameters
        ----------
        name
            Execution name (the pipeline's run id); a new time-sorted one by default.
        execution_input
            The execution's input (the schedule sends ``{}``).
        on_progress
            Called (in this thread) whenever a state is entered or finishes.

        Raises
        ------
        ExecutionStuckError
            Still running a minute past the definition's ``TimeoutSeconds``.

        Examples
        --------
        >>> report = workflow.execute()  # doctest: +SKIP
        >>> report.tables()["sales_order"]  # doctest: +SKIP
        {'ingested': 11175}
        """
        sfn = self.client("stepfunctions")
        name = name or new_execution_name()
        arn = sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name,
            input=json.dumps(dict(execution_input or {})),
        )["executionArn"]
        limit = float(self.definition.get("TimeoutSeconds", _DEFAULT_EXECUTION_TIMEOUT_S))
        deadline = time.monotonic() + limit + _STUCK_MARGIN_S
        follower = HistoryFollower(self.definition)
        reported: set[tuple[int, ProgressKind]] = set()
        token: str | None = None
        while True:
            page = sfn.get_execution_history(
                executionArn=arn,
                maxResults=_HISTORY_PAGE,
                **({"nextToken": token} if token else {}),
            )
            follower.feed(page["events"])
            token = page.get("nextToken")
            # Without a token the execution has ended and every event has been read.
            if on_progress is not None and (page["events"] or token is None):
                _report_progress(follower.history, reported, on_progress, final=token is None)
            if token is None:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn, error="LocalRuntimeStuck")
                raise ExecutionStuckError(
                    f"execution {name} was still running {limit + _STUCK_MARGIN_S:.0f} s "
                    "after it started"
                )
            if len(page["events"]) < _HISTORY_PAGE:
                time.sleep(self.poll_interval_s)
        description = sfn.describe_execution(executionArn=arn)
        return ExecutionReport.described(
            description,
            self.definition,
            follower.history,
            local_state=self.local_state,
            freshness_lag_s=self._freshness_lag(description),
        )

    def _freshness_lag(self, description: Mapping[str, Any]) -> float | None:
        # The metric the freshness alarm watches, as the handlers emitted it in this execution.
        started: datetime = description["startDate"]
        stopped: datetime = description.get("stopDate") or datetime.now(UTC)
        points = self.client("cloudwatch").get_metric_statistics(
            Namespace=METRICS_NAMESPACE,
            MetricName=MetricName.FRESHNESS_LAG_SECONDS,
            Dimensions=[{"Name": "service", "Value": SERVICE_NAME}],
            StartTime=started,
            EndTime=stopped + timedelta(seconds=1),
            Period=1,
            Statistics=["Minimum"],
        )["Datapoints"]
        return min((float(point["Minimum"]) for point in points), default=None)

    def notifications(self) -> list[Notification]:
        """Messages published to the stack's topics since the last call (oldest first).

        Examples
        --------
        >>> [n.subject for n in workflow.notifications()]  # doctest: +SKIP
        ['totes data platform: a pipeline execution failed']
        """
        queue_url = self._deployment.queue_url if self._deployment else None
        if queue_url is None:
            return []
        sqs = self.client("sqs")
        found: list[Notification] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                found.append(
                    Notification(
                        topic_arn=str(envelope.get("TopicArn")),
                        subject=envelope.get("Subject"),
                        message=str(envelope.get("Message")),
                    )
                )
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _report_progress(
    history: ExecutionHistory,
    reported: set[tuple[int, ProgressKind]],
    on_progress: Callable[[Progress], None],
    *,
    final: bool,
) -> None:
    news: list[tuple[datetime, int, Progress]] = []
    closed_maps = {entry.name for entry in history.entries if entry.type == "Map" and entry.left}
    for entry in history.entries:
        map_state = _map_of(history, entry.name)
        items = _map_items(history, entry)
        if (entry.event_id, ProgressKind.ENTERED) not in reported:
            reported.add((entry.event_id, ProgressKind.ENTERED))
            news.append((entry.started, 0, Progress(ProgressKind.ENTERED, entry, map_state, items)))
        # A failed attempt may yet be retried: a state has finished once it has left,
        # once the Map around it has closed, or once the execution has ended.
        finished = (
            entry.left or final or (entry.outcome is Outcome.FAILED and map_state in closed_maps)
        )
        if finished and (entry.event_id, ProgressKind.FINISHED) not in reported:
            reported.add((entry.event_id, ProgressKind.FINISHED))
            progress = Progress(ProgressKind.FINISHED, entry, map_state, items)
            # At the same instant, what lies inside a container finishes before it.
            depth = (
                len(containers_of(history.tree, entry.name)) if entry.name in history.tree else 0
            )
            news.append((entry.ended or entry.started, -depth, progress))
    for _, _, progress in sorted(news, key=lambda news_item: news_item[:2]):
        on_progress(progress)
