"""The local AWS service: moto in server mode in a background process, with Lambda workers.

``totes run`` starts it when none is running for its data folder and leaves it
running, like the embedded PostgreSQL; ``totes stop`` stops it. The service process
holds ``<data dir>/local-aws/service.lock`` (an exclusive ``flock``, with its pid in
it) for as long as it lives: the kernel releases it when the process ends, however it
ends, so a service of the data folder can always be found, even one whose ``totes run``
was killed while it started, and never two run side by side. While it runs,
everything a deployed stack keeps persists between ``totes run`` invocations:
buckets, watermarks, transform state, rejects, execution history, metrics and
SNS messages. It listens on 127.0.0.1 only, on a free port recorded in
``<data dir>/local-aws/service.json``.

Run as ``python -m totes_local.runtime.service --data-dir DIR``; the functions
here that a client calls (:func:`ensure_service`, :func:`find_service`,
:func:`stop_service`) never touch moto's internals: they start and stop the
process and ask it questions over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import os
import signal
import socket
import subprocess  # nosec B404
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from totes.errors import TotesError
from totes_local.runtime.call_trail import CALL_TRAIL_VARIABLE, CallTrail
from totes_local.runtime.platform import LOCAL_ACCOUNT, LOCAL_REGION

#: Credentials every client of the local service uses; moto accepts any, so they are
#: placeholders, not secrets.
LOCAL_CREDENTIALS = dict.fromkeys(
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "local"
)
_HOST = "127.0.0.1"
#: Where the service answers the messages its SNS topics received (unsigned GET).
NOTIFICATIONS_PATH = "/totes-local/notifications"
_STATE_FILE = "service.json"
_LOCK_FILE = "service.lock"
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
#: Requests served at once. Some are held while they wait (a history page for its next
#: event, an invoke through the Lambda API) and the Lambda workers' own requests must
#: still be served meanwhile.
_HTTP_THREADS = 64
#: Connections kept open at once: a few per warm Lambda worker, the CLI's and the tests'.
#: A connection idle this long is closed (a client reconnects), so a full server makes
#: a new client wait at most that long.
_HTTP_CONNECTIONS = 256
_HTTP_IDLE_TIMEOUT_S = 30
#: What a stopping server gives the requests in flight (a held history page waits up
#: to a second); a request still running then ends with the process.
_HTTP_DRAIN_S = 1.5
#: Request and response bodies stay in memory, where moto keeps objects anyway (waitress
#: spools a body over 1 MB to a temporary file), and move in large reads and writes.
_HTTP_BODY_IN_MEMORY = 1 << 30
_HTTP_RECV_BYTES = 1 << 20
_HTTP_SEND_BYTES = 1 << 22
#: moto with its Step Functions interpreter on and Lambda answered without Docker.
_MOTO_CONFIG = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


class LocalServiceError(TotesError):
    """The local AWS service did not start, or does not answer."""


@dataclass(frozen=True)
class ServiceInfo:
    """A running local AWS service: its process, port and data folder."""

    pid: int
    port: int
    data_dir: Path
    started: str
    moto_version: str

    @property
    def endpoint(self) -> str:
        """The URL every AWS client of the local service uses."""
        return f"http://{_HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        """The Lambda worker processes the service runs now: its children, and theirs."""
        children = _children_of(self.pid)
        return sorted({*children, *(pid for child in children for pid in _children_of(child))})


def service_folder(data_dir: Path) -> Path:
    """Where the service keeps its state file and unpacked Lambda code."""
    return data_dir / "local-aws"


def handler_log_path(data_dir: Path) -> Path:
    """The JSON-lines file that receives every handler's logs and metrics."""
    return data_dir / "logs" / "pipeline.jsonl"


def _state_path(data_dir: Path) -> Path:
    return service_folder(data_dir) / _STATE_FILE


def _lock_holder(data_dir: Path) -> int | None:
    """The pid of the service process of ``data_dir``, or None when none runs.

    0 when a process holds the lock but has not written its pid yet (it is starting).
    """
    try:
        handle = (service_folder(data_dir) / _LOCK_FILE).open(encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


#: The environment variable that hands the service process the lock its starter took.
_LOCK_FD_VARIABLE = "TOTES_LOCAL_SERVICE_LOCK_FD"


def _take_service_lock(data_dir: Path) -> Any | None:
    """The data folder's service lock, taken; None if a service holds it.

    Tried for a moment: a reader (``totes status``) holds it shared for an instant.
    """
    folder = service_folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / _LOCK_FILE).open("a+", encoding="utf-8")
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline or _lock_holder(data_dir):
                handle.close()
                return None
            time.sleep(0.02)
        else:
            return handle


