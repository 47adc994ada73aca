"""Database faults classified by behaviour: what a failover, a restart or a full server does
to a run is a named transient error (retried by the state machine); everything else stays
permanent and named."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.controlled_postgres import ControlledServer, controlled_server
from totes.db import connect, kept_connection
from totes.errors import DatabaseTransientError, DatabaseUnreachableError


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    with controlled_server() as running:
        yield running


def test_a_session_the_server_ends_is_a_transient_error_and_the_next_block_reconnects(
    server: ControlledServer,
) -> None:
    # Given a kept session (a warm Lambda environment's), in use
    dsn = server.dsn()
    with kept_connection(dsn, autocommit=True) as conn:
        first = conn.info.backend_pid

    def ended_mid_statement() -> None:
        with kept_connection(dsn, autocommit=True) as conn:
            assert conn.info.backend_pid == first
            server.terminate_sessions("postgres")
            conn.execute("SELECT 1")

    # When the server ends it mid-statement (pg_terminate_backend, a failover, a proxy)
    with pytest.raises(DatabaseTransientError) as raised:
        ended_mid_statement()

    # Then the error is transient, names the server and the fault, chained from psycopg's
    assert "AdminShutdown" in str(raised.value)
    assert "postgres@127.0.0.1" in str(raised.value)
    assert isinstance(raised.value.__cause__, psycopg.errors.AdminShutdown)
    # And the dead session was discarded: the next block works on a new one
    with kept_connection(dsn, autocommit=True) as conn:
        assert conn.info.backend_pid != first
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_stopped_server_is_unreachable_and_reachable_again_once_started(
    server: ControlledServer,
) -> None:
    # Given the server stopped (a failover in progress)
    server.stop()

    # When a stage connects, then it is told the server is unreachable (retried)
    with pytest.raises(DatabaseUnreachableError, match="nothing listens there"):
        connect(server.dsn(), connect_timeout=2)

    # When the server is back, then the same connection succeeds
    server.start()
    with connect(server.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_with_every_connection_taken_is_transient_not_a_refused_login(
    server: ControlledServer,
) -> None:
    # Given a server that allows two sessions, both in use
    server.stop()
    server.start(max_connections=2)
    held = [psycopg.connect(server.dsn()) for _ in range(2)]
    try:
        # When one more session is asked for, then the error says so and is transient
        with pytest.raises(DatabaseTransientError, match=r"TooManyConnections \(SQLSTATE 53300\)"):
            connect(server.dsn())
    finally:
        for conn in held:
            conn.close()


def test_a_serialization_failure_is_transient_and_a_constraint_violation_is_not(
    server: ControlledServer,
) -> None:
    def run(*statements: str) -> None:
        with kept_connection(server.dsn(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    # Given a transaction that loses a serialization race (the server's SQLSTATE 40001)
    with pytest.raises(DatabaseTransientError, match="SerializationFailure"):
        run("DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = '40001'; END $$")

    # Given a statement the data refuses, then it stays what it is: permanent, as psycopg
    # named it
    with pytest.raises(psycopg.errors.UniqueViolation):
        run("CREATE TEMP TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (1)")


#: What libpq may ask before its startup message: TLS, or GSS encryption (both declined).
_ENCRYPTION_REQUESTS = (80877103, 80877104)


def _refuse(client: socket.socket, sqlstate: str) -> None:
    while True:
        header = client.recv(8)
        if len(header) < 8:
            return  # a probe that only checked that something listens
        length, code = struct.unpack("!ii", header)
        if code not in _ENCRYPTION_REQUESTS:
            client.recv(length - 8)
            fields = b"SFATAL\0C" + sqlstate.encode() + b"\0Mnot now\0\0"
            client.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
            return
        client.sendall(b"N")


def _refusing_server(sqlstate: str | None) -> tuple[socket.socket, threading.Thread]:
    """A listener that answers any startup message with a FATAL error of ``sqlstate``, or
    (None) closes the connection without a word, as a server going down does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                if sqlstate is not None:
                    _refuse(client, sqlstate)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener, thread


def test_a_server_starting_up_is_transient_whatever_the_credentials() -> None:
    # Given a server that answers every new session "the database system is starting up"
    listener, thread = _refusing_server("57P03")
    port = listener.getsockname()[1]
    try:
        # When a stage connects, then the refusal is read from the protocol, not the text
        with pytest.raises(DatabaseTransientError, match=r"CannotConnectNow \(SQLSTATE 57P03\)"):
            connect(f"host=127.0.0.1 port={port} user=etl password=x dbname=warehouse")
    finally:
        listener.close()
        thread.join(timeout=5)


def test_a_server_that_starts_no_session_is_transient_not_a_refused_login() -> None:
    # Given something that accepts connections but closes them without an answer (a server
    # in the middle of stopping, a proxy whose backend is gone)
    listener, thread = _refusing_server(None)
    port = listener.getsockname()[1]
    try:
        # When a stage connects, then it is a transient fault: no server asked for a login
        with pytest.raises(DatabaseTransientError, match="did not start a session"):
            connect(f"host=127.0.0.1 port={port} user=etl password=x dbname=warehouse")
    finally:
        listener.close()
        thread.join(timeout=5)
