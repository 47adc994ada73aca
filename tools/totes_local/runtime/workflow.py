"""The synthesised state machine, executed on this machine by moto with the real handlers.

:class:`LocalWorkflow` is the deployed stack in miniature, inside one process:

- moto, in-process, stands in for S3, DynamoDB, Secrets Manager, SNS, SQS,
  CloudWatch, Lambda and Step Functions, with moto's Step Functions interpreter
  enabled (``execute_state_machine``);
- the buckets, the watermark table and the alert topic of the template are
  created under local names, and the state machine is registered with the
  template's own definition, its tokens filled with those names
  (:class:`~totes_local.runtime.platform.LocalPlatform`);
- every Lambda invoke the interpreter makes runs the function's real handler
  from the cloud assembly, in the function's environment variables, with the
  database DSNs given instead of Secrets Manager
  (:class:`~totes_local.runtime.lambda_runtime.LocalLambdaService`);
- an SQS queue subscribed to each topic keeps the notifications the state
  machine publishes, as the alarm e-mail would receive them.

moto does not implement ``StartSyncExecution``: :meth:`LocalWorkflow.execute`
starts an execution, polls ``DescribeExecution`` and reads
``GetExecutionHistory`` for what each state did.

Two seams of moto 5.2 are patched while a :class:`LocalWorkflow` runs, and only
then: ``LambdaSimpleBackend.invoke`` (the Lambda service, see
:mod:`totes_local.runtime.lambda_runtime`), and the execution's start time in the
context object, which moto hands over as a ``datetime`` where AWS gives ISO 8601
text (``$$.Execution.StartTime``, part of every run id).

Local AWS state lives as long as the :class:`LocalWorkflow`: a new one starts
with empty buckets and no watermarks, which costs a re-ingest and nothing more
(the warehouse's load ledger and natural keys keep it exact).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from totes.errors import TotesError
from totes.names import MetricName
from totes_local.runtime.assembly import CloudAssembly
from totes_local.runtime.graph import markdown_report
from totes_local.runtime.history import (
    ExecutionHistory,
    Outcome,
    StateEntry,
    containers_of,
    read_history,
)
from totes_local.runtime.lambda_runtime import (
    Invocation,
    LocalFunction,
    LocalLambdaService,
    MetricDatum,
)
from totes_local.runtime.platform import LOCAL_ACCOUNT, LOCAL_REGION, LocalPlatform

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

#: moto with its Step Functions interpreter on and Lambda answered in-process (no Docker).
LOCAL_MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
#: Environment variables that could send a boto3 call past moto, or fail a session.
_ISOLATING_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")
_RUNNING = "RUNNING"
#: States that are no stage of their own: a Parallel holds the stages; the end states last no time.
_NOT_STAGES = frozenset({"Parallel", "Succeed", "Fail"})
#: Polling beyond the definition's own TimeoutSeconds, before giving up on the interpreter.
_STUCK_MARGIN_S = 60
_DEFAULT_EXECUTION_TIMEOUT_S = 300


class LocalRuntimeUnavailableError(TotesError):
    """moto, which stands in for AWS, is not installed."""


class ExecutionStuckError(TotesError):
    """An execution was still running well after its definition's timeout."""


