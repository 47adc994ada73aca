"""Arrow schemas of the gold files: one per warehouse table, column for column.

The columns themselves are declared once, in :mod:`totes.tables`. Transform writes gold
files with exactly these schemas (keys: :mod:`totes.zones.gold`); load copies them into
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
