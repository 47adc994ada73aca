"""Connections to PostgreSQL with errors a user can act on.

libpq reports connection failures as one generic ``OperationalError`` whose only
detail is a localised message. Rather than parse that text, :func:`connect`
finds out *which* step failed by behaviour: whether anything listens at the
address, the SQLSTATE with which the server refuses a new session before it asks
for a password (starting up, shutting down, too many connections), and whether the
same credentials open the maintenance database.

Faults that a retry a few seconds later absorbs, at connection time or on a session
already open (:func:`kept_connection`), become :class:`~totes.errors.DatabaseTransientError`
or :class:`~totes.errors.DatabaseUnreachableError`, which the state machine retries;
everything else stays permanent and named (ADR 3).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from totes.errors import (
    AuthenticationFailedError,
    DatabaseNotFoundError,
    DatabaseTlsError,
    DatabaseTransientError,
    DatabaseUnreachableError,
)

DEFAULT_CONNECT_TIMEOUT_S = 10
MAINTENANCE_DATABASE = "postgres"
#: SQLSTATEs of faults that pass: the server shutting down (an administrator, a crash, a
#: failover) or starting up, too many connections, and a transaction that lost a
#: serialization race or a deadlock and may simply run again.
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})
#: Protocol 3.0, as a startup message states it; the code of a request for TLS.
_PROTOCOL_3 = 196608
_SSL_REQUEST = 80877103
#: The TLS modes in which libpq refuses a connection without TLS, and those that verify.
_TLS_REQUIRED = frozenset({"require", "verify-ca", "verify-full"})
#: OpenSSL's verify codes of a certificate that is not for the host name, or the IP
#: address, connected to.
_NAME_MISMATCH = frozenset({62, 64})
_STARTUP_PROBE_TIMEOUT_S = 5.0


def describe(dsn: str) -> str:
    """Return ``user@host:port/dbname`` for a DSN, never its password.

    Examples
    --------
    >>> describe("postgresql://ann:secret@db.example.com:6543/totesys")
    'ann@db.example.com:6543/totesys'
    """
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    user = params.get("user")
    database = params.get("dbname") or user or "?"
    prefix = f"{user}@" if user else ""
    return f"{prefix}{host}:{port}/{database}"


def without_password(dsn: str) -> str:
    """The DSN with its password left out: what may be printed (psql then asks for it).

    Examples
    --------
    >>> without_password("postgresql://ann:s3cret@db.example.com:6543/totesys")
    'user=ann dbname=totesys host=db.example.com port=6543'
    """
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    params.pop("sslpassword", None)
    return make_conninfo("", **params)


def unverified_tls(dsn: str) -> str | None:
    """Why a connection with this DSN would not verify whom it talks to, or None.

    Only a DSN that sets a weaker ``sslmode`` than ``verify-full`` is named: the deployed
    functions build theirs from secrets, where that is an explicit choice (a DSN without
    one is a local run's). A Unix socket never leaves the machine.

    Examples
    --------
    >>> print(unverified_tls("host=db sslmode=require"))  # doctest: +NORMALIZE_WHITESPACE
    sslmode=require: the connection to db is encrypted,
    but the server's certificate is not verified
    >>> unverified_tls("host=db.example.com sslmode=verify-full") is None
    True
    """
    params = conninfo_to_dict(dsn)
    mode, host = params.get("sslmode"), str(params.get("host") or "localhost")
    if mode in (None, "verify-full") or host.startswith("/"):
        return None
    consequence = {
        "verify-ca": "the server's certificate is checked, but not that it is for this host",
        "require": "the connection is encrypted, but the server's certificate is not verified",
    }.get(str(mode), "the connection may travel unencrypted, and the server is not verified")
    return f"sslmode={mode}: {consequence.replace('the connection', f'the connection to {host}')}"


def with_database(dsn: str, database: str) -> str:
    """Return the DSN pointing at another database on the same server.

    Examples
    --------
    >>> with_database("postgresql://postgres@127.0.0.1:5432/postgres", "totesys")
    'user=postgres dbname=totesys host=127.0.0.1 port=5432'
    """
    return make_conninfo(dsn, dbname=database)


def connect(dsn: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a connection, or raise an error that names what went wrong.

    Parameters
    ----------
    dsn
        A libpq connection string or URI.
    autocommit
        Open the connection in autocommit mode (needed for CREATE DATABASE).
    **kwargs
        Passed on to :func:`psycopg.connect`.

    Raises
    ------
    DatabaseUnreachableError
        Nothing listens at the host and port (or the host name does not resolve).
    AuthenticationFailedError
        The server rejected the user name or password.
    DatabaseNotFoundError
        The credentials work but the database does not exist.

    Examples
    --------
    A database that exists, then one that does not, on the same server:

    >>> with connect(dsn) as conn:
    ...     conn.execute("SELECT 1").fetchone()
    (1,)
    >>> connect(with_database(dsn, "no_such_database"))
    Traceback (most recent call last):
    totes.errors.DatabaseNotFoundError: database 'no_such_database' does not exist on ...
    """
    kwargs.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
    try:
        return psycopg.connect(dsn, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise _classify_connection_failure(dsn, exc) from exc


def transient_fault(dsn: str, exc: psycopg.Error, *, connection_lost: bool) -> Exception | None:
    """The named transient error for a fault on an open session, or None if it is permanent.

    Transient: the session was lost (the server or a proxy dropped it), or the server
    answered with one of :data:`TRANSIENT_SQLSTATES`. The message is the error's class and
    first line: a psycopg message's later lines (``DETAIL``) may quote row values.

    Examples
    --------
    >>> fault = psycopg.errors.AdminShutdown("terminating connection")
    >>> print(transient_fault("postgresql://etl@db/warehouse", fault, connection_lost=False))
    PostgreSQL at etl@db:5432/warehouse: AdminShutdown: terminating connection
    >>> unique = psycopg.errors.UniqueViolation("duplicate key\\nDETAIL: Key (id)=(7)")
    >>> transient_fault("postgresql://etl@db/warehouse", unique, connection_lost=False) is None
    True
    """
    if not connection_lost and exc.sqlstate not in TRANSIENT_SQLSTATES:
        return None
    first_line = (str(exc).splitlines() or ["connection lost"])[0]
    return DatabaseTransientError(
        f"PostgreSQL at {describe(dsn)}: {type(exc).__name__}: {first_line}"
    )


#: How long a warm Lambda environment may use a connection again after its last use:
#: long enough for the invocations of one execution (a Map hands an environment item
#: after item), shorter than the idle timeouts on the way to a database (a NAT gateway
#: drops a silent TCP connection after 350 s), so that a kept connection is not a dead one.
KEEP_IDLE_CONNECTION_S = 60.0
#: A kept connection's unacknowledged data is given up on after this many milliseconds
#: (libpq's ``tcp_user_timeout``): a probe of a connection whose server vanished without
#: a reset fails in seconds instead of waiting out the kernel's retransmissions.
_KEPT_TCP_USER_TIMEOUT_MS = 10_000
_kept: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[psycopg.Connection[Any], float]] = {}
_kept_lock = threading.Lock()


@contextmanager
def kept_connection(
    dsn: str, *, max_idle_s: float = KEEP_IDLE_CONNECTION_S, **kwargs: Any
) -> Iterator[psycopg.Connection[Any]]:
    """A connection that the next invocation of a warm Lambda environment may use again.

    Opening a connection costs a round trip or more and a fresh session's catalog
    cache (about 11 ms on one machine, on every invocation of a small table). The
    connection is kept after the block succeeds and is idle (no transaction open),
    and used again by a block that starts within ``max_idle_s`` of its last use, once
    it answers a probe; kept connections idle for longer are closed by the next block
    of the process, whatever its DSN (a rotated secret leaves none behind). One whose
    block raised is closed. Settings made on it (isolation level, ``SET``) stay with
    it: a caller sets what it needs each time.

    Parameters
    ----------
    dsn, **kwargs
        As for :func:`connect`; a connection is kept per DSN and arguments.
    max_idle_s
        Longest idle time after which a kept connection is used again.

    Examples
    --------
    The second block is given the session the first one kept:

    >>> with kept_connection(dsn, autocommit=True) as conn:
    ...     first = conn.info.backend_pid
    >>> with kept_connection(dsn, autocommit=True) as conn:
    ...     conn.info.backend_pid == first
    True
    """
    key = (dsn, tuple(sorted(kwargs.items())))
    now = time.monotonic()
    with _kept_lock:
        stale = [k for k, (_, idle_since) in _kept.items() if now - idle_since > max_idle_s]
        closing = [_kept.pop(k)[0] for k in stale]
        conn = _kept.pop(key, (None, 0.0))[0]
    for old in closing:
        old.close()
    if conn is not None and not _still_open(conn):
        conn.close()
        conn = None
    if conn is None:
        conn = connect(dsn, tcp_user_timeout=_KEPT_TCP_USER_TIMEOUT_MS, **kwargs)
    try:
        yield conn
    except BaseException as exc:
        # libpq may not have marked the session bad yet when the wait for its socket
        # failed first: a session that no longer answers is lost all the same.
        connection_lost = conn.broken or (
            isinstance(exc, psycopg.OperationalError) and not _still_open(conn)
        )
        conn.close()
        if isinstance(exc, psycopg.Error):
            transient = transient_fault(dsn, exc, connection_lost=connection_lost)
            if transient is not None:
                raise transient from exc
        raise
    if conn.info.transaction_status is not psycopg.pq.TransactionStatus.IDLE:
        conn.close()
        return
    with _kept_lock:
        # Another thread of this process may have kept one meanwhile (tests run loads
        # side by side; Lambda runs one invocation at a time): keep one, close the other.
        displaced = _kept.get(key, (None, 0.0))[0]
        _kept[key] = (conn, time.monotonic())
    if displaced is not None:
        displaced.close()


def _still_open(conn: psycopg.Connection[Any]) -> bool:
    """Whether a kept connection still answers."""
    if conn.closed or conn.broken:
        return False
    try:
        conn.execute("SELECT 1")
        if not conn.autocommit:
            conn.rollback()  # the probe opened a transaction: the caller's settings come first
    except psycopg.Error:
        return False
    return True


def _classify_connection_failure(dsn: str, exc: psycopg.OperationalError) -> Exception:
    where = describe(dsn)
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        # Nothing answered in time: an address that drops packets (a failover in progress)
        # or a server too busy to accept; probing it would only wait again.
        return DatabaseTransientError(f"PostgreSQL at {where} did not answer in time")
    if not _server_listens(dsn):
        return DatabaseUnreachableError(
            f"cannot reach PostgreSQL at {where}: nothing listens there"
        )
    answer = _probe(dsn)
    if answer.tls_problem is not None:
        mode = conninfo_to_dict(dsn).get("sslmode")
        return DatabaseTlsError(
            f"TLS to PostgreSQL at {where} failed: {answer.tls_problem} (sslmode={mode})"
        )
    passing = _passing_refusal(answer)
    if passing is not None:
        return DatabaseTransientError(f"PostgreSQL at {where} {passing}")
    return _refused_login_or_missing_database(dsn, where)


def _passing_refusal(answer: _ProbeAnswer) -> str | None:
    """Why the server started no session, when that passes by itself (else None)."""
    if answer.refusal in TRANSIENT_SQLSTATES:
        name = psycopg.errors.lookup(answer.refusal).__name__
        return f"accepts no new session now: {name} (SQLSTATE {answer.refusal})"
    if answer.refusal is None and not answer.accepting:
        # Something listens but no session starts (a server shutting down or starting, a
        # proxy without its backend): a refused login is only ever read from a server
        # that asked for one.
        return "did not start a session"
    return None


def _refused_login_or_missing_database(dsn: str, where: str) -> Exception:
    params = conninfo_to_dict(dsn)
    if params.get("dbname") not in (None, MAINTENANCE_DATABASE):
        try:
            psycopg.connect(with_database(dsn, MAINTENANCE_DATABASE), connect_timeout=5).close()
        except psycopg.OperationalError:
            pass
        else:
            return DatabaseNotFoundError(
                f"database {params['dbname']!r} does not exist on {where.split('/', maxsplit=1)[0]}"
            )
    return AuthenticationFailedError(
        f"PostgreSQL at {where} refused the login: check the user name and password"
    )


def _server_listens(dsn: str) -> bool:
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "/var/run/postgresql")
    port = int(params.get("port") or 5432)
    for one_host in host.split(","):
        if one_host.startswith("/"):
            if Path(one_host, f".s.PGSQL.{port}").exists():
                return True
            continue
        try:
            with _open(dsn, one_host):
                return True
        except OSError:
            continue
    return False


