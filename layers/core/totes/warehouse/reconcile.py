"""Compare the warehouse with a full rebuild computed straight from the source.

The rebuild is plain SQL over the current totesys tables, independent of the
transform and load code, so it checks the pipeline rather than repeating it:

- every dimension equals its rebuild (type 1: the latest values);
- every current version of a source order or payment is a fact row with the
  same values;
- no fact version appears twice (also guaranteed by the natural keys);
- every dim_date row is right for its day.

Examples
--------
``source`` and ``warehouse`` are connections to a totesys database and a warehouse, both
empty here, so the warehouse is right:

>>> reconcile(source, warehouse)
[]

The source gains a currency, which the warehouse lacks until it is loaded:

>>> _ = source.execute("INSERT INTO currency VALUES (1, 'GBP', now(), now())")
>>> for mismatch in reconcile(source, warehouse):
...     print(mismatch)
dim_currency: missing or stale: (1, 'GBP', 'Pound Sterling')
>>> _ = warehouse.execute("INSERT INTO dim_currency VALUES (1, 'GBP', 'Pound Sterling')")
>>> reconcile(source, warehouse)
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from totes.db import identifiers
from totes.tables import DIMENSIONS, FACTS, WarehouseTable
from totes.transform.currencies import currency_name
from totes.transform.shapes import UNKNOWN_DEPARTMENT, UNKNOWN_LOCATION, unknown_currency_name

_DATE_CHECK = (
    "SELECT count(*) FROM dim_date WHERE year <> extract(year FROM date_id) "
    "OR month <> extract(month FROM date_id) OR day <> extract(day FROM date_id) "
    "OR day_of_week <> extract(isodow FROM date_id) "
    "OR day_name <> to_char(date_id, 'FMDay') OR month_name <> to_char(date_id, 'FMMonth') "
    "OR quarter <> extract(quarter FROM date_id)"
)


@dataclass(frozen=True)
class Mismatch:
    """One way the warehouse differs from the rebuild."""

    table: str
    problem: str
    rows: tuple[tuple[Any, ...], ...]

    def __str__(self) -> str:
        sample = ", ".join(map(str, self.rows[:3]))
        more = f" (+{len(self.rows) - 3} more)" if len(self.rows) > 3 else ""
        return f"{self.table}: {self.problem}: {sample}{more}"


_PLACEHOLDERS = {"unknown_department": UNKNOWN_DEPARTMENT, "unknown_location": UNKNOWN_LOCATION}


def _fetch(conn: psycopg.Connection[Any], query: str | sql.Composed) -> set[tuple[Any, ...]]:
    placeholders = isinstance(query, str) and "%(" in query
    return set(conn.execute(query, _PLACEHOLDERS if placeholders else None).fetchall())


def _stored(table: WarehouseTable) -> sql.Composed:
    """The table's columns as the warehouse holds them, in the registry's order."""
    return sql.SQL("SELECT {columns} FROM {table}").format(
        columns=identifiers(list(table.column_names)), table=sql.Identifier(table.name)
    )


def _named_currencies(rows: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    return {(key, code, currency_name(code) or unknown_currency_name(code)) for key, code in rows}


def reconcile(
    source: psycopg.Connection[Any], warehouse: psycopg.Connection[Any]
) -> list[Mismatch]:
    """List every difference between the warehouse and a rebuild from the current source.

    Returns
    -------
    list of Mismatch
        Empty when the warehouse is right.
    """
    mismatches: list[Mismatch] = []
    for dimension in DIMENSIONS:
        if not dimension.rebuild_sql:
            continue  # dim_date: checked day by day below
        table = dimension.name
        expected = _fetch(source, dimension.rebuild_sql)
        if table == "dim_currency":
            expected = _named_currencies(expected)
        actual = _fetch(warehouse, _stored(dimension))
        if missing := expected - actual:
            mismatches.append(Mismatch(table, "missing or stale", tuple(sorted(missing))))
        if unexpected := actual - expected:
            mismatches.append(Mismatch(table, "not in the source", tuple(sorted(unexpected))))
    for fact in FACTS:
        table = fact.name
        missing = _fetch(source, fact.rebuild_sql) - _fetch(warehouse, _stored(fact))
        if missing:
            mismatches.append(Mismatch(table, "current version missing", tuple(sorted(missing))))
        repeated = warehouse.execute(
            sql.SQL(
                "SELECT {key}, last_updated_date, last_updated_time, count(*) FROM {table} "
                "GROUP BY 1, 2, 3 HAVING count(*) > 1"
            ).format(key=sql.Identifier(fact.key), table=sql.Identifier(table))
        ).fetchall()
        if repeated:
            mismatches.append(Mismatch(table, "version stored twice", tuple(repeated)))
    wrong_dates = warehouse.execute(_DATE_CHECK).fetchone()
    if wrong_dates and wrong_dates[0]:
        mismatches.append(Mismatch("dim_date", f"{wrong_dates[0]} rows wrong for their day", ()))
    return mismatches
