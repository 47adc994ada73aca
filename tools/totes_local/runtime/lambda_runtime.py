"""An in-process Lambda service: each invoke that moto receives runs the real handler.

moto's Step Functions interpreter invokes a Task's function through the Lambda
API (``lambda:Invoke``); with ``{"lambda": {"use_docker": False}}`` moto answers
that call from ``LambdaSimpleBackend.invoke``, which echoes the payload.
:class:`LocalLambdaService` replaces that method while it runs: an invoke of one
of its functions imports the function's handler from the cloud assembly (once,
like a cold start) and calls it with the event and a Lambda context, inside the
function's environment variables.

A handler exception comes back the way the Lambda service reports it: response
header ``x-amz-function-error: Unhandled`` and a payload ``{"errorType",
"errorMessage", "stackTrace"}``, so the interpreter's error is the exception's
type name (``WatermarkConflictError``), which Retry and Catch rules match.

The handlers' output (Powertools JSON logs, EMF metric lines, warnings) goes to
a JSON-lines file instead of the terminal, and every EMF metric is also put into
(moto's) CloudWatch, as CloudWatch Logs does with EMF in AWS.

One invocation runs at a time. In AWS each concurrent invocation has its own
container; in one process the handlers share module-level state (the Powertools
logger's keys, the metrics buffer, the process environment), so concurrent
invocations would mix each other's log keys and metrics. Map states still
schedule their items concurrently; the items take turns in the handler.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import IO, Any, TextIO, cast
from unittest import mock

from totes.errors import TotesError
from totes_local.runtime.platform import LocalFunctionSpec

#: The interpreter logs every failure it handles with the whole state tree; the
#: execution history already holds the same facts, readably.
_NOISY_LOGGERS = ("moto.stepfunctions.parser",)
_MARSHAL_ERROR = "Runtime.MarshalError"


class HandlerImportError(TotesError):
    """A function's handler module could not be imported from the cloud assembly."""


