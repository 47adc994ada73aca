"""Where the lake's files are, and what they hold.

The lake answers like the warehouse: a fact table holds every version the warehouse
holds (with its surrogate key), a dimension its current rows. Load writes what it
commits, so the lake never runs ahead of the warehouse nor misses what it took::

    lake/<fact>/last_updated_month=<YYYY-MM>/<first record id>.parquet
        the fact rows load inserted, exported after the commit by surrogate key (an
        export watermark per fact: lake/_state/<fact>.json), split by month of
        last_updated; Glue partitions them by that month
    lake/_changes/<dimension>/<gold file stem>.parquet
        the rows of each dimension file load applied (sorted names: commit order),
        after, the first time, the whole dimension as the warehouse held it
        (0000000000-warehouse.parquet: a lake started beside a loaded warehouse)
    lake/_changes/dim_date/<rows>.parquet
        all of dim_date, each time it grew (named after its row count)
    lake/<table>/version=<newest change>/data.parquet
        the current rows of a dimension, compacted from its changes by the catalog step

Types are the warehouse's, but for the time of day: Athena has no TIME column type,
so ``created_time`` and ``last_updated_time`` are text, ``HH:MM:SS.mmm`` (sortable,
and ``CAST(... AS time)`` where a time is wanted).
"""

from __future__ import annotations

import io
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


def changes_prefix(table: str) -> str:
    """The folder of a dimension's change files.

    Examples
    --------
    >>> changes_prefix("dim_staff")
    'lake/_changes/dim_staff/'
    """
    return f"{CHANGES_PREFIX}/{table}/"


#: The first change of a dimension: all of it, as the warehouse held it when the lake began.
INITIAL_CHANGE: Final = "0000000000-warehouse"


def state_key(table: str) -> str:
    """The export watermark of a table (facts and dim_date).

    Examples
    --------
    >>> state_key("fact_payment")
    'lake/_state/fact_payment.json'
    """
    return f"{STATE_PREFIX}/{table}.json"


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
    months = pc.strftime(rows.column("last_updated_date"), format="%Y-%m")
    files = {}
    for month in pc.unique(months).to_pylist():
        key = f"{table_prefix(table)}{PARTITION_COLUMN}={month}/{first_record:012d}.parquet"
        files[key] = rows.filter(pc.equal(months, month))
    return files


def parquet_bytes(rows: pa.Table) -> bytes:
    """A table as a Parquet object (zstd, as the star zone)."""
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd")
    return sink.getvalue()


def read_parquet(s3: Any, bucket: str, key: str) -> pa.Table:
    """One Parquet object of the lake, whole."""
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