def _record_holder(handle: Any, pid: int) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(str(pid))
    handle.flush()


def _read_state(data_dir: Path) -> ServiceInfo | None:
    try:
        state = json.loads(_state_path(data_dir).read_text(encoding="utf-8"))
        return ServiceInfo(
            pid=int(state["pid"]),
            port=int(state["port"]),
            data_dir=data_dir,
            started=str(state["started"]),
            moto_version=str(state["moto_version"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is no service.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def _serves(info: ServiceInfo) -> bool:
    """Whether the recorded process is alive and is this data folder's service.

    A pid in a stale state file may since belong to another process (after a crash or
    a reboot); nothing is ever signalled unless its command line is the service's.
    """
    if not _alive(info.pid):
        return False
    try:
        words = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    command = [word.decode(errors="replace") for word in words]
    return "totes_local.runtime.service" in command and str(info.data_dir) in command


def _answers(endpoint: str, *, attempts: int = 1) -> bool:
    for attempt in range(attempts):
        try:
            # Loopback only, the service's own health question.
            with urllib.request.urlopen(f"{endpoint}/moto-api/config", timeout=2):  # noqa: S310  # nosec B310
                return True
        except (OSError, urllib.error.URLError):
            if attempt + 1 < attempts:
                time.sleep(1)
    return False


@contextlib.contextmanager
def _lifecycle_lock(data_dir: Path) -> Iterator[None]:
    """One start or stop of a data folder's service at a time, across processes."""
    folder = service_folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lifecycle.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unanswering_service(data_dir: Path) -> int | None:
    """The pid of a service of ``data_dir`` that runs but does not answer (yet), if any.

    Examples
    --------
    >>> unanswering_service(Path("/nonexistent")) is None
    True
    """
    data_dir = data_dir.resolve()
    if find_service(data_dir) is not None:
        return None
    return _lock_holder(data_dir)


def find_service(data_dir: Path) -> ServiceInfo | None:
    """The service of ``data_dir`` if one runs and answers, else ``None``.

    Examples
    --------
    >>> find_service(Path("/nonexistent")) is None
    True
    """
    info = _read_state(data_dir.resolve())
    if info is None or not _serves(info) or not _answers(info.endpoint):
        return None
    return info


@dataclass(frozen=True)
class ServiceStart:
    """What :func:`ensure_service` found: the service, and whether it had to start one."""

    service: ServiceInfo
    started: bool
    #: A state file named a service that no longer ran (it died or was killed).
    replaced_dead: bool


def ensure_service(data_dir: Path) -> ServiceStart:
    """Use the running service of ``data_dir``, or start one in the background.

    Raises
    ------
    LocalServiceError
        The service did not answer within a minute (its log is quoted).

    Examples
    --------
    >>> ensure_service(Path(".totes")).service.endpoint  # doctest: +SKIP
    'http://127.0.0.1:40321'
    """
    data_dir = data_dir.resolve()
    with _lifecycle_lock(data_dir):
        running = find_service(data_dir)
        if running is not None:
            return ServiceStart(running, started=False, replaced_dead=False)
        stale = _read_state(data_dir)
        holder = _lock_holder(data_dir)
        if holder is not None:
            # Alive but not answering: starting (the `totes run` that started it may have
            # been killed), busy, or hung. Waited for before it is replaced, since
            # replacing it discards every bucket and watermark it holds.
            answering = _answering_within(data_dir, _START_TIMEOUT_S)
            if answering is not None:
                return ServiceStart(answering, started=False, replaced_dead=False)
            _terminate(_lock_holder(data_dir) or holder)
        _state_path(data_dir).unlink(missing_ok=True)
        return _start(data_dir, replaced_dead=stale is not None)


def _answering_within(data_dir: Path, seconds: float) -> ServiceInfo | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find_service(data_dir)
        if found is not None:
            return found
        if _lock_holder(data_dir) is None:
            return None  # it ended
        time.sleep(0.1)
    return None


def _start(data_dir: Path, *, replaced_dead: bool) -> ServiceStart:
    log_path = data_dir / "logs" / "local-aws.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The lock is taken here and handed to the service process, which keeps it: from the
    # moment it is started, a service can be found, whenever this process is killed.
    lock = _take_service_lock(data_dir)
    if lock is None:
        found = _answering_within(data_dir, _START_TIMEOUT_S)
        if found is not None:
            return ServiceStart(found, started=False, replaced_dead=replaced_dead)
        raise LocalServiceError(
            f"a local AWS service of {data_dir} holds its lock but never answered"
        )
    with lock, log_path.open("a", encoding="utf-8") as log:
        # A fixed command: this interpreter running this module.
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            [sys.executable, "-m", "totes_local.runtime.service", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            pass_fds=(lock.fileno(),),
            env={**os.environ, **LOCAL_CREDENTIALS, _LOCK_FD_VARIABLE: str(lock.fileno())},
        )
        _record_holder(lock, process.pid)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = _read_state(data_dir)
        if info is not None and info.pid == process.pid and _answers(info.endpoint):
            return ServiceStart(info, started=True, replaced_dead=replaced_dead)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    tail = "\n".join(log_path.read_text(encoding="utf-8").splitlines()[-12:])
    raise LocalServiceError(f"the local AWS service did not start ({log_path}):\n{tail}")


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def stop_service(data_dir: Path) -> ServiceInfo | None:
    """Stop the service of ``data_dir`` and its workers; what was stopped, if anything.

    Examples
    --------
    >>> stop_service(Path("/nonexistent")) is None
    True
    """
    data_dir = data_dir.resolve()
    with _lifecycle_lock(data_dir):
        holder = _lock_holder(data_dir)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while holder == 0 and time.monotonic() < deadline:  # it has just started
            time.sleep(0.05)
            holder = _lock_holder(data_dir)
        info = _read_state(data_dir)
        if not holder:
            _state_path(data_dir).unlink(missing_ok=True)
            return None
        if info is None or info.pid != holder:
            # Never answered: stopped all the same, by the pid it holds the lock with.
            info = ServiceInfo(holder, port=0, data_dir=data_dir, started="", moto_version="")
        workers = info.worker_pids()
        _terminate(holder)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _state_path(data_dir).unlink(missing_ok=True)
        return info


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(stat.parent.name))
    return sorted(children)


# -- the service process -----------------------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 no one listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def serve(data_dir: Path, port: int = 0) -> None:
    """Run the service in this process until SIGTERM or SIGINT.

    Examples
    --------
    >>> serve(Path(".totes"))  # doctest: +SKIP
    """
    from importlib import metadata  # noqa: PLC0415

    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        create_backend_app,
    )

    from totes_local.runtime import moto_patches  # noqa: PLC0415
    from totes_local.runtime.lambda_workers import LogSink, WorkerPool  # noqa: PLC0415

    data_dir = data_dir.resolve()
    handed = os.environ.pop(_LOCK_FD_VARIABLE, None)
    # Kept open (and so locked) for as long as this process lives.
    held = os.fdopen(int(handed), "a+") if handed else _take_service_lock(data_dir)
    if held is None:
        print(f"another local AWS service runs for {data_dir}: not starting", flush=True)
        return
    _record_holder(held, os.getpid())
    port = port or free_port()
    endpoint = f"http://{_HOST}:{port}"
    # moto's Step Functions interpreter calls other services (SNS) through this port.
    os.environ["MOTO_PORT"] = str(port)
    os.environ.update(LOCAL_CREDENTIALS)
    sink = LogSink(
        handler_log_path(data_dir), moto_patches.metric_sink(LOCAL_ACCOUNT, LOCAL_REGION)
    )
    pool = WorkerPool(
        service_folder(data_dir) / "lambda",
        sink,
        {
            **LOCAL_CREDENTIALS,
            "AWS_REGION": LOCAL_REGION,
            "AWS_ENDPOINT_URL": endpoint,
        },
    )
    moto_patches.install(pool.invoke)
    app: Any = DomainDispatcherApplication(create_backend_app)
    trail = os.environ.get(CALL_TRAIL_VARIABLE)
    if trail:
        app = CallTrail(
            app,
            Path(trail),
            account=LOCAL_ACCOUNT,
            local_key=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        )
    server = HttpServer(_with_notifications(app), port)
    # What is loaded by now (moto, botocore's service models, the patches) lives as long as
    # the process: kept out of the collector's full passes, which walked all of it (about
    # 176,000 objects, 180 ms under the interpreter lock, holding every request) once or
    # twice an execution; such a pass now walks what executions add (50 ms).
    gc.collect()
    gc.freeze()
    server.start()
    stopping = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stopping.set())
    try:
        request = urllib.request.Request(  # noqa: S310 (loopback, our own server)
            f"{endpoint}/moto-api/config",
            data=json.dumps(_MOTO_CONFIG).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310  # nosec B310
            pass
        state = {
            "pid": os.getpid(),
            "port": port,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "moto_version": metadata.version("moto"),
        }
        path = _state_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps(state), encoding="utf-8")
        staging.replace(path)
        print(f"{state['started']} local AWS service on {endpoint} (pid {os.getpid()})", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        # No new request once the pool is ending: the server stops first. An invoke of a
        # running execution then fails as the Lambda service's own failure would.
        server.stop()
        pool.shutdown()
        sink.close()
        info = _read_state(data_dir)
        if info is not None and info.pid == os.getpid():
            _state_path(data_dir).unlink(missing_ok=True)
        print(f"{datetime.now(UTC).isoformat(timespec='seconds')} stopped", flush=True)


class HttpServer:
    """moto's application served by waitress on 127.0.0.1, from a thread of its own.

    moto's own server is Werkzeug's development server, which closes the connection
    after every response and starts a thread for each: every request of every handler
    paid a new TCP connection and a thread. Waitress keeps connections alive, as AWS
    endpoints do, and serves them from a pool of threads.
    """

    def __init__(self, app: Any, port: int) -> None:
        from waitress.server import create_server  # noqa: PLC0415

        self._connections: dict[int, Any] = {}
        self._server = create_server(
            _with_raw_uri(app),
            map=self._connections,
            host=_HOST,
            port=port,
            threads=_HTTP_THREADS,
            connection_limit=_HTTP_CONNECTIONS,
            channel_timeout=_HTTP_IDLE_TIMEOUT_S,
            inbuf_overflow=_HTTP_BODY_IN_MEMORY,
            outbuf_overflow=_HTTP_BODY_IN_MEMORY,
            recv_bytes=_HTTP_RECV_BYTES,
            send_bytes=_HTTP_SEND_BYTES,
            ident="local-aws",
        )
        self._thread = threading.Thread(target=self._server.run, name="local-aws-http", daemon=True)

    def start(self) -> None:
        """Serve from now on."""
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every connection, then end the request threads."""
        from waitress import wasyncore  # noqa: PLC0415

        # Sockets belong to the server's thread: closed there, between two of its polls.
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._connections))
        self._thread.join(_STOP_TIMEOUT_S)
        self._server.task_dispatcher.shutdown(timeout=_HTTP_DRAIN_S)


def _with_raw_uri(app: Any) -> Any:
    """``app`` given the request's path as it arrived, where moto looks for it.

    moto reads the undecoded path from ``RAW_URI``, which Werkzeug's server sets and
    waitress calls ``REQUEST_URI``; without it, an S3 key holding ``?`` or an escaped
    ``%`` would be decoded twice.
    """

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        return app(environ, start_response)

    return application


def _with_notifications(app: Any) -> Any:
    """``app``, also answering ``GET /totes-local/notifications`` (unsigned, from 127.0.0.1).

    The answer is the messages the stack's topics received, as JSON: what the alert
    e-mails said, which ``totes ui`` shows after ``totes run`` has printed them.
    """
    from totes_local.runtime import moto_patches  # noqa: PLC0415

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == NOTIFICATIONS_PATH and environ.get("REQUEST_METHOD") in (
            "GET",
            "HEAD",
        ):
            body = json.dumps(moto_patches.sent_notifications(LOCAL_ACCOUNT, LOCAL_REGION))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        return app(environ, start_response)

    return application


def sent_notifications(endpoint: str) -> list[dict[str, str | None]]:
    """The messages the local service's SNS topics received, oldest first per topic.

    Examples
    --------
    >>> [note["subject"] for note in sent_notifications("http://127.0.0.1:4566")]
    ... # doctest: +SKIP
    ['totes: IngestTable failed for sales_order (SourceSchemaDriftError)']
    """
    # An http URL of the local service, which this package started.
    url = f"{endpoint}{NOTIFICATIONS_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # nosec B310
        found: list[dict[str, str | None]] = json.loads(response.read())
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m totes_local.runtime.service``."""
    parser = argparse.ArgumentParser(description="The local AWS service of `totes run`.")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)
    serve(args.data_dir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
