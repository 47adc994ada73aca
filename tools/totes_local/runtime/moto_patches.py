"""Every behaviour of moto that the local AWS service relies on beyond moto's public API.

The local service is moto in server mode plus these changes and uses of moto's
internals, all made here and nowhere else, each checked against the moto release
range it was written for (:data:`SUPPORTED_MOTO`), so that a moto upgrade fails
loudly at start-up instead of quietly behaving differently:

``lambda-invoke``
    ``LambdaSimpleBackend.invoke`` (moto's Lambda without Docker) echoes the
    payload back. The service replaces it with a dispatcher that runs the
    function in a worker process (:mod:`totes_local.runtime.lambda_workers`).
``execution-start-time``
    moto puts the execution's start ``datetime`` into the context object, where
    AWS gives ISO 8601 text; ``$$.Execution.StartTime`` is part of every run id.
``history-pages``
    moto's ``GetExecutionHistory`` ignores ``maxResults`` and ``nextToken`` and
    returns every event each time. The service answers in pages, as Step
    Functions does, so that a client reads each event once. While the execution
    runs, the last page also carries a token: it continues from the next event
    that will be written (AWS offers no history for Express executions at all;
    see ADR 7). moto also deep-copies every event on each call, which made a
    client that follows a long execution cost the service time in the square of
    its events; the page is cut from the recorded events first and only its
    events are written, straight to JSON (moto's generic response serializer
    took 5 ms per event). A page that would be empty while the execution runs is
    held until an event arrives or the execution ends, for at most a second
    (:data:`_EMPTY_PAGE_HELD_S`): a client that follows an execution then asks
    once per event instead of twenty times a second, which on two cores took
    as much CPU as a stage's handler.
``host-backends``
    moto's dispatcher finds the backend of every request anew: it lists moto's
    package folder and tries the URL patterns of every service in turn. The
    service remembers the backend of each host name it has seen (the patterns
    are fixed for the life of the process).
``parsed-json-paths``
    moto's interpreter builds a JSONPath parser (a yacc table) for every path it
    evaluates, a few per state, and one more to place each task's result
    (``ResultPath``); the service keeps each path's parsed form, which is
    immutable, and reuses it.
``lambda-invoke-in-process``
    moto's interpreter invokes a task's function through a new boto3 client for
    every invoke (about 5 ms each, 0.1 s for the first), that is over HTTP to the
    service itself: signing, a request, moto's dispatch, a held server thread. The
    service calls its Lambda backend directly, as Step Functions calls Lambda
    inside AWS, and answers as the Invoke API would: the payload and
    ``FunctionError``, an oversized response as ``Function.ResponseSizeTooLarge``,
    a Lambda API error (an unknown function, say) under its own code
    (``Lambda.ResourceNotFoundException``), and a failure of the service itself
    as ``Lambda.ServiceException``, which the state machine retries (any other
    exception is a bug of the service and fails the task). (moto named
    every Lambda API error of a task whose resource is a function ARN plain
    ``Exception``, so such a retry never applied; it names them as its
    ``arn:aws:states:::lambda:invoke`` integration does, as AWS names both.)
``sent-notifications``
    The messages each SNS topic received, read from moto's backend
    (:func:`sent_notifications`); the service answers them at
    ``GET /totes-local/notifications``.
``parsed-definitions``
    moto parses the state machine's definition with its ANTLR grammar at the
    start of every execution (about 45 ms of CPU, 80 ms the first time, holding
    the interpreter's lock), and once more to validate it on CreateStateMachine
    and UpdateStateMachine, throwing that parse away. The service validates by
    parsing once and keeping the parse (a definition that does not parse gets
    moto's own error), and gives every execution a deep copy of it (about 4 ms),
    as isolated as a new parse.
``deleted-folders``
    moto's S3 lists a folder (a common prefix of a ``Delimiter`` listing) when every
    key under it is deleted in a versioned bucket: it skips the keys whose latest
    version is a delete marker, but not the folders they make. S3 lists only what
    has a current version, so a clean-up that lists folders and deletes the old ones
    found each deleted folder again on every run, a request more per run for ever.
    The service drops the folders that hold no current key.
``glue-table-versions``
    moto's Glue ignores ``UpdateTable``'s ``VersionId``: an update made from an older
    version of a table replaces a newer one. Glue refuses it
    (``ConcurrentModificationException``), and Iceberg's commits rely on that: a writer
    that lost the race reads the table again instead of dropping the other's commit.
    The service checks the version, as Glue does.
``emf-metrics``
    CloudWatch Logs turns EMF lines into metrics inside AWS; the service puts
    them straight into its CloudWatch backend (:func:`metric_sink`) rather than
    through an HTTP call to itself on every line, which held each invocation's
    answer back by milliseconds.

Each check raises :class:`UnsupportedMotoError`; ``tests/integration`` holds a
test per patch that shows moto still behaves as the patch assumes.
"""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from totes.errors import TotesError
from totes_local.runtime.emf import MetricDatum
from totes_local.runtime.lambda_workers import FunctionRevision, WorkerPoolClosedError