def _open(dsn: str, host: str) -> socket.socket:
    params = conninfo_to_dict(dsn)
    port = int(params.get("port") or 5432)
    timeout = min(
        float(params.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT_S), _STARTUP_PROBE_TIMEOUT_S
    )
    if host.startswith("/"):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(timeout)
        try:
            unix.connect(str(Path(host, f".s.PGSQL.{port}")))
        except OSError:
            unix.close()
            raise
        return unix
    return socket.create_connection((host, port), timeout=timeout)


@dataclass(frozen=True)
class _ProbeAnswer:
    """What the server said to a session opened as libpq opens it, before any password."""

    #: What is wrong with its TLS for the DSN's ``sslmode`` (None: nothing, or not asked).
    tls_problem: str | None = None
    #: The SQLSTATE with which it refused the session before authentication, if it did.
    refusal: str | None = None
    #: It asked for authentication: it accepts sessions (a refused login is then the login).
    accepting: bool = False


def _probe(dsn: str) -> _ProbeAnswer:
    """Open a session as libpq does, up to the server's first answer, without credentials.

    When the DSN requires TLS, the probe asks for it and verifies the certificate as the
    mode says (``require`` with an ``sslrootcert`` verifies the authority, as libpq does);
    the startup message (user and database names) then goes inside TLS. A server answers
    it first with "starting up", "shutting down" or "too many connections" whatever the
    credentials; one that accepts sessions asks for authentication instead. Read from the
    protocol's codes, so the answer is the same whatever language the server speaks.
    """
    params = conninfo_to_dict(dsn)
    mode = str(params.get("sslmode") or "prefer")
    host = str(params.get("host") or "/var/run/postgresql").split(",")[0]
    address = str(params.get("hostaddr") or host).split(",")[0]
    user = str(params.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    body = struct.pack("!i", _PROTOCOL_3) + b"".join(
        key.encode() + b"\0" + value.encode() + b"\0"
        for key, value in (("user", user), ("database", str(params.get("dbname") or user)))
    )
    try:
        with contextlib.ExitStack() as closing:
            stream = closing.enter_context(_open(dsn, address))
            stream.settimeout(_STARTUP_PROBE_TIMEOUT_S)
            if mode in _TLS_REQUIRED and not host.startswith("/"):
                stream.sendall(struct.pack("!ii", 8, _SSL_REQUEST))
                if _read_exactly(stream, 1) != b"S":
                    return _ProbeAnswer(tls_problem="the server offers no TLS")
                context = _verifying(mode, params.get("sslrootcert"))
                try:
                    stream = closing.enter_context(
                        context.wrap_socket(stream, server_hostname=host)
                    )
                except ssl.SSLCertVerificationError as exc:
                    if exc.verify_code in _NAME_MISMATCH:
                        problem = f"the server's certificate is not for the host name {host!r}"
                    else:
                        problem = (
                            "the server's certificate is not signed by a trusted authority "
                            "(sslrootcert)"
                        )
                    return _ProbeAnswer(tls_problem=problem)
            message = body + b"\0"
            stream.sendall(struct.pack("!i", len(message) + 4) + message)
            header = _read_exactly(stream, 5)
            if header[:1] != b"E":
                return _ProbeAnswer(accepting=header[:1] == b"R")
            (length,) = struct.unpack("!i", header[1:])
            fields = _read_exactly(stream, length - 4)
    except (OSError, ValueError):
        return _ProbeAnswer()
    codes = [
        field[1:].decode("ascii", "replace") for field in fields.split(b"\0") if field[:1] == b"C"
    ]
    return _ProbeAnswer(refusal=codes[0] if codes else None)


def _verifying(mode: str, root_certificate: object) -> ssl.SSLContext:
    """A TLS context that verifies as libpq's ``mode`` does, with its ``sslrootcert``."""
    has_root = bool(root_certificate) and root_certificate != "system"
    context = (
        ssl.create_default_context(cafile=str(root_certificate))
        if has_root
        else ssl.create_default_context()
    )
    context.check_hostname = mode == "verify-full"
    if mode == "require" and not has_root:
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_exactly(stream: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.recv(size - len(data))
        if not chunk:
            raise ValueError("the server closed the connection")
        data += chunk
    return data


def database_exists(admin: psycopg.Connection[Any], name: str) -> bool:
    """Tell whether the server behind ``admin`` has a database called ``name``."""
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def create_database(admin_dsn: str, name: str, *, template: str | None = None) -> None:
    """Create database ``name`` unless it exists (optionally as a copy of ``template``)."""
    with connect(admin_dsn, autocommit=True) as admin:
        if database_exists(admin, name):
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin.execute(statement)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing its sessions first."""
    with connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def row_counts(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> dict[str, int]:
    """Return the exact row count of each table (tables that do not exist are left out)."""
    present = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
            (list(tables),),
        )
    }
    counts: dict[str, int] = {}
    for table in tables:
        if table in present:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def copy_field(value: object) -> str:
    r"""Render one value in PostgreSQL's COPY text format.

    Examples
    --------
    >>> [copy_field(v) for v in (None, True, "O'Keefe", "a\tb")]
    ['\\N', 't', "O'Keefe", 'a\\tb']
    """
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    # Most values (numbers, dates, codes) need no escaping; checking first is several times
    # cheaper than always running the replacements.
    if "\\" not in text and "\t" not in text and "\n" not in text and "\r" not in text:
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


_COPY_CHUNK_BYTES = 1 << 20


def identifiers(names: Iterable[str], *, table: str | None = None) -> sql.Composed:
    """A comma-separated list of quoted column names, qualified by ``table`` if given.

    Examples
    --------
    >>> identifiers(["staff_id", "first_name"]).as_string()
    '"staff_id", "first_name"'
    >>> identifiers(["staff_id"], table="existing").as_string()
    '"existing"."staff_id"'
    """
    if table is None:
        return sql.SQL(", ").join(sql.Identifier(name) for name in names)
    return sql.SQL(", ").join(sql.Identifier(table, name) for name in names)


def copy_lines(
    conn: psycopg.Connection[Any], table: str, columns: list[str], lines: Iterable[str]
) -> int:
    """Stream COPY text-format lines into ``table``; return how many rows went in."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), identifiers(columns)
    )
    rows = 0
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            rows += 1
            if size >= _COPY_CHUNK_BYTES:
                copy.write("".join(chunk))
                chunk, size = [], 0
        if chunk:
            copy.write("".join(chunk))
    return rows


def table_columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    """Column names of ``table`` in their declared order."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [row[0] for row in rows]
