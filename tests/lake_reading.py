"""Reading a warehouse table as the lake keeps it, for comparisons with the lake (test helper)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from totes.db import connect
from totes.lake.layout import lake_schema
from totes.tables import WAREHOUSE


def warehouse_rows_as_lake(dsn: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a warehouse table, sorted, with the lake's columns: times of day as text,
    a fact's month of ``last_updated``."""
    columns = [
        sql.SQL("to_char(last_updated_date, 'YYYY-MM')")
        if field.name == WAREHOUSE[table].lake_partition
        else sql.SQL("to_char({}, 'HH24:MI:SS.MS')").format(sql.Identifier(field.name))
        if field.name.endswith("_time")
        else sql.Identifier(field.name)
        for field in lake_schema(table)
    ]
    statement = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(columns), sql.Identifier(table)
    )
    with connect(dsn) as conn:
        return sorted(tuple(row) for row in conn.execute(statement))