#: The moto releases these patches were written for and verified with (pyproject pins it).
SUPPORTED_MOTO = ((5, 2), (5, 3))
#: What Step Functions allows per page of GetExecutionHistory, and its default.
_MAX_PAGE = 1000
_DEFAULT_PAGE = 100
#: How long a history page with no event yet is held for one to arrive, and how often it looks.
_EMPTY_PAGE_HELD_S = 1.0
_EVENT_WAIT_S = 0.005
#: Parsed JSONPath expressions kept (a definition holds a few dozen).
_PARSED_JSON_PATHS_KEPT = 1024
#: The largest response of a synchronous invoke, as the Lambda service counts it.
_MAX_RESPONSE_BYTES = 6_291_556
#: Parsed definitions kept (one per deployment: a few source and warehouse pairs).
_PARSED_DEFINITIONS_KEPT = 16

#: ``(function, raw payload, response headers) -> payload``: how an invoke is answered.
InvokeDispatcher = Callable[[FunctionRevision, bytes, dict[str, str]], bytes]


class UnsupportedMotoError(TotesError):
    """The installed moto is outside the range the local service's patches were written for."""


def moto_version() -> tuple[int, int]:
    """The installed moto release as ``(major, minor)``.

    Examples
    --------
    >>> moto_version() >= (5, 0)
    True
    """
    major, minor, *_ = metadata.version("moto").split(".")
    return int(major), int(minor)


def check_moto_version() -> None:
    """Refuse a moto release the patches were not written for.

    Raises
    ------
    UnsupportedMotoError
        moto is older than 5.2 or 5.3 and newer.

    Examples
    --------
    >>> check_moto_version()
    """
    low, high = SUPPORTED_MOTO
    found = moto_version()
    if not low <= found < high:
        raise UnsupportedMotoError(
            f"the local AWS service supports moto {low[0]}.{low[1]}.x only, found "
            f"{metadata.version('moto')}: install the version pyproject.toml pins"
        )


def _require_parameters(function: Callable[..., Any], names: tuple[str, ...], what: str) -> None:
    found = tuple(inspect.signature(function).parameters)
    if found[: len(names)] != names:
        raise UnsupportedMotoError(
            f"moto's {what} takes {found}, the local service expects {names}: moto changed"
        )


