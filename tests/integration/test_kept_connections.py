"""Connections a warm Lambda environment keeps between invocations, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from totes.db import connect, kept_connection


def _backend(dsn: str, **kwargs: object) -> int:
    with kept_connection(dsn, **kwargs) as conn:  # type: ignore[arg-type]
        return conn.info.backend_pid


def test_the_next_invocation_uses_the_connection_the_last_one_left_idle(
    fresh_database: Callable[..., str],
) -> None:
    # Given an invocation that used a connection and left no transaction open
    dsn = fresh_database("kept")
    first = _backend(dsn, autocommit=True)
    # When the next invocations ask for one with the same DSN and arguments
    # Then they get the same session; other arguments get a session of their own
    assert _backend(dsn, autocommit=True) == first
    assert _backend(dsn, autocommit=True) == first
    assert _backend(dsn) != first


def test_a_connection_whose_block_failed_is_closed_and_the_next_one_is_new(
    fresh_database: Callable[..., str],
) -> None:
    # Given an invocation that failed while holding its connection
    dsn = fresh_database("kept")
    held: list[tuple[psycopg.Connection[object], int]] = []

    def failing_invocation() -> None:
        with kept_connection(dsn, autocommit=True) as conn:
            held.append((conn, conn.info.backend_pid))
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError, match="the handler failed"):
        failing_invocation()
    conn, failed = held[0]
    # Then that connection is closed, and the next invocation opens another
    assert conn.closed
    assert _backend(dsn, autocommit=True) != failed


def test_a_connection_left_in_a_transaction_is_not_kept(
    fresh_database: Callable[..., str],
) -> None:
    # Given a block that leaves a transaction open (no autocommit, nothing committed)
    dsn = fresh_database("kept")
    with kept_connection(dsn) as conn:
        conn.execute("SELECT 1")
        open_one = conn.info.backend_pid
    # Then it is closed rather than handed to the next invocation mid-transaction
    assert conn.closed
    assert _backend(dsn) != open_one


def test_a_kept_connection_the_server_ended_is_replaced_without_an_error(
    fresh_database: Callable[..., str],
) -> None:
    # Given a kept connection that the server then terminates (a restart, an admin)
    dsn = fresh_database("kept")
    ended = _backend(dsn)
    with connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
    # When the next invocation asks for a connection
    with kept_connection(dsn) as conn:
        # Then it gets a working one, in no transaction, as a new connection would be
        assert conn.info.backend_pid != ended
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assert conn.execute("SELECT 42").fetchone() == (42,)
        conn.commit()


def test_a_connection_idle_for_longer_than_allowed_is_not_used_again(
    fresh_database: Callable[..., str],
) -> None:
    # Given a connection kept after an invocation
    dsn = fresh_database("kept")
    with kept_connection(dsn, autocommit=True) as conn:
        old = conn
    # When the next invocation allows no idle time at all
    with kept_connection(dsn, max_idle_s=0.0, autocommit=True) as conn:
        # Then it gets a new connection, and the old one is closed
        assert conn is not old
    assert old.closed


def test_connections_idle_too_long_are_closed_by_the_next_block_whatever_its_dsn(
    fresh_database: Callable[..., str],
) -> None:
    # Given a connection kept for one DSN (a secret since rotated, say)
    old_dsn, new_dsn = fresh_database("kept"), fresh_database("kept")
    with kept_connection(old_dsn, autocommit=True) as conn:
        forgotten = conn
    # When a block on another DSN starts after it has been idle too long
    with kept_connection(new_dsn, max_idle_s=0.0, autocommit=True):
        pass
    # Then the forgotten connection is closed, not left open on its server
    assert forgotten.closed


def test_a_reused_connection_takes_the_settings_of_its_next_block(
    fresh_database: Callable[..., str],
) -> None:
    # Given a kept connection that is not in autocommit mode
    dsn = fresh_database("kept")
    with kept_connection(dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        first = conn.info.backend_pid
    # When the next block sets its isolation level and reads in a transaction
    with kept_connection(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            level = conn.execute("SHOW transaction_isolation").fetchone()
    # Then it is the same session, and the read ran at that level
    assert conn.info.backend_pid == first
    assert level == ("repeatable read",)


def test_of_two_threads_keeping_one_key_the_displaced_connection_is_closed(
    fresh_database: Callable[..., str],
) -> None:
    # Given two blocks on the same DSN running at once
    dsn = fresh_database("kept")
    with (
        kept_connection(dsn, autocommit=True) as first,
        kept_connection(dsn, autocommit=True) as second,
    ):
        assert first is not second
    # Then one is kept and the other closed: none is left open unreferenced
    assert sorted([first.closed, second.closed]) == [False, True]
