"""Lambda execution environments as worker processes of the local AWS service.

Each invocation that the local service receives runs in a worker process of its
function, as Lambda runs it in an execution environment:

- concurrent invocations run in separate workers, at most
  ``TOTES_LOCAL_LAMBDA_CONCURRENCY`` (default: the number of cores) per
  function; the rest wait for a worker to come free, as with reserved
  concurrency;
- a worker stays warm after its first (cold) invocation and is reused while its
  function's configuration and code stay the same; a new configuration (an
  update of the function) gets new workers, like a new version;
- the worker's environment holds what the Lambda runtime sets (``AWS_REGION``,
  ``AWS_LAMBDA_FUNCTION_NAME``, ``_HANDLER``, credentials, ...) and the
  function's own variables; its code is the function's zip and its layers' zips
  as uploaded to the local Lambda service, unpacked once per digest;
- the function's timeout is enforced from the end of the init phase (the
  handler's import, which has 10 seconds of its own, as in Lambda; an init that
  takes longer goes on within the first invocation's timeout, as Lambda runs it
  again there): the worker is killed and the invoke
  answers ``Sandbox.Timedout``; a worker that dies answers ``Runtime.ExitError``
  (with ``exit status N`` or ``signal: killed``), as the Lambda service reports
  them;
- what the handler prints goes to the log file, one JSON object per line with
  the function name and request id, and every EMF line becomes metric values.

SnapStart is not emulated (the stack turns it off: ADR 20): every new environment
imports its handler, and reports its init duration.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import signal
import subprocess  # nosec B404
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from totes_local.runtime.emf import MetricDatum, parse_emf
from totes_local.runtime.lambda_bootstrap import END_OF_OUTPUT

#: The script each worker runs: the runtime inside the execution environment.
_BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
#: Environment variables a worker keeps from the service's own (the rest stays out, as in Lambda).
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR", "SYSTEMROOT")
CONCURRENCY_VARIABLE = "TOTES_LOCAL_LAMBDA_CONCURRENCY"
#: How long a new environment's init phase may take before the invocation's timeout runs.
INIT_LIMIT_S = 10.0
#: How long the service waits for a finished invocation's last log lines.
_OUTPUT_GRACE_S = 5.0
_UNHANDLED = "Unhandled"


@dataclass(frozen=True)
class FunctionRevision:
    """What one invocation runs: a function's configuration and code as uploaded.

    Attributes
    ----------
    fingerprint : str
        Digest of everything a worker is started with; workers are reused only
        for the same fingerprint.
    """

    name: str
    arn: str
    handler: str
    timeout_s: float
    memory_mb: int
    environment: Mapping[str, str]
    code: bytes
    code_sha256: str
    layers: tuple[tuple[str, bytes], ...]
    log_group: str
    #: ``$LATEST`` or the number of a published version.
    version: str = "$LATEST"

    @property
    def fingerprint(self) -> str:
        """Digest of the configuration and code (see the class docstring)."""
        digest = hashlib.sha256()
        for part in (
            self.arn,
            self.handler,
            str(self.timeout_s),
            str(self.memory_mb),
            json.dumps(dict(self.environment), sort_keys=True),
            self.code_sha256,
            self.version,
            *(sha for sha, _ in self.layers),
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


@dataclass
class InvocationReport:
    """How one invocation ended, as the platform report line in the log file says."""

    function_name: str
    request_id: str
    started: datetime
    ended: datetime
    duration_ms: float
    init_ms: float | None
    error_type: str | None
    max_memory_used_mb: float | None
    worker_pid: int
    #: CPU milliseconds the environment used for it, every thread and the init phase
    #: included. Lambda reports no such figure; locally it is the handler's own work,
    #: apart from the time it waited for a machine that the local service and other
    #: environments share.
    cpu_ms: float | None = None

    def to_record(self, revision: FunctionRevision) -> dict[str, Any]:
        """The report as one JSON-ready log record (``type: platform.report``)."""
        return {
            "timestamp": _now_text(),
            "type": "platform.report",
            "function_name": self.function_name,
            "function_request_id": self.request_id,
            "started": self.started.isoformat(timespec="microseconds"),
            "ended": self.ended.isoformat(timespec="microseconds"),
            "duration_ms": round(self.duration_ms, 1),
            "init_duration_ms": round(self.init_ms, 1) if self.init_ms is not None else None,
            "memory_size_mb": revision.memory_mb,
            "max_memory_used_mb": self.max_memory_used_mb,
            "timeout_s": revision.timeout_s,
            "worker_pid": self.worker_pid,
            "local_cpu_ms": round(self.cpu_ms, 1) if self.cpu_ms is not None else None,
            "status": "error" if self.error_type else "success",
            "error_type": self.error_type,
        }


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class WorkerPoolClosedError(RuntimeError):
    """An invocation arrived while the local service was shutting down."""


class LogSink:
    """The JSON-lines log file of every function, and where EMF metric values go.

    Parameters
    ----------
    path
        The log file (appended to).
    put_metrics
        Receives the metric values of each EMF line (the service's CloudWatch).
    """

    def __init__(self, path: Path, put_metrics: Callable[[Sequence[MetricDatum]], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._put_metrics = put_metrics

    def record(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line."""
        self._write(json.dumps(record, default=str))

    def line(self, stream: str, text: str, function_name: str, request_id: str | None) -> None:
        """Append one line a handler printed; plain text is wrapped in a JSON object."""
        if not text.strip():
            return
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            self._write(text)
            data = parse_emf(parsed)
            if data:
                self._put_metrics(data)
            return
        self.record(
            {
                "timestamp": _now_text(),
                "level": "WARNING" if stream == "stderr" else "INFO",
                "stream": stream,
                "function_name": function_name,
                "function_request_id": request_id,
                "message": text,
            }
        )

    def _write(self, line: str) -> None:
        with self._lock:
            self._file.write(line.rstrip("\n") + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class _Unpacked:
    """Zips unpacked once per digest under one folder, as Lambda does with code and layers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def folder(self, kind: str, sha256: str, content: bytes) -> Path:
        target = self.root / kind / sha256.replace("/", "_").replace("+", "-")
        with self._lock:
            if not target.is_dir():
                target.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
                with zipfile.ZipFile(io.BytesIO(content)) as archive:
                    archive.extractall(staging)
                staging.rename(target)
        return target


def _popen(arguments: list[str], environment: dict[str, str], pass_fds: tuple[int, ...]) -> Any:
    # A fixed command: this interpreter on the runtime script shipped with this package.
    return subprocess.Popen(  # noqa: S603  # nosec B603
        [sys.executable, "-P", "-u", str(_BOOTSTRAP), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=environment["LAMBDA_TASK_ROOT"],
        pass_fds=pass_fds,
        start_new_session=True,
        text=True,
        encoding="utf-8",
        # A handler may print bytes that are not UTF-8: kept, never a dead reader.
        errors="replace",
    )


class _Worker:
    """One execution environment: a process, its pipes, and the request it serves.

    ``process`` is a :class:`subprocess.Popen` of the runtime; ``responses`` is the read
    end of its response pipe.
    """

    def __init__(
        self,
        revision: FunctionRevision,
        sink: LogSink,
        process: subprocess.Popen[str],
        responses: int,
    ) -> None:
        self.revision = revision
        self.sink = sink
        self.process = process
        self._responses = os.fdopen(responses, "r", encoding="utf-8", errors="replace")
        self.started = time.monotonic()
        self.request_id: str | None = None
        #: The init phase's milliseconds, until the first invocation's report takes them.
        self.init_ms: float | None = None
        self._initialised = False
        #: When the current invocation's timeout began (after any init phase).
        self.invoked_at = self.started
        #: The process's CPU seconds when its last invocation was reported.
        self._cpu_reported = 0.0
        self._ended: dict[str, threading.Event] = {
            "stdout": threading.Event(),
            "stderr": threading.Event(),
        }
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def cold(
        cls, revision: FunctionRevision, environment: dict[str, str], sink: LogSink
    ) -> _Worker:
        """A new environment that imports the handler itself (a cold start)."""
        read_end, write_end = os.pipe()
        try:
            process = _popen([str(write_end)], environment, (write_end,))
        finally:
            os.close(write_end)
        return cls(revision, sink, process, read_end)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def _read(self, name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for raw in stream:
            text = raw.rstrip("\n")
            if text.startswith(END_OF_OUTPUT):
                self._ended[name].set()
                continue
            try:
                self.sink.line(name, text, self.revision.name, self.request_id)
            except Exception as exc:  # a malformed EMF line must not silence the worker
                self.sink.record(
                    {
                        "timestamp": _now_text(),
                        "level": "WARNING",
                        "function_name": self.revision.name,
                        "function_request_id": self.request_id,
                        "message": f"log line not processed ({type(exc).__name__}: {exc})",
                        "line": text[:2000],
                    }
                )
        self._ended[name].set()

    def invoke(self, request_id: str, payload: bytes) -> dict[str, Any] | None:
        """Send one request and wait for its answer; ``None`` if the worker died or timed out."""
        self.request_id = request_id
        for event in self._ended.values():
            event.clear()
        if not self._initialised:
            self._await_init()
        self.invoked_at = time.monotonic()
        deadline = time.time() + self.revision.timeout_s
        request = {
            "request_id": request_id,
            "payload": payload.decode("utf-8", errors="replace"),
            "deadline_ms": int(deadline * 1000),
            "function_arn": self.revision.arn,
        }
        stdin = self.process.stdin
        if stdin is None:  # opened with PIPE: only a closed worker has none
            return None
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._next_message(deadline)
        if line is not None and not self._initialised:  # an init that outlasted its limit
            self._take_init(line)
            line = self._next_message(deadline)
        if not line:
            return None
        for event in self._ended.values():
            event.wait(_OUTPUT_GRACE_S)
        try:
            answer: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            return None  # a torn answer: the runtime died while writing it
        return answer

    def _next_message(self, deadline: float) -> str | None:
        ready, _, _ = select.select([self._responses], [], [], max(0.0, deadline - time.time()))
        return self._responses.readline() if ready else None

    def _await_init(self) -> None:
        line = self._next_message(time.time() + INIT_LIMIT_S - (time.monotonic() - self.started))
        if line:
            self._take_init(line)

    def _take_init(self, line: str) -> None:
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError, ValueError):
            self.init_ms = float(json.loads(line)["init_ms"])
        self._initialised = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int:
        """End the worker and everything it started; its exit status (negative: a signal)."""
        # The whole group, even when the runtime itself has exited: what it started goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        status = int(self.process.wait())
        self._close()
        return status

    def retire(self) -> None:
        """Let an idle worker finish: closing its stdin ends the runtime's loop."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close()

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=1)
        with contextlib.suppress(OSError):
            self._responses.close()

    def cpu_ms_since_last_report(self) -> float | None:
        """CPU milliseconds the process used (user and system, every thread) since the
        last call: its init phase and the invocation, for the first."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        # utime and stime, fields 14 and 15 of proc_pid_stat(5), counted after the name.
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        used, self._cpu_reported = seconds - self._cpu_reported, seconds
        return used * 1000

    def peak_memory_mb(self) -> float | None:
        """The worker's peak resident memory so far (Lambda's "Max Memory Used")."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None