class LambdaContext:
    """The context object the Lambda runtime passes to a handler.

    Examples
    --------
    >>> context = LambdaContext("fn", "arn:aws:lambda:eu-west-2:1:function:fn", 128, 3)
    >>> context.get_remaining_time_in_millis() > 2000
    True
    """

    def __init__(
        self,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        timeout_s: int,
        *,
        aws_request_id: str | None = None,
        log_group_name: str = "",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = log_group_name
        self.log_stream_name = (
            f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{self.aws_request_id.replace('-', '')}"
        )
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout.

        Examples
        --------
        >>> LambdaContext("fn", "arn", 128, 1).get_remaining_time_in_millis() <= 1000
        True
        """
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class MetricDatum:
    """One value of one metric, read from an EMF line a handler printed."""

    namespace: str
    name: str
    value: float
    unit: str
    dimensions: dict[str, str]
    timestamp: datetime


@dataclass
class Invocation:
    """What one invoke did: which function, with which event, how it ended."""

    function_name: str
    request_id: str
    event: Any
    started: datetime
    duration_ms: float = 0.0
    error_type: str | None = None
    error_message: str | None = None
    exceeded_timeout: bool = False
    metrics: list[MetricDatum] = field(default_factory=list)


@dataclass
class LocalFunction:
    """A function of the stack with its handler imported."""

    spec: LocalFunctionSpec
    module: ModuleType
    environment: dict[str, str]

    @property
    def handler(self) -> Callable[[Any, LambdaContext], Any]:
        """The handler function named by the spec (looked up at each call, so it can be patched).

        Examples
        --------
        >>> function.handler({"table": "staff", "run_id": "r1"}, context)  # doctest: +SKIP
        {'table': 'staff', 'run_id': 'r1', 'rows': 20, ...}
        """
        handler: Callable[[Any, LambdaContext], Any] = getattr(
            self.module, self.spec.handler.rsplit(".", 1)[1]
        )
        return handler


class _LogFile:
    """A JSON-lines file shared by every invocation; whole lines only, one writer at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self._lock:
            self._file.write(line.rstrip("\n") + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _InvocationOutput:
    """Collects what one invocation writes to stdout and stderr, line by line."""

    def __init__(self, log: _LogFile, function_name: str, request_id: str) -> None:
        self.log = log
        self.function_name = function_name
        self.request_id = request_id
        self.records: list[dict[str, Any]] = []
        self._partial: dict[str, str] = {"stdout": "", "stderr": ""}

    def write(self, stream: str, text: str) -> None:
        lines = (self._partial[stream] + text).split("\n")
        self._partial[stream] = lines.pop()
        for line in lines:
            self._emit(stream, line)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._emit(stream, rest)
        self._partial = {"stdout": "", "stderr": ""}

    def record(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.log.write_line(json.dumps(record, default=str))

    def _emit(self, stream: str, line: str) -> None:
        if not line.strip():
            return
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            self.records.append(parsed)
            self.log.write_line(line)
            return
        # Plain text (a warning, a stray print): kept, as one JSON object per line.
        self.record(
            {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "level": "WARNING" if stream == "stderr" else "INFO",
                "stream": stream,
                "function_name": self.function_name,
                "function_request_id": self.request_id,
                "message": line,
            }
        )


_current = threading.local()


class _RoutedStream:
    """``sys.stdout``/``sys.stderr`` stand-in: a handler's writes go to its invocation's log.

    Writes from any other thread (the ``totes`` command's own output) go where they
    went before.
    """

    def __init__(self, original: TextIO, name: str) -> None:
        self._original = original
        self._name = name

    def write(self, text: str) -> int:
        output: _InvocationOutput | None = getattr(_current, "output", None)
        if output is None:
            return self._original.write(text)
        output.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        if getattr(_current, "output", None) is None:
            self._original.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def parse_emf(record: Mapping[str, Any]) -> list[MetricDatum]:
    """The metric values of one CloudWatch embedded-metric-format record.

    Examples
    --------
    >>> record = {"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "N",
    ...     "Dimensions": [["table"]], "Metrics": [{"Name": "Rows", "Unit": "Count"}]}]},
    ...     "table": "staff", "Rows": [3.0]}
    >>> [(m.name, m.value, m.dimensions) for m in parse_emf(record)]
    [('Rows', 3.0, {'table': 'staff'})]
    """
    directives = record.get("_aws")
    if not isinstance(directives, Mapping):
        return []
    millis = directives.get("Timestamp")
    timestamp = (
        datetime.fromtimestamp(millis / 1000, UTC)
        if isinstance(millis, int | float)
        else datetime.now(UTC)
    )
    data: list[MetricDatum] = []
    for directive in directives.get("CloudWatchMetrics", []):
        dimension_names = {name for group in directive.get("Dimensions", []) for name in group}
        dimensions = {name: str(record[name]) for name in sorted(dimension_names) if name in record}
        for metric in directive.get("Metrics", []):
            raw = record.get(metric.get("Name"))
            values = raw if isinstance(raw, list) else [raw]
            data.extend(
                MetricDatum(
                    namespace=str(directive.get("Namespace")),
                    name=str(metric["Name"]),
                    value=float(value),
                    unit=str(metric.get("Unit", "None")),
                    dimensions=dimensions,
                    timestamp=timestamp,
                )
                for value in values
                if isinstance(value, int | float) and not isinstance(value, bool)
            )
    return data


def _load_handler_module(spec: LocalFunctionSpec, module_name: str) -> ModuleType:
    module_file, _, _ = spec.handler.rpartition(".")
    path = spec.code / (module_file.replace(".", "/") + ".py")
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise HandlerImportError(f"function {spec.name} has no handler module at {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # any import-time failure of user code is reported as one error
        del sys.modules[module_name]
        raise HandlerImportError(f"importing the handler of {spec.name} failed: {exc}") from exc
    return module


class LocalLambdaService:
    """Run the stack's functions in this process whenever moto is asked to invoke them.

    Parameters
    ----------
    functions
        The functions of the stack.
    log_path
        The JSON-lines file that receives the handlers' logs and metrics (appended to).
    region
        The region the functions run in (``AWS_REGION`` of their environment).
    environment_overrides
        Extra environment variables per function name (e.g. DSNs instead of secrets).
    cloudwatch
        A CloudWatch client that receives every EMF metric; ``None`` keeps them local.

    Examples
    --------
    >>> with mock_aws(config=LOCAL_MOTO_CONFIG):  # doctest: +SKIP
    ...     with LocalLambdaService(platform.functions, log_path=Path("x.jsonl"),
    ...                             region="eu-west-2") as service:
    ...         boto3.client("lambda").invoke(FunctionName=platform.functions[0].arn,
    ...                                       Payload=b'{"table": "staff", "run_id": "r1"}')
    """

    def __init__(
        self,
        functions: Sequence[LocalFunctionSpec],
        *,
        log_path: Path,
        region: str,
        environment_overrides: Mapping[str, Mapping[str, str]] | None = None,
        cloudwatch: Any = None,
    ) -> None:
        self.specs = tuple(functions)
        self.log_path = log_path
        self.region = region
        self.environment_overrides = environment_overrides or {}
        self.cloudwatch = cloudwatch
        self.functions: dict[str, LocalFunction] = {}
        self.invocations: list[Invocation] = []
        self._by_reference: dict[str, LocalFunction] = {}
        self._invoke_lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._log: _LogFile | None = None
        self._undo: list[Callable[[], object]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> LocalLambdaService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Import the handlers, route their output to the log file, and take over invokes.

        Raises
        ------
        HandlerImportError
            A function's handler module is missing or fails to import.

        Examples
        --------
        >>> service.start()  # doctest: +SKIP
        """
        from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

        # The shared Powertools logger is created before stdout is rerouted, so it keeps
        # the real stream as its own: _route_output puts a router in front of it, and
        # takes it away again on stop.
        import totes.observability  # noqa: F401, PLC0415

        try:
            for spec in self.specs:
                module = _load_handler_module(spec, f"_totes_local_{spec.logical_id}_{id(self)}")
                self._undo.append(partial(sys.modules.pop, module.__name__, None))
                function = LocalFunction(spec, module, self._environment_of(spec))
                self.functions[spec.name] = function
                self._by_reference[spec.name] = function
                self._by_reference[spec.arn] = function
            self._log = _LogFile(self.log_path)
            self._route_output()
            self._quiet_interpreter_logs()
            original_invoke = LambdaSimpleBackend.invoke
            service = self

            # The signature of the method it replaces, positional arguments included.
            def invoke(  # noqa: PLR0917
                backend: Any,
                function_name: str,
                qualifier: str | None,
                body: Any,
                headers: Any,
                response_headers: dict[str, str],
            ) -> str | bytes | None:
                function = service._by_reference.get(function_name)
                if function is None:
                    return original_invoke(
                        backend, function_name, qualifier, body, headers, response_headers
                    )
                return service.invoke(function, body, response_headers)

            patcher = mock.patch.object(LambdaSimpleBackend, "invoke", invoke)
            patcher.start()
            self._undo.append(patcher.stop)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Give invokes back to moto, restore the output streams, close the log file.

        Examples
        --------
        >>> service.stop()  # doctest: +SKIP
        """
        while self._undo:
            self._undo.pop()()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _environment_of(self, spec: LocalFunctionSpec) -> dict[str, str]:
        # What the Lambda runtime sets, then the function's own variables, then overrides.
        return {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "_HANDLER": spec.handler,
            **spec.environment,
            **self.environment_overrides.get(spec.name, {}),
        }

    def _route_output(self) -> None:
        from totes.observability import logger as pipeline_logger  # noqa: PLC0415

        routers: dict[int, _RoutedStream] = {}

        def router(stream: TextIO, name: str) -> _RoutedStream:
            if id(stream) not in routers:
                routers[id(stream)] = _RoutedStream(stream, name)
            return routers[id(stream)]

        standard = {
            id(stream): name
            for stream, name in (
                (sys.stdout, "stdout"),
                (sys.__stdout__, "stdout"),
                (sys.stderr, "stderr"),
                (sys.__stderr__, "stderr"),
            )
            if stream is not None
        }
        # Logging handlers hold the stream object they were given, not sys.stdout: each
        # handler writing to a standard stream, and the handlers' own logger wherever it
        # writes, gets a router in front of its stream.
        handlers = [
            handler
            for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values())
            for handler in getattr(logger, "handlers", [])
        ]
        handlers.append(pipeline_logger.registered_handler)
        for handler in dict.fromkeys(handlers):
            if not isinstance(handler, logging.StreamHandler) or isinstance(
                handler, logging.FileHandler
            ):
                continue
            name = standard.get(id(handler.stream))
            if name is None and handler is pipeline_logger.registered_handler:
                name = "stdout"
            if name is not None:
                previous = handler.setStream(router(handler.stream, name))
                self._undo.append(partial(handler.setStream, previous))
        originals = (sys.stdout, sys.stderr)
        sys.stdout = cast(TextIO, router(sys.stdout, "stdout"))
        sys.stderr = cast(TextIO, router(sys.stderr, "stderr"))

        def restore_streams() -> None:
            if sys.stdout is routers.get(id(originals[0])):
                sys.stdout = originals[0]
            if sys.stderr is routers.get(id(originals[1])):
                sys.stderr = originals[1]

        self._undo.append(restore_streams)

    def _quiet_interpreter_logs(self) -> None:
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            level = logger.level
            logger.setLevel(logging.CRITICAL)
            self._undo.append(partial(logger.setLevel, level))

    # -- invoking -------------------------------------------------------------------------

    def function(self, reference: str) -> LocalFunction:
        """The function with this name, ARN or logical id.

        Raises
        ------
        KeyError
            No function of the stack is known by ``reference``.

        Examples
        --------
        >>> service.function("FunctionsIngest66EFBB2C").spec.handler  # doctest: +SKIP
        'handler.handler'
        """
        if reference in self._by_reference:
            return self._by_reference[reference]
        for function in self.functions.values():
            if function.spec.logical_id == reference:
                return function
        raise KeyError(reference)

    def invoke(self, function: LocalFunction, body: Any, response_headers: dict[str, str]) -> bytes:
        """Run ``function``'s handler on the JSON ``body``; answer as the Lambda service does.

        A handler exception sets ``x-amz-function-error: Unhandled`` in
        ``response_headers`` and answers ``{"errorType", "errorMessage", "stackTrace"}``.

        Examples
        --------
        >>> headers = {}
        >>> service.invoke(function, b'{"run_id": "r1"}', headers)  # doctest: +SKIP
        b'{"errorMessage": "ingest event needs a non-empty string \'table\'", ...}'
        >>> headers["x-amz-function-error"]  # doctest: +SKIP
        'Unhandled'
        """
        with self._invoke_lock:
            return self._invoke(function, body, response_headers)

    def _invoke(
        self, function: LocalFunction, body: Any, response_headers: dict[str, str]
    ) -> bytes:
        spec = function.spec
        context = LambdaContext(
            spec.name,
            spec.arn,
            spec.memory_mb,
            spec.timeout_s,
            log_group_name=spec.log_group,
        )
        raw = body.decode() if isinstance(body, bytes) else (body or "")
        event = json.loads(raw) if raw else {}
        record = Invocation(spec.name, context.aws_request_id, event, datetime.now(UTC))
        if self._log is None:
            raise RuntimeError("the local Lambda service is not running")
        output = _InvocationOutput(self._log, spec.name, context.aws_request_id)
        started = time.perf_counter()
        error: dict[str, Any] | None = None
        payload = b""
        with _environment(function.environment), _capturing(output):
            try:
                result = function.handler(event, context)
            except Exception as exc:  # the Lambda runtime reports any exception of the handler
                error = _error_payload(exc, context)
            else:
                try:
                    payload = json.dumps(result).encode()
                except (TypeError, ValueError) as exc:
                    error = _error_payload(exc, context, error_type=_MARSHAL_ERROR)
        output.close()
        record.duration_ms = (time.perf_counter() - started) * 1000
        record.exceeded_timeout = record.duration_ms > spec.timeout_s * 1000
        if error is not None:
            record.error_type, record.error_message = error["errorType"], error["errorMessage"]
            output.record(
                {
                    "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "level": "ERROR",
                    "function_name": spec.name,
                    "function_request_id": context.aws_request_id,
                    "message": f"{error['errorType']}: {error['errorMessage']}",
                    "errorType": error["errorType"],
                    "stackTrace": error["stackTrace"],
                }
            )
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(error).encode()
        output.record(
            {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "type": "platform.report",
                "function_name": spec.name,
                "function_request_id": context.aws_request_id,
                "duration_ms": round(record.duration_ms, 1),
                "memory_size_mb": spec.memory_mb,
                "timeout_s": spec.timeout_s,
                "exceeded_timeout": record.exceeded_timeout,
                "status": "error" if error else "success",
            }
        )
        record.metrics = [datum for line in output.records for datum in parse_emf(line)]
        self._put_metrics(record.metrics)
        response_headers["x-amz-executed-version"] = "$LATEST"
        with self._records_lock:
            self.invocations.append(record)
        return payload

    def _put_metrics(self, data: Sequence[MetricDatum]) -> None:
        if self.cloudwatch is None:
            return
        for datum in data:
            self.cloudwatch.put_metric_data(
                Namespace=datum.namespace,
                MetricData=[
                    {
                        "MetricName": datum.name,
                        "Dimensions": [
                            {"Name": key, "Value": value} for key, value in datum.dimensions.items()
                        ],
                        "Value": datum.value,
                        "Unit": datum.unit,
                        "Timestamp": datum.timestamp,
                    }
                ],
            )


def _error_payload(
    exc: BaseException, context: LambdaContext, *, error_type: str | None = None
) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": context.aws_request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _capturing(output: _InvocationOutput) -> Iterator[None]:
    _current.output = output
    try:
        yield
    finally:
        _current.output = None
