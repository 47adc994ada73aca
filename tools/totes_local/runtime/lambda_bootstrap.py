"""The runtime inside one local Lambda execution environment (a worker process).

Run as a script by :mod:`totes_local.runtime.lambda_workers`, never imported by
the product. Like the Lambda runtime it puts the function's code
(``LAMBDA_TASK_ROOT``) and its layers (``/opt/python`` in Lambda, here the
folders in ``TOTES_LOCAL_LAYER_PATHS``) first on ``sys.path``, imports the
handler once (the cold start) and then answers invocations one at a time:

- a request is one JSON line on stdin: ``{"request_id", "payload", "deadline_ms",
  "function_arn"}``;
- once the handler is imported (the init phase) the runtime says so on the
  response pipe (file descriptor in argv): ``{"init_ms"}``;
- the answer is one JSON line on the response pipe:
  ``{"request_id", "ok", "payload"}``; an exception of the handler is
  ``ok: false`` with the payload the Lambda service gives (``errorType``,
  ``errorMessage``, ``stackTrace``);
- the handler's stdout and stderr are the worker's own: the service reads them
  into the log file. After each invocation a marker line on both streams tells
  the service that the invocation's output is complete;
- the packages named in ``TOTES_LOCAL_ABSENT_PACKAGES`` (comma-separated) cannot be
  imported: the local environment holds them, the function's layers would not.

Nothing here imports from ``totes_local``: the process holds what Lambda would.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import IO, Any

#: Written on stdout and stderr after each invocation, followed by the request id.
END_OF_OUTPUT = "\x1etotes-local-end-of-invocation "
#: Top-level packages the function cannot import (comma-separated).
ABSENT_PACKAGES_VARIABLE = "TOTES_LOCAL_ABSENT_PACKAGES"


class AbsentPackages(importlib.abc.MetaPathFinder):
    """Makes packages the function's layers would not hold fail to import, as in Lambda.

    Some packages import others when they can: pyarrow imports numpy, and pandas on
    its first conversion of Python objects. Hidden, they are not imported, as in an
    environment without them.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Refuse a hidden package and its modules; leave every other name to the next finder.

        It raises rather than answering None, so that the finders after it (which would
        find the package) are not asked: ``importlib.util.find_spec`` raises too.
        """
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return None


class LambdaContext:
    """The context object the Lambda runtime passes to a handler."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = str(request.get("function_arn", ""))
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = str(request.get("request_id") or uuid.uuid4())
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = (
            f"{datetime.now(UTC):%Y/%m/%d}/[{self.function_version}]"
            f"{self.aws_request_id.replace('-', '')}"
        )
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline_ms = int(request.get("deadline_ms", 0))

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _load_handler() -> tuple[Any, dict[str, Any] | None]:
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the Lambda runtime reports any import failure the same way
        return None, _error(exc, "Runtime.ImportModuleError") | {
            "errorMessage": f"Unable to import module '{module_name}': {exc}"
        }
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, {
            "errorType": "Runtime.HandlerNotFound",
            "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
            "stackTrace": [],
        }
    return handler, None


def _initialise() -> tuple[Any, dict[str, Any] | None, float]:
    """The init phase: the handler (or the error importing it) and its milliseconds."""
    started = time.perf_counter()
    handler, init_error = _load_handler()
    return handler, init_error, (time.perf_counter() - started) * 1000


def _end_of_output(request_id: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(f"\n{END_OF_OUTPUT}{request_id}\n")
        stream.flush()


def _serve(handler: Any, init_error: dict[str, Any] | None, responses: IO[str]) -> None:
    """Answer invocations from stdin until it closes."""
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {"request_id": request["request_id"]}
        if init_error is not None:
            # Lambda resets an environment whose init failed: the service ends this worker.
            answer |= {"ok": False, "payload": json.dumps(init_error), "init_failed": True}
        else:
            try:
                raw = request.get("payload") or ""
                result = handler(json.loads(raw) if raw else {}, LambdaContext(request))
            except Exception as exc:  # the runtime reports any exception of the handler
                answer |= {"ok": False, "payload": json.dumps(_error(exc))}
            else:
                try:
                    answer |= {"ok": True, "payload": json.dumps(result)}
                except (TypeError, ValueError) as exc:
                    error = _error(exc, "Runtime.MarshalError")
                    answer |= {"ok": False, "payload": json.dumps(error)}
        _end_of_output(request["request_id"])
        responses.write(json.dumps(answer) + "\n")


def _prepare_environment() -> None:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    layers = [p for p in os.environ.get("TOTES_LOCAL_LAYER_PATHS", "").split(os.pathsep) if p]
    sys.path[:0] = [task_root, *layers]
    named = os.environ.get(ABSENT_PACKAGES_VARIABLE, "").split(",")
    absent = frozenset(name.strip() for name in named if name.strip())
    if absent:
        sys.meta_path.insert(0, AbsentPackages(absent))


def main(argv: list[str]) -> int:
    """Serve invocations until stdin closes."""
    _prepare_environment()
    responses = os.fdopen(int(argv[1]), "w", encoding="utf-8", buffering=1)
    handler, init_error, init_ms = _initialise()
    responses.write(json.dumps({"init_ms": init_ms}) + "\n")
    _serve(handler, init_error, responses)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
