"""Create the warehouse star schema (DESIGN.md section 7)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from totes.names import (
    LOAD_LEDGER_TABLE,
    LOAD_LISTING_TABLE,
    NEWEST_VERSIONS_TABLE,
)
from totes.tables import WAREHOUSE_TABLES


def init_warehouse(conn: psycopg.Connection[Any]) -> list[str]:
    """Create every warehouse table that is missing; leave existing tables and rows alone.

    Returns
    -------
    list of str
        The warehouse tables (and load's ledger, listing and newest versions) that did not exist
        before the call.

    Examples
    --------
    On an empty database, then on the same database again:

    >>> from totes.db import connect
    >>> with connect(dsn) as conn:
    ...     created = init_warehouse(conn)
    >>> len(created), created[:2]
    (14, ['dim_date', 'dim_staff'])
    >>> with connect(dsn) as conn:
    ...     init_warehouse(conn)
    []
    """
    wanted = [*WAREHOUSE_TABLES, LOAD_LEDGER_TABLE, NEWEST_VERSIONS_TABLE, LOAD_LISTING_TABLE]
    with conn.transaction():
        # Two first-time inits racing would both try CREATE TABLE; serialise them.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('totes.warehouse.init'))")
        before = _existing(conn, wanted)
        conn.execute(resources.files(__package__).joinpath("schema.sql").read_text("utf-8"))
    return [table for table in wanted if table not in before]


def _existing(conn: psycopg.Connection[Any], tables: list[str]) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (tables,),
    ).fetchall()
    return {row[0] for row in rows}