@dataclass
class _FunctionWorkers:
    slots: threading.BoundedSemaphore
    idle: list[_Worker] = field(default_factory=list)


class WorkerPool:
    """The execution environments of every function, started on demand and kept warm.

    Parameters
    ----------
    root
        Folder for unpacked code and layers (``<data dir>/local-aws/lambda``).
    sink
        The log file and metrics of every function.
    runtime_environment
        Variables every worker gets on top of the Lambda runtime's own: the
        service endpoint and credentials.
    concurrency
        Workers per function at most; default ``TOTES_LOCAL_LAMBDA_CONCURRENCY``
        or the number of cores.

    Examples
    --------
    >>> pool = WorkerPool(Path("lambda"), sink, {"AWS_ENDPOINT_URL": url})  # doctest: +SKIP
    >>> payload = pool.invoke(revision, b'{"table": "staff"}', headers := {})  # doctest: +SKIP
    """

    def __init__(
        self,
        root: Path,
        sink: LogSink,
        runtime_environment: Mapping[str, str],
        *,
        concurrency: int | None = None,
    ) -> None:
        self.sink = sink
        self.runtime_environment = dict(runtime_environment)
        self.concurrency = concurrency or _default_concurrency()
        self._unpacked = _Unpacked(root)
        self._functions: dict[str, _FunctionWorkers] = {}
        self._lock = threading.Lock()
        self._busy: set[_Worker] = set()
        self._closed = False

    def _workers_of(self, arn: str) -> _FunctionWorkers:
        with self._lock:
            if arn not in self._functions:
                self._functions[arn] = _FunctionWorkers(
                    threading.BoundedSemaphore(self.concurrency)
                )
            return self._functions[arn]

    def invoke(
        self, revision: FunctionRevision, payload: bytes, response_headers: dict[str, str]
    ) -> bytes:
        """Run one invocation in a worker and answer as the Lambda service does.

        A function error sets ``x-amz-function-error: Unhandled`` in
        ``response_headers`` and answers ``{"errorType", "errorMessage", ...}``.
        """
        # Per function, whichever version: another version's idle environments retire.
        workers = self._workers_of(revision.name)
        with workers.slots:
            worker = self._take(workers, revision)
            with self._lock:
                self._busy.add(worker)
            try:
                return self._run(worker, revision, payload, response_headers, workers)
            except BaseException:
                worker.kill()  # whatever went wrong, no worker is left unaccounted for
                raise
            finally:
                with self._lock:
                    self._busy.discard(worker)

    def _take(self, workers: _FunctionWorkers, revision: FunctionRevision) -> _Worker:
        fingerprint = revision.fingerprint
        with self._lock:
            if self._closed:
                raise WorkerPoolClosedError("the local Lambda service is shutting down")
            # Workers of another configuration are retired, dead ones reaped.
            stale = [w for w in workers.idle if w.revision.fingerprint != fingerprint]
            dead = [w for w in workers.idle if w not in stale and not w.alive()]
            workers.idle = [w for w in workers.idle if w not in stale and w not in dead]
            reusable = workers.idle.pop() if workers.idle else None
        for worker in stale:
            worker.retire()
        for worker in dead:
            worker.kill()
        if reusable is not None:
            return reusable
        return _Worker.cold(revision, self._environment(revision), self.sink)

    def _run(
        self,
        worker: _Worker,
        revision: FunctionRevision,
        payload: bytes,
        response_headers: dict[str, str],
        workers: _FunctionWorkers,
    ) -> bytes:
        request_id = str(uuid.uuid4())
        started = datetime.now(UTC)
        answer = worker.invoke(request_id, payload)
        # Lambda's duration leaves the init phase out; it is reported as its own figure.
        duration_ms = (time.monotonic() - worker.invoked_at) * 1000
        init_ms, worker.init_ms = worker.init_ms, None
        memory = worker.peak_memory_mb()
        cpu_ms = worker.cpu_ms_since_last_report()
        error_type: str | None
        if answer is None:
            timed_out = worker.alive() and duration_ms >= revision.timeout_s * 1000
            status = worker.kill()
            error = (
                _timed_out(request_id, revision.timeout_s)
                if timed_out
                else _exited(request_id, status)
            )
            body, error_type = json.dumps(error).encode(), str(error["errorType"])
            response_headers["x-amz-function-error"] = _UNHANDLED
        else:
            body = str(answer["payload"]).encode()
            error_type = None
            if not answer.get("ok"):
                response_headers["x-amz-function-error"] = _UNHANDLED
                error = json.loads(body) | {"requestId": request_id}
                error_type = str(error.get("errorType"))
                body = json.dumps(error).encode()
                self._log_error(revision, request_id, error)
            reuse = worker.alive() and not answer.get("init_failed")
            with self._lock:
                reuse = reuse and not self._closed
                if reuse:
                    workers.idle.append(worker)
            if not reuse:
                worker.kill()
        response_headers["x-amz-executed-version"] = revision.version
        report = InvocationReport(
            function_name=revision.name,
            request_id=request_id,
            started=started,
            ended=datetime.now(UTC),
            duration_ms=duration_ms,
            init_ms=init_ms,
            error_type=error_type,
            max_memory_used_mb=memory,
            worker_pid=worker.pid,
            cpu_ms=cpu_ms,
        )
        self.sink.record(report.to_record(revision))
        return body

    def _log_error(
        self, revision: FunctionRevision, request_id: str, error: Mapping[str, Any]
    ) -> None:
        self.sink.record(
            {
                "timestamp": _now_text(),
                "level": "ERROR",
                "function_name": revision.name,
                "function_request_id": request_id,
                "message": f"{error.get('errorType')}: {error.get('errorMessage')}",
                "errorType": error.get("errorType"),
                "stackTrace": error.get("stackTrace"),
            }
        )

    def _environment(self, revision: FunctionRevision) -> dict[str, str]:
        task_root = self._unpacked.folder("code", revision.code_sha256, revision.code)
        layer_paths = [
            str(self._unpacked.folder("layers", sha, content) / "python")
            for sha, content in revision.layers
        ]
        inherited = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        region = self.runtime_environment.get("AWS_REGION", "eu-west-2")
        return {
            **inherited,
            **self.runtime_environment,
            "AWS_DEFAULT_REGION": region,
            # Credentials of the function's own, as its role gives it on AWS: the service
            # tells its calls apart by them (see totes_local.runtime.call_trail).
            "AWS_ACCESS_KEY_ID": revision.name,
            "AWS_LAMBDA_FUNCTION_NAME": revision.name,
            "AWS_LAMBDA_FUNCTION_VERSION": revision.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(revision.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(revision.timeout_s)),
            "AWS_LAMBDA_LOG_GROUP_NAME": revision.log_group,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python_local",
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(_BOOTSTRAP.parent),
            "TZ": ":UTC",
            "_HANDLER": revision.handler,
            "TOTES_LOCAL_LAYER_PATHS": os.pathsep.join(layer_paths),
            **revision.environment,
        }

    def worker_pids(self) -> list[int]:
        """The processes of every worker, idle or busy (for ``totes status``)."""
        with self._lock:
            idle = [w for f in self._functions.values() for w in f.idle]
            return sorted({w.pid for w in [*idle, *self._busy] if w.alive()})

    def shutdown(self) -> None:
        """End every worker, idle and busy."""
        with self._lock:
            self._closed = True
            workers = [w for f in self._functions.values() for w in f.idle] + list(self._busy)
            for function in self._functions.values():
                function.idle = []
        for worker in workers:
            worker.kill()


def _default_concurrency() -> int:
    configured = os.environ.get(CONCURRENCY_VARIABLE)
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


def _timed_out(request_id: str, timeout_s: float) -> dict[str, Any]:
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
        f"{timeout_s:.2f} seconds",
        "requestId": request_id,
    }


def _exited(request_id: str, status: int) -> dict[str, Any]:
    how = f"signal: {_signal_name(-status)}" if status < 0 else f"exit status {status}"
    return {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
        "requestId": request_id,
    }


def _signal_name(number: int) -> str:
    # Lambda writes Go's names: "signal: killed", "signal: segmentation fault", ...
    names = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault"}
    with contextlib.suppress(ValueError):
        return names.get(signal.Signals(number), signal.Signals(number).name.lower())
    return str(number)
