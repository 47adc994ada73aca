"""Helpers shared by the workflow tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from psycopg import sql

from totes.db import connect
from totes.names import WAREHOUSE_TABLES
from totes_local.runtime.workflow import LocalWorkflow

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Surrogate keys: numbered by insertion order, so they differ between equal warehouses.
SURROGATE_KEYS = frozenset({"sales_record_id", "purchase_record_id", "payment_record_id"})

#: ``local_workflow(source_dsn, warehouse_dsn, **options)``: a running LocalWorkflow.
WorkflowFactory = Callable[..., AbstractContextManager[LocalWorkflow]]


def warehouse_digest(dsn: str) -> dict[str, tuple[int, str]]:
    """Rows and a checksum of every warehouse table, surrogate keys left out."""
    digest: dict[str, tuple[int, str]] = {}
    with connect(dsn) as conn:
        for table in WAREHOUSE_TABLES:
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
                if row[0] not in SURROGATE_KEYS
            ]
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') "
                    "FROM (SELECT ROW({columns})::text AS r FROM {table}) AS rows"
                ).format(
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    table=sql.Identifier(table),
                )
            ).fetchone()
            assert row is not None
            digest[table] = (int(row[0]), str(row[1]))
    return digest