def aws_timestamp(moment: datetime) -> str:
    """A time as Step Functions writes it in the context object: UTC, milliseconds, ``Z``.

    Examples
    --------
    >>> aws_timestamp(datetime(2019, 3, 26, 20, 14, 13, 192_000, tzinfo=UTC))
    '2019-03-26T20:14:13.192Z'
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def page_token(offset: int) -> str:
    """The opaque ``nextToken`` of the history page that starts at event ``offset``.

    Examples
    --------
    >>> page_offset(page_token(250))
    250
    """
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    """The event offset a ``nextToken`` stands for (0 without one).

    Raises
    ------
    ValueError
        The token was not made by :func:`page_token`.

    Examples
    --------
    >>> page_offset(None)
    0
    """
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a history page token: {token!r}") from exc
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"not a history page token: {token!r}")
    return offset


def history_page(
    events: list[dict[str, Any]], *, token: str | None, max_results: int, running: bool
) -> dict[str, Any]:
    """One page of an execution's events, as ``GetExecutionHistory`` answers it.

    Examples
    --------
    >>> events = [{"id": n} for n in range(1, 4)]
    >>> first = history_page(events, token=None, max_results=2, running=False)
    >>> [e["id"] for e in first["events"]], "nextToken" in first
    ([1, 2], True)
    >>> rest = history_page(events, token=first["nextToken"], max_results=2, running=False)
    >>> [e["id"] for e in rest["events"]], "nextToken" in rest
    ([3], False)
    >>> "nextToken" in history_page(events, token=first["nextToken"], max_results=2, running=True)
    True
    """
    size = max_results if 0 < max_results <= _MAX_PAGE else _DEFAULT_PAGE
    start = page_offset(token)
    page = events[start : start + size]
    end = start + len(page)
    answer: dict[str, Any] = {"events": page}
    if end < len(events) or running:
        answer["nextToken"] = page_token(end)
    return answer


def install(dispatch: InvokeDispatcher) -> None:
    """Apply the patches to moto in this process (the service's, before it serves).

    Raises
    ------
    UnsupportedMotoError
        moto is outside :data:`SUPPORTED_MOTO`, or a patched method changed shape.

    Examples
    --------
    >>> install(pool.invoke)  # doctest: +SKIP
    """
    check_moto_version()
    _patch_lambda_invoke(dispatch)
    _patch_execution_start_time()
    _patch_history_pages()
    _patch_host_backends()
    _patch_parsed_json_paths()
    _patch_lambda_invoke_in_process()
    _patch_lambda_task_errors()
    _patch_parsed_definitions()
    _patch_deleted_folders()
    _patch_glue_table_versions()


def _patch_lambda_invoke(dispatch: InvokeDispatcher) -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

    _require_parameters(
        LambdaSimpleBackend.invoke,
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
        "LambdaSimpleBackend.invoke",
    )

    def invoke(  # noqa: PLR0917 (the signature of the method it replaces)
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        function = backend.get_function(function_name, qualifier)
        payload = body.encode() if isinstance(body, str) else (body or b"")
        return dispatch(_revision(backend, function), payload, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign, assignment]


def _revision(backend: Any, function: Any) -> FunctionRevision:
    """The configuration and code of moto's function model, with its layers' zips."""
    layers: list[tuple[str, bytes]] = []
    for layer in function.layers:
        version = backend.layers_versions_by_arn(layer["Arn"])
        if version is not None:
            layers.append((str(version.code_sha_256), bytes(version.code_bytes)))
    logging_config = getattr(function, "logging_config", None) or {}
    return FunctionRevision(
        name=str(function.function_name),
        arn=str(function.function_arn),
        handler=str(function.handler),
        timeout_s=float(function.timeout),
        memory_mb=int(function.memory_size),
        environment=dict(function.environment_vars or {}),
        code=bytes(function.code_bytes),
        code_sha256=str(function.code_sha_256),
        layers=tuple(layers),
        log_group=str(logging_config.get("LogGroup") or f"/aws/lambda/{function.function_name}"),
        version=str(function.version),
    )


def _patch_execution_start_time() -> None:
    from moto.stepfunctions.parser.asl.eval.evaluation_details import (  # noqa: PLC0415
        ExecutionDetails,
    )
    from moto.stepfunctions.parser.backend.execution import Execution  # noqa: PLC0415

    _require_parameters(
        ExecutionDetails.__init__,
        ("self", "arn", "name", "role_arn", "inpt", "start_time"),
        "ExecutionDetails",
    )
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

    Execution.get_start_execution_details = start_execution_details  # type: ignore[method-assign, assignment]


def _epoch_seconds(value: Any) -> float:
    """A history timestamp as Step Functions' JSON protocol writes one: seconds since the epoch.

    Examples
    --------
    >>> _epoch_seconds("2019-03-26T20:14:13.192Z")
    1553631253.192
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"a history event holds {type(value).__name__}, not JSON: moto changed")


def _recorded_events(execution: Any) -> list[Any]:
    """The events recorded so far, in order: the list itself copied, not each event."""
    worker = execution.exec_worker
    env = worker.env if worker is not None else None
    if env is None:  # not started yet
        return []
    manager = env.event_manager
    with manager._mutex:
        return list(manager._history_event_list)


