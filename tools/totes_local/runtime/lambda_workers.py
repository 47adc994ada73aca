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
  the function name and request id, and every EMF line becomes metric values;
- a published version of a function with SnapStart is initialised once, when it is
  published, in a snapshot process; its environments are forked from that process
  (restored) instead of importing the handler again, and report a restore duration
  instead of an init duration.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import select
import signal
import socket
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
class FunctionSnapshot:
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
    #: A published version of a function whose SnapStart applies to published versions.
    snap_start: bool = False

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
            str(self.snap_start),
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
    #: Milliseconds to restore the environment from its version's snapshot (SnapStart).
    restore_ms: float | None = None

    def to_record(self, snapshot: FunctionSnapshot) -> dict[str, Any]:
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
            "restore_duration_ms": (
                round(self.restore_ms, 1) if self.restore_ms is not None else None
            ),
            "memory_size_mb": snapshot.memory_mb,
            "max_memory_used_mb": self.max_memory_used_mb,
            "timeout_s": snapshot.timeout_s,
            "worker_pid": self.worker_pid,
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

    ``process`` is a :class:`subprocess.Popen` of the runtime (a cold start) or a
    :class:`_RestoredProcess` forked from a snapshot; ``responses`` is the read end of
    its response pipe.
    """

    def __init__(
        self,
        snapshot: FunctionSnapshot,
        sink: LogSink,
        process: Any,
        responses: int,
        *,
        started: float | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.sink = sink
        self.process = process
        self._responses = os.fdopen(responses, "r", encoding="utf-8", errors="replace")
        #: When the environment was asked for (before a restore, whose time counts).
        self.started = time.monotonic() if started is None else started
        self.request_id: str | None = None
        #: The init phase's milliseconds, until the first invocation's report takes them.
        self.init_ms: float | None = None
        #: Likewise the restore from a snapshot's, for an environment restored from one.
        self.restore_ms: float | None = None
        self._initialised = False
        #: When the current invocation's timeout began (after any init phase).
        self.invoked_at = self.started
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
        cls, snapshot: FunctionSnapshot, environment: dict[str, str], sink: LogSink
    ) -> _Worker:
        """A new environment that imports the handler itself (a cold start)."""
        read_end, write_end = os.pipe()
        try:
            process = _popen([str(write_end)], environment, (write_end,))
        finally:
            os.close(write_end)
        return cls(snapshot, sink, process, read_end)

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
                self.sink.line(name, text, self.snapshot.name, self.request_id)
            except Exception as exc:  # a malformed EMF line must not silence the worker
                self.sink.record(
                    {
                        "timestamp": _now_text(),
                        "level": "WARNING",
                        "function_name": self.snapshot.name,
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
        deadline = time.time() + self.snapshot.timeout_s
        request = {
            "request_id": request_id,
            "payload": payload.decode("utf-8", errors="replace"),
            "deadline_ms": int(deadline * 1000),
            "function_arn": self.snapshot.arn,
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
            phase = json.loads(line)
            if phase.get("restored"):
                self.restore_ms = (time.monotonic() - self.started) * 1000
            else:
                self.init_ms = float(phase["init_ms"])
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


class SnapshotFailedError(RuntimeError):
    """A version's snapshot process ended, or could not restore an environment."""