class StateNotFoundError(TotesError):
    """No Task state of the definition has that name, or it invokes no function of the stack."""


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
    """One execution: its status, what each state did, the handlers' invocations and metrics."""

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
    invocations: list[Invocation] = field(default_factory=list)

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
        """The cause for people: a Lambda error's ``errorMessage``, else the cause itself."""
        if self.cause is None:
            return None
        try:
            parsed = json.loads(self.cause)
        except json.JSONDecodeError:
            return self.cause
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])
        return self.cause

    @property
    def metrics(self) -> list[MetricDatum]:
        """Every metric value the handlers emitted during this execution."""
        return [datum for invocation in self.invocations for datum in invocation.metrics]

    @property
    def freshness_lag_s(self) -> float | None:
        """Now minus the newest ``last_updated`` in the warehouse, as the load stage measured."""
        lags = [d.value for d in self.metrics if d.name == MetricName.FRESHNESS_LAG_SECONDS]
        return min(lags) if lags else None

    def stage_durations(self) -> dict[str, float | None]:
        """Seconds per stage: each state that is not an item of a Map, in the order they began.

        Parallels (which hold the stages) and the end states are left out.

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
            durations[entry.name] = entry.duration_s
        return durations

    def tables(self) -> dict[str, dict[str, int]]:
        """Rows per table and stage, from the handlers' results in the history.

        Source tables get ``ingested``; warehouse tables ``transformed``, ``loaded``
        and ``skipped`` (rows already in the warehouse) as far as the run got.

        Examples
        --------
        >>> report.tables()["fact_sales_order"]  # doctest: +SKIP
        {'transformed': 11175, 'loaded': 11175, 'skipped': 0}
        """
        tables: dict[str, dict[str, int]] = {}
        for entry in self.history.entries:
            result = entry.output
            if entry.outcome is not Outcome.SUCCEEDED or not isinstance(result, dict):
                continue
            if entry.item is None or _map_of(self.history, entry.name) is None:
                continue
            counts = tables.setdefault(entry.item, {})
            if "rows_loaded" in result:
                counts["loaded"] = int(result["rows_loaded"])
                counts["skipped"] = int(result.get("rows_skipped", 0))
            elif "table" in result:
                counts["ingested"] = int(result.get("rows", 0))
            elif "target" in result:
                counts["transformed"] = int(result.get("rows", 0))
        return tables

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
            "started": self.started.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
            "cause": self.cause,
            "failed_state": failed.name if failed else None,
            "failed_item": failed.item if failed else None,
            "tables": self.tables(),
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


def aws_timestamp(moment: datetime) -> str:
    """A time as Step Functions writes it in the context object: UTC, milliseconds, ``Z``.

    Examples
    --------
    >>> aws_timestamp(datetime(2019, 3, 26, 20, 14, 13, 192_000, tzinfo=UTC))
    '2019-03-26T20:14:13.192Z'
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _context_start_time_as_text() -> Iterator[None]:
    """Give the interpreter's ``$$.Execution.StartTime`` the ISO 8601 text AWS gives.

    moto 5.2 puts the start ``datetime`` object into the context object, so a state
    that reads it (``States.Format('{}-{}', $$.Execution.StartTime, ...)``) fails
    with ``States.Runtime`` ("datetime is not JSON serializable").
    """
    from moto.stepfunctions.parser.asl.eval.evaluation_details import (  # noqa: PLC0415
        ExecutionDetails,
    )
    from moto.stepfunctions.parser.backend.execution import Execution  # noqa: PLC0415

    original = Execution.get_start_execution_details

    def start_execution_details(execution: Any) -> Any:
        details = original(execution)
        if isinstance(details.start_time, datetime):
            return ExecutionDetails(
                arn=details.arn,
                name=details.name,
                role_arn=details.role_arn,
                inpt=details.inpt,
                start_time=aws_timestamp(details.start_time),
            )
        return details

    with mock.patch.object(Execution, "get_start_execution_details", start_execution_details):
        yield


@contextmanager
def _isolated_environment() -> Iterator[None]:
    saved = {
        name: os.environ.pop(name)
        for name in list(os.environ)
        if name in _ISOLATING_UNSET or name.startswith("AWS_ENDPOINT_URL_")
    }
    try:
        yield
    finally:
        os.environ.update(saved)