def _patch_history_pages() -> None:
    from moto.stepfunctions.parser.asl.eval.event.event_manager import (  # noqa: PLC0415
        EventManager,
    )
    from moto.stepfunctions.parser.backend.execution import Execution  # noqa: PLC0415
    from moto.stepfunctions.responses import StepFunctionResponse  # noqa: PLC0415

    def get_execution_history(response: Any) -> Any:
        arn = response._get_param("executionArn")
        backend = response.stepfunction_backend
        # Status first: events written after a RUNNING look are fetched with the token.
        execution = backend.describe_execution(arn)
        token = response._get_param("nextToken")
        try:
            start = page_offset(token)
            held_until = time.monotonic() + _EMPTY_PAGE_HELD_S
            while True:
                status = getattr(execution.exec_status, "value", None)
                events = _recorded_events(execution)
                if len(events) > start or status != "RUNNING" or time.monotonic() > held_until:
                    break
                time.sleep(_EVENT_WAIT_S)
            page = history_page(
                events,
                token=token,
                max_results=int(response._get_param("maxResults") or 0),
                running=status == "RUNNING",
            )
        except ValueError as exc:
            from moto.stepfunctions.exceptions import InvalidToken  # noqa: PLC0415

            raise InvalidToken(str(exc)) from exc
        # moto keeps timestamps as ISO text; the JSON protocol writes seconds since the epoch.
        events = [
            event | {"timestamp": _epoch_seconds(event["timestamp"])} for event in page["events"]
        ]
        return json.dumps(page | {"events": events})

    if not hasattr(StepFunctionResponse, "get_execution_history"):
        raise UnsupportedMotoError("moto's Step Functions has no get_execution_history: changed")
    for method, needed in (
        (EventManager.get_event_history, ("self._mutex", "self._history_event_list")),
        (Execution.to_history_output, ("self.exec_worker.env", "env.event_manager")),
    ):
        if not all(name in inspect.getsource(method) for name in needed):
            raise UnsupportedMotoError(
                f"moto's {method.__qualname__} no longer reads {', '.join(needed)}: changed"
            )
    StepFunctionResponse.get_execution_history = get_execution_history  # type: ignore[method-assign, assignment]


def _patch_host_backends() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: PLC0415

    original = DomainDispatcherApplication.get_backend_for_host
    _require_parameters(original, ("self", "host"), "get_backend_for_host")
    found: dict[str | None, Any] = {}

    def get_backend_for_host(app: Any, host: str | None) -> Any:
        # Called under the dispatcher's lock; a host that matched nothing is asked again.
        if host not in found:
            backend = original(app, host)
            if backend is None:
                return None
            found[host] = backend
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign, assignment]


def _patch_parsed_json_paths() -> None:
    from moto.stepfunctions.parser.asl.component.common.path import (  # noqa: PLC0415
        result_path,
    )
    from moto.stepfunctions.parser.asl.utils import json_path  # noqa: PLC0415

    for module, user in (
        (json_path, json_path.extract_json),
        (result_path, result_path.ResultPath._eval_body),
    ):
        parse = getattr(module, "parse", None)
        if parse is None or "parse(" not in inspect.getsource(user):
            raise UnsupportedMotoError(
                f"moto's {user.__qualname__} no longer parses with {module.__name__}.parse"
            )
        module.parse = functools.lru_cache(maxsize=_PARSED_JSON_PATHS_KEPT)(parse)  # type: ignore[attr-defined]


def _patch_lambda_invoke_in_process() -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415
    from moto.awslambda.utils import get_backend  # noqa: PLC0415
    from moto.core.exceptions import JsonRESTError  # noqa: PLC0415
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: PLC0415
        lambda_eval_utils,
    )

    original = getattr(lambda_eval_utils, "_invoke_lambda_function", None)
    if original is None or "lambda_client.invoke(" not in inspect.getsource(original):
        raise UnsupportedMotoError("moto's Lambda integration no longer invokes through a client")
    _require_parameters(
        original, ("parameters", "region", "state_credentials"), "_invoke_lambda_function"
    )

    def failure(code: str, message: str, status: int) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": str(uuid.uuid4())},
            },
            "Invoke",
        )

    def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        """A synchronous invoke, the only kind a Step Functions task makes."""
        name = str(parameters["FunctionName"])
        # A function ARN names its account; a bare name is the caller's (moto's default).
        arn_parts = name.split(":")
        is_arn = name.startswith("arn:") and len(arn_parts) > 4
        account = arn_parts[4] if is_arn else DEFAULT_ACCOUNT_ID
        headers: dict[str, str] = {}
        try:
            answer = get_backend(account, region).invoke(
                name, parameters.get("Qualifier"), parameters.get("Payload") or b"", {}, headers
            )
        except JsonRESTError as exc:  # the Lambda API's own error: an unknown function, say
            raise failure(exc.error_type, exc.message, exc.code) from exc
        except (WorkerPoolClosedError, OSError) as exc:  # could not run it
            raise failure("ServiceException", str(exc), 500) from exc
        payload = answer if isinstance(answer, bytes) else (answer or "").encode()
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": headers.get("x-amz-executed-version", "$LATEST"),
        }
        function_error = headers.get("x-amz-function-error")
        if len(payload) > _MAX_RESPONSE_BYTES:
            function_error = "Unhandled"
            payload = json.dumps(
                {
                    "errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": "Response payload size exceeded maximum allowed payload "
                    f"size ({_MAX_RESPONSE_BYTES} bytes).",
                }
            ).encode()
        if function_error:
            response["FunctionError"] = function_error
        try:
            response["Payload"] = json.loads(payload)
        except ValueError:  # not JSON: Step Functions hands the text on as it is
            response["Payload"] = payload.decode("utf-8", errors="replace")
        return response

    lambda_eval_utils._invoke_lambda_function = invoke