class _RestoredProcess:
    """An environment forked from a snapshot process: the part of Popen's interface used.

    Only the snapshot process can wait for it, so its exit status comes from there.
    """

    def __init__(self, pid: int, pipes: tuple[int, int, int], snapshot: _SnapshotProcess):
        stdin, stdout, stderr = pipes
        self.pid = pid
        self.stdin: IO[str] | None = os.fdopen(stdin, "w", encoding="utf-8")
        self.stdout: IO[str] | None = os.fdopen(stdout, "r", encoding="utf-8", errors="replace")
        self.stderr: IO[str] | None = os.fdopen(stderr, "r", encoding="utf-8", errors="replace")
        self._snapshot = snapshot

    def poll(self) -> int | None:
        return self._snapshot.exit_status(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        status = self._snapshot.wait_for_exit(self.pid, timeout)
        if status is None:
            raise subprocess.TimeoutExpired(f"restored environment {self.pid}", timeout or 0)
        return status


class _SnapshotProcess:
    """The snapshot of one published version: initialised once, restored per environment.

    Lambda takes a snapshot of the initialised environment when a version with
    SnapStart is published; here the initialised runtime process itself is kept, and
    each new environment is a fork of it (see :mod:`lambda_bootstrap`).
    """

    def __init__(
        self, snapshot: FunctionSnapshot, environment: dict[str, str], sink: LogSink
    ) -> None:
        self.snapshot = snapshot
        self.sink = sink
        ours, theirs = socket.socketpair()
        try:
            self.process = _popen(
                ["--snapshot", str(theirs.fileno())], environment, (theirs.fileno(),)
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self._socket = ours
        self._restoring = threading.Lock()
        self._restored: queue.Queue[int | None] = queue.Queue()
        self._changed = threading.Condition()
        self._statuses: dict[int, int] = {}
        self._closed = False
        self.ready = threading.Event()
        self.init_ms: float | None = None
        self.init_error: dict[str, Any] | None = None
        self._threads = [
            threading.Thread(target=self._read_messages, daemon=True),
            *(
                threading.Thread(target=self._read_output, args=(name, stream), daemon=True)
                for name, stream in (
                    ("stdout", self.process.stdout),
                    ("stderr", self.process.stderr),
                )
            ),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def ended_unexpectedly(self) -> bool:
        """The process ended after a successful init (killed): a new snapshot is needed."""
        return self._closed and self.ready.is_set() and self.init_error is None

    @property
    def state(self) -> str:
        """The version's state as Lambda reports it: Pending, Active or Failed."""
        if not self.ready.is_set():
            return "Pending"
        return "Failed" if self.init_error is not None or self._closed else "Active"

    def _read_output(self, name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for raw in stream:
            self.sink.line(name, raw.rstrip("\n"), self.snapshot.name, None)

    def _read_messages(self) -> None:
        with self._socket.makefile("r", encoding="utf-8") as messages:
            for line in messages:
                message = json.loads(line)
                if "init_ms" in message:
                    self.init_ms = float(message["init_ms"])
                    self.init_error = message.get("init_error")
                    if self.init_error is not None:
                        self._log_init_error(self.init_error)
                    self.ready.set()
                elif "restored" in message:
                    self._restored.put(int(message["restored"]))
                elif "exited" in message:
                    with self._changed:
                        self._statuses[int(message["exited"])] = int(message["status"])
                        self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._restored.put(None)
        self.ready.set()

    def _log_init_error(self, error: Mapping[str, Any]) -> None:
        self.sink.record(
            {
                "timestamp": _now_text(),
                "level": "ERROR",
                "function_name": self.snapshot.name,
                "function_version": self.snapshot.version,
                "message": f"snapshot init failed: {error.get('errorType')}: "
                f"{error.get('errorMessage')}",
                "errorType": error.get("errorType"),
                "stackTrace": error.get("stackTrace"),
            }
        )

    def restore(self) -> tuple[_RestoredProcess, int]:
        """A new environment forked from the snapshot, and the read end of its responses.

        Raises
        ------
        SnapshotFailedError
            The snapshot process has ended or did not answer.
        """
        ours: list[int] = []
        theirs: list[int] = []
        for _ in range(4):
            read_end, write_end = os.pipe()
            ours.append(read_end)
            theirs.append(write_end)
        # stdin is written by the service; stdout, stderr and responses are read by it.
        ours[0], theirs[0] = theirs[0], ours[0]
        try:
            with self._restoring:
                if self._closed:
                    raise SnapshotFailedError(f"the snapshot of {self.snapshot.name} has ended")
                socket.send_fds(self._socket, [b"R"], theirs)
                pid = self._restored.get(timeout=INIT_LIMIT_S)
        except (OSError, queue.Empty) as exc:
            for descriptor in ours:
                os.close(descriptor)
            raise SnapshotFailedError(
                f"the snapshot of {self.snapshot.name} did not restore"
            ) from exc
        finally:
            for descriptor in theirs:
                os.close(descriptor)
        if pid is None:
            for descriptor in ours:
                os.close(descriptor)
            raise SnapshotFailedError(f"the snapshot of {self.snapshot.name} has ended")
        return _RestoredProcess(pid, (ours[0], ours[1], ours[2]), self), ours[3]

    def exit_status(self, pid: int) -> int | None:
        """The exit status of a restored environment, ``None`` while it runs."""
        with self._changed:
            if pid in self._statuses:
                return self._statuses[pid]
            if self._closed and not _exists(pid):
                return -signal.SIGKILL  # reaped by another parent once the snapshot ended
            return None

    def wait_for_exit(self, pid: int, timeout: float | None) -> int | None:
        """Wait until ``pid`` has ended; its exit status, or ``None`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                status = self.exit_status(pid)
                if status is not None:  # kept: poll() must go on saying it has ended
                    return status
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(0.1 if left is None else min(left, 0.1))

    def close(self) -> None:
        """End the snapshot process, once (the pool ends the environments restored from it)."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        if self.process.returncode is None:  # never a process id that was reused since
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for thread in self._threads:
            thread.join(timeout=1)
        self._socket.close()


def _exists(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie has ended: only its parent has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


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
    >>> payload = pool.invoke(snapshot, b'{"table": "staff"}', headers := {})  # doctest: +SKIP
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
        #: The snapshot of each function's newest published version with SnapStart.
        self._snapshots: dict[str, _SnapshotProcess] = {}
        self._snapshotting = threading.Lock()

    def _workers_of(self, arn: str) -> _FunctionWorkers:
        with self._lock:
            if arn not in self._functions:
                self._functions[arn] = _FunctionWorkers(
                    threading.BoundedSemaphore(self.concurrency)
                )
            return self._functions[arn]

    def invoke(
        self, snapshot: FunctionSnapshot, payload: bytes, response_headers: dict[str, str]
    ) -> bytes:
        """Run one invocation in a worker and answer as the Lambda service does.

        A function error sets ``x-amz-function-error: Unhandled`` in
        ``response_headers`` and answers ``{"errorType", "errorMessage", ...}``.
        """
        # Per function, whichever version: another version's idle environments retire.
        workers = self._workers_of(snapshot.name)
        with workers.slots:
            worker = self._take(workers, snapshot)
            with self._lock:
                self._busy.add(worker)
            try:
                return self._run(worker, snapshot, payload, response_headers, workers)
            except BaseException:
                worker.kill()  # whatever went wrong, no worker is left unaccounted for
                raise
            finally:
                with self._lock:
                    self._busy.discard(worker)

    def _take(self, workers: _FunctionWorkers, snapshot: FunctionSnapshot) -> _Worker:
        fingerprint = snapshot.fingerprint
        with self._lock:
            if self._closed:
                raise WorkerPoolClosedError("the local Lambda service is shutting down")
            # Workers of another configuration are retired, dead ones reaped.
            stale = [w for w in workers.idle if w.snapshot.fingerprint != fingerprint]
            dead = [w for w in workers.idle if w not in stale and not w.alive()]
            workers.idle = [w for w in workers.idle if w not in stale and w not in dead]
            reusable = workers.idle.pop() if workers.idle else None
        for worker in stale:
            worker.retire()
        for worker in dead:
            worker.kill()
        if reusable is not None:
            return reusable
        if snapshot.snap_start:
            taken = self._snapshot_of(snapshot)
            if not taken.ready.wait(max(INIT_LIMIT_S, snapshot.timeout_s)):
                raise SnapshotFailedError(f"the snapshot of {snapshot.name} is not ready")
            if taken.init_error is None:
                requested = time.monotonic()
                try:
                    process, responses = taken.restore()
                except SnapshotFailedError:
                    with self._lock:  # the next invocation takes a new snapshot
                        if self._snapshots.get(snapshot.name) is taken:
                            del self._snapshots[snapshot.name]
                    taken.close()
                    raise
                return _Worker(snapshot, self.sink, process, responses, started=requested)
            # A version whose init fails has no snapshot: each environment fails as its own.
        return _Worker.cold(snapshot, self._environment(snapshot), self.sink)

    def prepare(self, snapshot: FunctionSnapshot) -> None:
        """Begin the snapshot of a version just published (SnapStart); no wait."""
        if snapshot.snap_start:
            self._snapshot_of(snapshot)

    def version_state(self, snapshot: FunctionSnapshot) -> str:
        """``Pending`` while a SnapStart version's snapshot initialises, then ``Active``
        (or ``Failed`` if its init failed); ``Active`` for any other version."""
        if not snapshot.snap_start:
            return "Active"
        with self._lock:
            current = self._snapshots.get(snapshot.name)
        if current is None or current.snapshot.fingerprint != snapshot.fingerprint:
            return "Active"  # an older version, or one not snapshotted since a restart
        return current.state

    def _snapshot_of(self, snapshot: FunctionSnapshot) -> _SnapshotProcess:
        # Snapshots start one at a time, outside the pool's lock: invocations go on meanwhile.
        with self._snapshotting:
            with self._lock:
                if self._closed:
                    raise WorkerPoolClosedError("the local Lambda service is shutting down")
                current = self._snapshots.get(snapshot.name)
                if (
                    current is not None
                    and current.snapshot.fingerprint == snapshot.fingerprint
                    and not current.ended_unexpectedly
                ):
                    return current
            taken = _SnapshotProcess(snapshot, self._environment(snapshot), self.sink)
            with self._lock:
                closed = self._closed
                if not closed:
                    # One version's snapshot per function: an older version's goes with it.
                    self._snapshots[snapshot.name] = taken
            if closed:
                taken.close()
                raise WorkerPoolClosedError("the local Lambda service is shutting down")
        if current is not None:
            current.close()
        return taken

    def _run(
        self,
        worker: _Worker,
        snapshot: FunctionSnapshot,
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
        restore_ms, worker.restore_ms = worker.restore_ms, None
        memory = worker.peak_memory_mb()
        error_type: str | None
        if answer is None:
            timed_out = worker.alive() and duration_ms >= snapshot.timeout_s * 1000
            status = worker.kill()
            error = (
                _timed_out(request_id, snapshot.timeout_s)
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
                self._log_error(snapshot, request_id, error)
            reuse = worker.alive() and not answer.get("init_failed")
            with self._lock:
                reuse = reuse and not self._closed
                if reuse:
                    workers.idle.append(worker)
            if not reuse:
                worker.kill()
        response_headers["x-amz-executed-version"] = snapshot.version
        report = InvocationReport(
            function_name=snapshot.name,
            request_id=request_id,
            started=started,
            ended=datetime.now(UTC),
            duration_ms=duration_ms,
            init_ms=init_ms,
            error_type=error_type,
            max_memory_used_mb=memory,
            worker_pid=worker.pid,
            restore_ms=restore_ms,
        )
        self.sink.record(report.to_record(snapshot))
        return body

    def _log_error(
        self, snapshot: FunctionSnapshot, request_id: str, error: Mapping[str, Any]
    ) -> None:
        self.sink.record(
            {
                "timestamp": _now_text(),
                "level": "ERROR",
                "function_name": snapshot.name,
                "function_request_id": request_id,
                "message": f"{error.get('errorType')}: {error.get('errorMessage')}",
                "errorType": error.get("errorType"),
                "stackTrace": error.get("stackTrace"),
            }
        )

    def _environment(self, snapshot: FunctionSnapshot) -> dict[str, str]:
        task_root = self._unpacked.folder("code", snapshot.code_sha256, snapshot.code)
        layer_paths = [
            str(self._unpacked.folder("layers", sha, content) / "python")
            for sha, content in snapshot.layers
        ]
        inherited = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        region = self.runtime_environment.get("AWS_REGION", "eu-west-2")
        return {
            **inherited,
            **self.runtime_environment,
            "AWS_DEFAULT_REGION": region,
            # Credentials of the function's own, as its role gives it on AWS: the service
            # tells its calls apart by them (see totes_local.runtime.call_trail).
            "AWS_ACCESS_KEY_ID": snapshot.name,
            "AWS_LAMBDA_FUNCTION_NAME": snapshot.name,
            "AWS_LAMBDA_FUNCTION_VERSION": snapshot.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(snapshot.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(snapshot.timeout_s)),
            "AWS_LAMBDA_LOG_GROUP_NAME": snapshot.log_group,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python_local",
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(_BOOTSTRAP.parent),
            "TZ": ":UTC",
            "_HANDLER": snapshot.handler,
            "TOTES_LOCAL_LAYER_PATHS": os.pathsep.join(layer_paths),
            **snapshot.environment,
        }

    def worker_pids(self) -> list[int]:
        """The processes of every worker, idle or busy, and of every snapshot (for
        ``totes status``)."""
        with self._lock:
            idle = [w for f in self._functions.values() for w in f.idle]
            workers = {w.pid for w in [*idle, *self._busy] if w.alive()}
            snapshots = {
                s.process.pid for s in self._snapshots.values() if s.process.poll() is None
            }
            return sorted(workers | snapshots)

    def shutdown(self) -> None:
        """End every worker, idle and busy."""
        with self._lock:
            self._closed = True
            workers = [w for f in self._functions.values() for w in f.idle] + list(self._busy)
            for function in self._functions.values():
                function.idle = []
            snapshots = list(self._snapshots.values())
            self._snapshots.clear()
        for worker in workers:
            worker.kill()
        for snapshot in snapshots:
            snapshot.close()


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