class LocalWorkflow:
    """The stack's state machine and functions, running against moto in this process.

    Parameters
    ----------
    assembly
        The synthesised cloud assembly (see :func:`totes_local.runtime.assembly.synthesise`).
    source_dsn, warehouse_dsn
        Given to the functions as ``TOTES_SOURCE_DSN`` / ``TOTES_WAREHOUSE_DSN``
        instead of the Secrets Manager secrets they would read in AWS.
    log_path
        JSON-lines file for the handlers' logs and metrics (appended to).
    extra_environment
        More environment variables for every function (e.g. ``INGEST_MAX_ROWS``).
    poll_interval_s
        Seconds between two looks at a running execution.

    Examples
    --------
    >>> assembly = synthesise(find_project_root(), Path(".totes/cdk.out"))  # doctest: +SKIP
    >>> with LocalWorkflow(assembly, source_dsn=src, warehouse_dsn=wh,  # doctest: +SKIP
    ...                    log_path=Path(".totes/logs/pipeline.jsonl")) as workflow:
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
        log_path: Path,
        region: str = LOCAL_REGION,
        account: str = LOCAL_ACCOUNT,
        extra_environment: Mapping[str, str] | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        self.platform = LocalPlatform.from_assembly(assembly, account=account, region=region)
        self.source_dsn = source_dsn
        self.warehouse_dsn = warehouse_dsn
        self.log_path = log_path
        self.extra_environment = dict(extra_environment or {})
        self.poll_interval_s = poll_interval_s
        self.state_machine_arn = self.platform.state_machine.arn
        self.definition = self.platform.state_machine.definition_json
        self.lambda_service: LocalLambdaService | None = None
        self._stack = ExitStack()
        self._clients: dict[str, Any] = {}
        self._queue_url: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalWorkflow:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start moto, create the stack's resources, register the state machine.

        Raises
        ------
        LocalRuntimeUnavailableError
            moto is not installed.

        Examples
        --------
        >>> workflow = LocalWorkflow(assembly, source_dsn=src, warehouse_dsn=wh,  # doctest: +SKIP
        ...                          log_path=Path("pipeline.jsonl"))
        >>> workflow.start()  # doctest: +SKIP
        """
        try:
            from moto import mock_aws  # noqa: PLC0415 (only the local runtime needs moto)
        except ImportError as exc:
            raise LocalRuntimeUnavailableError(
                "running the workflow locally needs moto: pip install 'totes[local]'"
            ) from exc
        self._stack = ExitStack()
        try:
            self._stack.enter_context(_isolated_environment())
            self._stack.enter_context(mock_aws(config=LOCAL_MOTO_CONFIG))
            self._stack.enter_context(_context_start_time_as_text())
            self._create_resources()
            self.lambda_service = LocalLambdaService(
                self.platform.functions,
                log_path=self.log_path,
                region=self.platform.region,
                environment_overrides=self._environment_overrides(),
                cloudwatch=self._client("cloudwatch"),
            )
            self._stack.enter_context(self.lambda_service)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the functions and moto; every local AWS resource is gone afterwards.

        Examples
        --------
        >>> workflow.stop()  # doctest: +SKIP
        """
        stack, self._stack = self._stack, ExitStack()
        self.lambda_service = None
        self._clients.clear()
        stack.close()

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3  # noqa: PLC0415

            self._clients[service] = boto3.client(service, region_name=self.platform.region)
        return self._clients[service]

    def _create_resources(self) -> None:
        s3 = self._client("s3")
        for bucket in self.platform.buckets:
            options = (
                {}
                if self.platform.region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": self.platform.region}}
            )
            s3.create_bucket(Bucket=bucket.name, **options)
            if bucket.versioned:
                s3.put_bucket_versioning(
                    Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"}
                )
        dynamodb = self._client("dynamodb")
        for table in self.platform.tables:
            dynamodb.create_table(
                TableName=table.name,
                KeySchema=table.key_schema,
                AttributeDefinitions=table.attribute_definitions,
                BillingMode="PAY_PER_REQUEST",
            )
        sns, sqs = self._client("sns"), self._client("sqs")
        if self.platform.topics:
            queue = sqs.create_queue(QueueName=f"{self.platform.stack_name}-local-notifications")
            self._queue_url = queue["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
        for topic in self.platform.topics:
            created = sns.create_topic(Name=topic.name)["TopicArn"]
            if created != topic.arn:
                raise RuntimeError(f"moto named topic {topic.name} {created}, not {topic.arn}")
            sns.subscribe(TopicArn=created, Protocol="sqs", Endpoint=queue_arn)
        machine = self.platform.state_machine
        created_machine = self._client("stepfunctions").create_state_machine(
            name=machine.name,
            definition=machine.definition,
            roleArn=machine.role_arn,
            type=machine.type,
        )
        self.state_machine_arn = created_machine["stateMachineArn"]

    def _environment_overrides(self) -> dict[str, dict[str, str]]:
        overrides: dict[str, dict[str, str]] = {}
        for function in self.platform.functions:
            variables = dict(self.extra_environment)
            # A function that reads a database secret in AWS gets the DSN itself here.
            if "SOURCE_SECRET_NAME" in function.environment and self.source_dsn:
                variables["TOTES_SOURCE_DSN"] = self.source_dsn
            if "WAREHOUSE_SECRET_NAME" in function.environment and self.warehouse_dsn:
                variables["TOTES_WAREHOUSE_DSN"] = self.warehouse_dsn
            overrides[function.name] = variables
        return overrides

    # -- using it -------------------------------------------------------------------------

    def function_for_state(self, state_name: str) -> LocalFunction:
        """The function a Task state invokes (to inspect, or patch for a test).

        Raises
        ------
        StateNotFoundError
            No Task state has that name, or its resource is not a function of the stack.

        Examples
        --------
        >>> workflow.function_for_state("IngestTable").module.ingest_table  # doctest: +SKIP
        <function ingest_table at ...>
        """
        if self.lambda_service is None:
            raise RuntimeError("the local workflow is not running")
        state = read_history(self.definition, []).tree.get(state_name)
        if state is None or state.type != "Task":
            raise StateNotFoundError(f"the state machine has no Task state {state_name!r}")
        resource = state.definition.get("Resource", "")
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            resource = state.definition.get("Parameters", {}).get("FunctionName", "")
        try:
            return self.lambda_service.function(str(resource))
        except KeyError as exc:
            raise StateNotFoundError(
                f"state {state_name!r} invokes {resource}, which is not a function of the stack"
            ) from exc

    def execute(
        self,
        name: str | None = None,
        *,
        execution_input: Mapping[str, Any] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionReport:
        """Start one execution, follow it to its end, and report what it did.

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
        if self.lambda_service is None:
            raise RuntimeError("the local workflow is not running")
        sfn = self._client("stepfunctions")
        name = name or new_execution_name()
        first_invocation = len(self.lambda_service.invocations)
        arn = sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name,
            input=json.dumps(dict(execution_input or {})),
        )["executionArn"]
        limit = float(self.definition.get("TimeoutSeconds", _DEFAULT_EXECUTION_TIMEOUT_S))
        deadline = time.monotonic() + limit + _STUCK_MARGIN_S
        reported: set[tuple[int, ProgressKind]] = set()
        while True:
            description = sfn.describe_execution(executionArn=arn)
            history = read_history(self.definition, self._events(arn))
            running = description["status"] == _RUNNING
            if on_progress is not None:
                self._report_progress(history, reported, on_progress, final=not running)
            if not running:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn, error="LocalRuntimeStuck")
                raise ExecutionStuckError(
                    f"execution {name} was still running {limit + _STUCK_MARGIN_S:.0f} s "
                    "after it started"
                )
            time.sleep(self.poll_interval_s)
        output = description.get("output")
        return ExecutionReport(
            name=name,
            arn=arn,
            status=str(description["status"]),
            started=description["startDate"],
            stopped=description.get("stopDate"),
            error=description.get("error"),
            cause=description.get("cause"),
            output=json.loads(output) if output else None,
            definition=self.definition,
            history=history,
            invocations=list(self.lambda_service.invocations[first_invocation:]),
        )

    def _events(self, arn: str) -> list[dict[str, Any]]:
        paginator = self._client("stepfunctions").get_paginator("get_execution_history")
        return [event for page in paginator.paginate(executionArn=arn) for event in page["events"]]

    def _report_progress(
        self,
        history: ExecutionHistory,
        reported: set[tuple[int, ProgressKind]],
        on_progress: Callable[[Progress], None],
        *,
        final: bool,
    ) -> None:
        news: list[tuple[datetime, int, Progress]] = []
        closed_maps = {
            entry.name for entry in history.entries if entry.type == "Map" and entry.left
        }
        for entry in history.entries:
            map_state = _map_of(history, entry.name)
            items = _map_items(history, entry)
            if (entry.event_id, ProgressKind.ENTERED) not in reported:
                reported.add((entry.event_id, ProgressKind.ENTERED))
                progress = Progress(ProgressKind.ENTERED, entry, map_state, items)
                news.append((entry.started, 0, progress))
            # A failed attempt may yet be retried: a state has finished once it has left,
            # once the Map around it has closed, or once the execution has ended.
            finished = (
                entry.left
                or final
                or (entry.outcome is Outcome.FAILED and map_state in closed_maps)
            )
            if finished and (entry.event_id, ProgressKind.FINISHED) not in reported:
                reported.add((entry.event_id, ProgressKind.FINISHED))
                progress = Progress(ProgressKind.FINISHED, entry, map_state, items)
                # At the same instant, what lies inside a container finishes before it.
                depth = (
                    len(containers_of(history.tree, entry.name))
                    if entry.name in history.tree
                    else 0
                )
                news.append((entry.ended or entry.started, -depth, progress))
        for _, _, progress in sorted(news, key=lambda news_item: news_item[:2]):
            on_progress(progress)

    def notifications(self) -> list[Notification]:
        """Messages published to the stack's topics since the last call (oldest first).

        Examples
        --------
        >>> [n.subject for n in workflow.notifications()]  # doctest: +SKIP
        ['totes data platform: a pipeline execution failed']
        """
        if self._queue_url is None:
            return []
        sqs = self._client("sqs")
        found: list[Notification] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
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
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
