"""Where the lake's files are, and what they hold.

The lake answers like the warehouse: a fact table holds every version the warehouse
holds (with its surrogate key), a dimension its current rows. Load writes what it
commits, so the lake never runs ahead of the warehouse nor misses what it took::

    lake/_state/<table>.json
        how far the lake holds each table: its export watermark (load writes it)
    lake/<fact>/last_updated_month=<YYYY-MM>/<first record id>.parquet
        the fact rows the warehouse committed, exported after the commit by surrogate
        key, split by month of last_updated; Glue partitions them by that month
    lake/_changes/<dimension>/<generation>/<number>.parquet
        a dimension's changes in commit order: first the whole table as the warehouse
        held it when the generation began (its gold files, or the table read back),
        then the rows of each gold file load applied (dim_date: the whole of it each
        time it grew)
    lake/<dimension>/version=<generation>-<changes>/data.parquet
        the current rows of a dimension, compacted from its changes by the catalog step

Types are the warehouse's, but for the time of day: Athena has no TIME column type,
so ``created_time`` and ``last_updated_time`` are text, ``HH:MM:SS.mmm`` (sortable,
and ``CAST(... AS time)`` where a time is wanted).
"""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AwareDatetime, NonNegativeInt

from totes.conditional_writes import VersionedDocument, read_document
from totes.names import FACT_TABLES, LAKE_PREFIX
from totes.warehouse.star import DIMENSION_KEYS, STAR_SCHEMAS

#: The partition column of every fact table in the lake.
PARTITION_COLUMN: Final = "last_updated_month"
CHANGES_PREFIX: Final = f"{LAKE_PREFIX}/_changes"
STATE_PREFIX: Final = f"{LAKE_PREFIX}/_state"
#: The warehouse's surrogate key of each fact: numbered in commit order.
FACT_RECORD_KEYS: Final[dict[str, str]] = {
    "fact_sales_order": "sales_record_id",
    "fact_purchase_order": "purchase_record_id",
    "fact_payment": "payment_record_id",
}
#: The text form of a time of day in the lake (PostgreSQL's ``to_char`` pattern).
TIME_TEXT_PATTERN: Final = "HH24:MI:SS.MS"


def lake_schema(table: str) -> pa.Schema:
    """The columns of a warehouse table in the lake: the warehouse's, times as text.

    Examples
    --------
    >>> lake_schema("fact_payment").field("created_time").type
    DataType(string)
    >>> lake_schema("fact_payment").names[0]
    'payment_record_id'
    """
    fields = [
        pa.field(field.name, pa.string(), field.nullable) if pa.types.is_time(field.type) else field
        for field in STAR_SCHEMAS[table]
    ]
    if table in FACT_RECORD_KEYS:
        # ``serial``: a PostgreSQL integer.
        fields.insert(0, pa.field(FACT_RECORD_KEYS[table], pa.int32(), nullable=False))
    return pa.schema(fields)


def to_lake(rows: pa.Table, table: str) -> pa.Table:
    """Rows of the star schema as the lake keeps them (times of day as ``HH:MM:SS.mmm``).

    Examples
    --------
    >>> from datetime import time
    >>> star = pa.table({"t": pa.array([time(9, 5, 1, 250_000)], pa.time32("ms"))})
    >>> to_lake(star, "dim_date").column("t").to_pylist()
    ['09:05:01.250']
    """
    columns = [
        column.cast(pa.string()) if pa.types.is_time(column.type) else column
        for column in rows.columns
    ]
    return pa.table(columns, names=rows.column_names)


def key_of(table: str) -> str:
    """The column that identifies a row of a lake table (a dimension's key, a fact's record).

    Examples
    --------
    >>> key_of("dim_staff"), key_of("fact_sales_order")
    ('staff_id', 'sales_record_id')
    """
    return FACT_RECORD_KEYS.get(table) or DIMENSION_KEYS[table]


def table_prefix(table: str) -> str:
    """The folder of a table in the lake: a fact's partitions, a dimension's snapshots.

    Examples
    --------
    >>> table_prefix("fact_sales_order")
    'lake/fact_sales_order/'
    """
    return f"{LAKE_PREFIX}/{table}/"


def change_key(table: str, generation: str, number: int) -> str:
    """The key of a dimension's change in a generation.

    Examples
    --------
    >>> change_key("dim_staff", "20241114T090000000000Z-ab12cd", 3)
    'lake/_changes/dim_staff/20241114T090000000000Z-ab12cd/000000000003.parquet'
    """
    return f"{CHANGES_PREFIX}/{table}/{generation}/{number:012d}.parquet"


def snapshot_prefix(table: str, generation: str, changes: int) -> str:
    """The folder of a dimension's snapshot holding its first ``changes`` changes.

    Named after what it holds, so two catalog steps merging the same changes write the
    same object, and names sort in the order the snapshots were made.

    Examples
    --------
    >>> snapshot_prefix("dim_staff", "20241114T090000000000Z-ab12cd", 4)
    'lake/dim_staff/version=20241114T090000000000Z-ab12cd-000000000004/'
    """
    return f"{table_prefix(table)}version={generation}-{changes:012d}/"


def state_key(table: str) -> str:
    """The export watermark of a table (facts and dim_date).

    Examples
    --------
    >>> state_key("fact_payment")
    'lake/_state/fact_payment.json'
    """
    return f"{STATE_PREFIX}/{table}.json"


class ExportState(VersionedDocument):
    """How far the lake holds a table.

    A fact uses ``exported_through`` (the last surrogate key exported); a dimension its
    ``generation``, the ``changes`` written in it, and ``loaded_through`` (the ledger
    time of the last file exported; for dim_date, which has no files, ``rows``).
    """

    exported_through: NonNegativeInt = 0
    generation: str | None = None
    changes: NonNegativeInt = 0
    loaded_through: AwareDatetime | None = None
    rows: NonNegativeInt = 0


def read_state(s3: Any, bucket: str, table: str) -> ExportState:
    """A table's export watermark (an empty one if the lake has none)."""
    return read_document(s3, bucket, state_key(table), ExportState)


def fact_files(table: str, rows: pa.Table, first_record: int) -> dict[str, pa.Table]:
    """The lake files of exported fact rows: one per month of ``last_updated``.

    Each is named after the first record of the export, so exporting the same records
    again (after a crash, say) rewrites the same objects instead of adding others.

    Examples
    --------
    >>> from datetime import date
    >>> rows = pa.table({"last_updated_date": pa.array([date(2024, 11, 3),
    ...     date(2024, 12, 1)], pa.date32())})
    >>> sorted(fact_files("fact_payment", rows, 41))  # doctest: +NORMALIZE_WHITESPACE
    ['lake/fact_payment/last_updated_month=2024-11/000000000041.parquet',
     'lake/fact_payment/last_updated_month=2024-12/000000000041.parquet']
    """
    if table not in FACT_TABLES:
        raise ValueError(f"{table!r} is not a fact table")
    dates = rows.column("last_updated_date")
    # yyyymm as a number: one sort by it, then a slice per month (a filter per month would
    # read every row once for each month of the export).
    months = pc.add(pc.multiply(pc.year(dates), 100), pc.month(dates))
    order = pc.sort_indices(months)
    months, rows = months.take(order), rows.take(order)
    counts = pc.value_counts(months)
    files, start = {}, 0
    for month, count in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        name = f"{PARTITION_COLUMN}={month // 100:04d}-{month % 100:02d}"
        files[f"{table_prefix(table)}{name}/{first_record:012d}.parquet"] = rows.slice(start, count)
        start += count
    return files
