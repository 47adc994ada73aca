"""Create the totesys source schema (DESIGN.md section 6)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from totes.errors import SchemaAlreadyExistsError, SourceSchemaMissingError
from totes.tables import IGNORED_SOURCE_TABLES, SOURCE, SOURCE_TABLES

_ENUM_TYPES = ("payment_type_name", "transaction_type")


def _sql_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def existing_source_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Return the totesys tables already present in the connected database."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s) ORDER BY table_name",
        (list(SOURCE_TABLES + IGNORED_SOURCE_TABLES),),
    ).fetchall()
    return [row[0] for row in rows]


def create_source_tables(conn: psycopg.Connection[Any], *, replace: bool = False) -> None:
    """Create the 11 totesys tables, their enums and ``_prisma_migrations``, without foreign keys.

    Call :func:`add_source_constraints` once the rows are in.

    Parameters
    ----------
    conn
        A connection to the target database; the caller owns the transaction.
    replace
        Drop any existing totesys tables first. Without it, existing tables are an error.

    Raises
    ------
    SchemaAlreadyExistsError
        The database already holds totesys tables and ``replace`` is false.

    Examples
    --------
    On an empty database, then on the same database again:

    >>> from totes.db import connect
    >>> with connect(dsn) as conn:
    ...     create_source_tables(conn)
    ...     add_source_constraints(conn)
    ...     existing_source_tables(conn)[:3]
    ['_prisma_migrations', 'address', 'counterparty']
    >>> with connect(dsn) as conn:
    ...     create_source_tables(conn)
    Traceback (most recent call last):
    totes.errors.SchemaAlreadyExistsError: database already holds a totesys schema (12 tables, ...
    """
    present = existing_source_tables(conn)
    if present and not replace:
        raise SchemaAlreadyExistsError(
            f"database already holds a totesys schema ({len(present)} tables, e.g. {present[0]}): "
            "pass --replace to drop it and seed again"
        )
    if present or replace:
        drop_source_schema(conn)
    conn.execute(_sql_file("schema.sql"))


def drop_source_schema(conn: psycopg.Connection[Any]) -> None:
    """Drop every totesys table and enum type, if present."""
    for table in (*reversed(SOURCE_TABLES), *IGNORED_SOURCE_TABLES):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
    for enum in _ENUM_TYPES:
        conn.execute(sql.SQL("DROP TYPE IF EXISTS {}").format(sql.Identifier(enum)))


def add_source_constraints(conn: psycopg.Connection[Any]) -> None:
    """Add the foreign keys and move every id sequence past the highest id in use."""
    conn.execute(_sql_file("constraints.sql"))
    for table, key in ((t.name, t.key) for t in SOURCE.values()):
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({table_name}, {key_name}), "
                "COALESCE((SELECT max({key}) FROM {table}), 0) + 1, false)"
            ).format(
                table_name=sql.Literal(table),
                key_name=sql.Literal(key),
                key=sql.Identifier(key),
                table=sql.Identifier(table),
            )
        )


def require_source_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise :class:`SourceSchemaMissingError` unless all 11 totesys tables exist."""
    missing = sorted(set(SOURCE_TABLES) - set(existing_source_tables(conn)))
    if missing:
        raise SourceSchemaMissingError(
            f"database has no totesys table {', '.join(missing)}: run `totes seed` first"
        )
