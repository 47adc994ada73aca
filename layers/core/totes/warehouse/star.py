"""Arrow schemas of the star (gold) zone: one per warehouse table, column for column.

The columns themselves are declared once, in :mod:`totes.tables`.

Transform writes Parquet files with exactly these schemas under
``<warehouse_table>/seq=<sequence>/run=<run_id>/<sequence>-<digest>.parquet`` in the
processed bucket (:func:`gold_key`: keys sort in commit order); load copies them into
the warehouse table of the same name. The surrogate keys of the facts
(``sales_record_id`` and friends) are the warehouse's own and are not in the files.

Money is ``decimal128(10, 2)``, never float; times keep milliseconds.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from totes.tables import WAREHOUSE, ColumnType

MONEY: Final = pa.decimal128(10, 2)
TIME_MS: Final = pa.time32("ms")

_ARROW_TYPES: Final = {
    ColumnType.INT: pa.int32(),
    ColumnType.TEXT: pa.string(),
    ColumnType.DATE: pa.date32(),
    ColumnType.TIME: TIME_MS,
    ColumnType.MONEY: MONEY,
    ColumnType.BOOL: pa.bool_(),
}

#: The Arrow schema of each warehouse table, from its columns in :mod:`totes.tables`.
STAR_SCHEMAS: Final[dict[str, pa.Schema]] = {
    table.name: pa.schema(
        [pa.field(c.name, _ARROW_TYPES[c.type], nullable=c.nullable) for c in table.columns]
    )
    for table in WAREHOUSE.values()
}


def gold_key(warehouse_table: str, sequence: int, run_id: str, digest: str) -> str:
    """Key of the gold file transform commits as the table's ``sequence``-th.

    The sequence leads the key, so a table's keys sort in the order they were committed
    (a commit published late by a later run included): load lists only the keys after
    the last one it has loaded every predecessor of.

    Examples
    --------
    >>> gold_key("dim_staff", 42, "2026-12-06T10:00:00.000Z-exec", "9f2c")
    'dim_staff/seq=0000000042/run=2026-12-06T10:00:00.000Z-exec/0000000042-9f2c.parquet'
    """
    return f"{warehouse_table}/seq={sequence:010d}/run={run_id}/{sequence:010d}-{digest}.parquet"


def star_prefix(warehouse_table: str, run_id: str) -> str:
    """Folder of one run's files of a warehouse table without a sequence (files of
    releases before :func:`gold_key`, and files put by hand).

    Examples
    --------
    >>> star_prefix("dim_staff", "exec-1")
    'dim_staff/run=exec-1/'
    """
    return f"{warehouse_table}/run={run_id}/"