def _patch_lambda_task_errors() -> None:
    """Name a Lambda API error of a function-ARN task ``Lambda.<code>``, as AWS does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: PLC0415
        state_task_lambda,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: PLC0415
        state_task_service_lambda,
    )

    # Read as untyped: the names below are moto's module imports, not its exports.
    module: Any = state_task_lambda
    task = module.StateTaskLambda
    named_by_service = state_task_service_lambda.StateTaskServiceLambda
    original = task._from_error
    _require_parameters(original, ("self", "env", "ex"), "StateTaskLambda._from_error")
    if 'error = "Exception"' not in inspect.getsource(original) or not hasattr(
        named_by_service, "_error_cause_from_client_error"
    ):
        raise UnsupportedMotoError("moto's Lambda task no longer names a client error Exception")

    def from_error(state: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, module.ClientError):
            return original(state, env, ex)
        error, cause = named_by_service._error_cause_from_client_error(ex)
        return module.FailureEvent(
            env=env,
            error_name=module.CustomErrorName(error),
            event_type=module.HistoryEventType.LambdaFunctionFailed,
            event_details=module.EventDetails(
                lambdaFunctionFailedEventDetails=module.LambdaFunctionFailedEventDetails(
                    error=error, cause=cause
                )
            ),
        )

    task._from_error = from_error


def metric_sink(account: str, region: str) -> Callable[[Sequence[MetricDatum]], None]:
    """A function that puts metric values into the service's CloudWatch, in this process.

    Examples
    --------
    >>> put = metric_sink("123456789012", "eu-west-2")  # doctest: +SKIP
    >>> put([MetricDatum("Totes", "RowsLoaded", 3.0, "Count", {}, now)])  # doctest: +SKIP
    """
    from moto.cloudwatch.models import cloudwatch_backends  # noqa: PLC0415

    backend = cloudwatch_backends[account][region]
    _require_parameters(backend.put_metric_data, ("namespace", "metric_data"), "put_metric_data")

    def put(data: Sequence[MetricDatum]) -> None:
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for datum in data:
            by_namespace.setdefault(datum.namespace, []).append(
                {
                    "MetricName": datum.name,
                    "Dimensions": [
                        {"Name": key, "Value": value} for key, value in datum.dimensions.items()
                    ],
                    "Value": datum.value,
                    "Unit": datum.unit,
                    # moto keeps metric times as naive UTC, as its HTTP front end parses them.
                    "Timestamp": datum.timestamp.astimezone(UTC).replace(tzinfo=None),
                }
            )
        for namespace, metric_data in by_namespace.items():
            backend.put_metric_data(namespace, metric_data)

    return put


def sent_notifications(account: str, region: str) -> list[dict[str, str | None]]:
    """Every message published to the service's SNS topics, oldest first per topic.

    moto keeps each topic's messages (``Topic.sent_notifications``, which its own
    documentation offers as the way to read them back): the alert e-mails a topic
    received stay readable after ``totes run`` took them from its queue.

    Examples
    --------
    >>> sent_notifications("123456789012", "eu-west-2")  # doctest: +SKIP
    [{'topic_arn': 'arn:aws:sns:...', 'message_id': '...', 'subject': 'totes: ...', ...}]
    """
    from moto.sns.models import sns_backends  # noqa: PLC0415

    backend = sns_backends[account][region]
    found: list[dict[str, str | None]] = []
    # Copies: a publish may append while this reads.
    for arn, topic in list(backend.topics.items()):
        for message_id, message, subject, *_ in list(topic.sent_notifications):
            found.append(
                {"topic_arn": arn, "message_id": message_id, "subject": subject, "message": message}
            )
    return found


def _patch_parsed_definitions() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import (  # noqa: PLC0415
        AmazonStateLanguageParser,
    )
    from moto.stepfunctions.parser.backend.execution_worker import (  # noqa: PLC0415
        ExecutionWorker,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: PLC0415

    _require_parameters(ExecutionWorker._get_evaluation_entrypoint, ("self",), "entrypoint")
    validate = StepFunctionsParserBackend._validate_definition
    _require_parameters(validate, ("definition",), "_validate_definition")
    if "AmazonStateLanguageParser.parse(definition)" not in inspect.getsource(validate):
        raise UnsupportedMotoError("moto no longer validates a definition by parsing it")
    parsed: dict[str, Any] = {}
    lock = threading.Lock()

    def parse(definition: str) -> Any:
        with lock:
            if definition not in parsed:
                if len(parsed) >= _PARSED_DEFINITIONS_KEPT:
                    del parsed[next(iter(parsed))]
                parsed[definition] = AmazonStateLanguageParser.parse(definition)[0]
            return parsed[definition]

    def validate_definition(definition: str) -> None:
        try:
            parse(definition)  # kept for the executions of this definition
        except Exception:  # a definition moto cannot parse: its own error, as it words it
            validate(definition=definition)
            raise

    def entrypoint(worker: Any) -> Any:
        definition = worker._evaluation_details.state_machine_details.definition
        return copy.deepcopy(parse(definition))

    StepFunctionsParserBackend._validate_definition = staticmethod(validate_definition)  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_entrypoint = entrypoint  # type: ignore[method-assign, assignment]


def live_folders(latest: Iterable[tuple[str, bool]], prefix: str, delimiter: str) -> set[str]:
    """The folders a ``Delimiter`` listing shows: those holding a key that is not deleted.

    ``latest`` gives each key's name and whether its latest version is a delete marker.

    Examples
    --------
    >>> sorted(live_folders([("t/a/1", True), ("t/b/1", False), ("t/c", False)], "t/", "/"))
    ['t/b/']
    """
    folders = set()
    for name, deleted in latest:
        rest = name[len(prefix) :] if name.startswith(prefix) else None
        if not deleted and rest is not None and delimiter in rest:
            folders.add(f"{prefix}{rest.split(delimiter, 1)[0]}{delimiter}")
    return folders


def _patch_deleted_folders() -> None:
    from moto.s3.models import FakeDeleteMarker, S3Backend  # noqa: PLC0415

    original = S3Backend.list_objects
    _require_parameters(
        original, ("self", "bucket", "prefix", "delimiter", "marker", "max_keys"), "list_objects"
    )
    if "FakeDeleteMarker" not in inspect.getsource(original):
        raise UnsupportedMotoError("moto's list_objects no longer skips delete markers: changed")

    def list_objects(  # noqa: PLR0917 (the signature of the method it replaces)
        backend: Any,
        bucket: Any,
        prefix: str | None,
        delimiter: str | None,
        marker: str | None,
        max_keys: int | None,
    ) -> Any:
        keys, folders, truncated, next_marker = original(
            backend, bucket, prefix, delimiter, marker, max_keys
        )
        if not (delimiter and folders):
            return keys, folders, truncated, next_marker
        live = live_folders(
            ((name, isinstance(key, FakeDeleteMarker)) for name, key in bucket.keys.items()),
            prefix or "",
            delimiter,
        )
        # moto answers its folders sorted (a list, though it declares a set).
        return keys, [folder for folder in folders if folder in live], truncated, next_marker

    S3Backend.list_objects = list_objects  # type: ignore[method-assign, assignment]


def _patch_glue_table_versions() -> None:
    from moto.glue.exceptions import GlueClientError  # noqa: PLC0415
    from moto.glue.responses import GlueResponse  # noqa: PLC0415

    original = GlueResponse.update_table
    if "self.glue_backend.update_table(database_name, table_name, table_input)" not in (
        inspect.getsource(original)
    ):
        raise UnsupportedMotoError("moto's Glue update_table changed: check its VersionId")
    updating = threading.Lock()  # the check and the update as one step, as in Glue

    def update_table(response: Any) -> Any:
        expected = response._get_param("VersionId")
        with updating:
            if expected is not None:
                table = response.glue_backend.get_table(
                    response._get_param("DatabaseName"),
                    response._get_param("TableInput")["Name"],
                )
                current = str(table._current_version)
                if expected != current:
                    raise GlueClientError(
                        "ConcurrentModificationException",
                        f"Update table failed due to concurrent modifications: version "
                        f"{expected} was asked for, the table is at version {current}",
                    )
            return original(response)

    GlueResponse.update_table = update_table  # type: ignore[method-assign, assignment]
