"""The quarantined rows of a deployment, as ``totes rejects`` lists them.

Rows a stage could not apply are kept in the processed bucket, each with its reason:

- ``rejects/<table>/run=<run>/<digest>.parquet``: source rows transform could not
  shape (a date that is not a date). They stay as a record; the warehouse gets the
  row once the source row is fixed (its new version has a new ``last_updated``).
- ``rejects/<table>/run=<run>/<file>.load.parquet``: fact rows load held back because
  a dimension row they reference was missing. Load replays them on every run and
  removes each from the object once it is in the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from totes.load.gold_files import REJECT_REASON
from totes.parquet_objects import parquet_table
from totes.tables import FACT_TABLES, WAREHOUSE
from totes.zones.rejects import RejectsKey, rejects_prefix


@dataclass(frozen=True)
class QuarantinedRow:
    """One row kept aside, with why, where it came from and where it is kept."""

    table: str
    #: ``transform`` (could not be shaped) or ``load`` (waits for a dimension row).
    stage: str
    run_id: str
    #: The source row's version: its id and ``last_updated``.
    source_key: str
    reason: str
    object_key: str

    def as_json(self) -> dict[str, str]:
        """The row as ``totes rejects --json`` prints it."""
        return asdict(self)


def _version(row: dict[str, Any], table: str) -> str:
    key = WAREHOUSE[table].key if table in FACT_TABLES else next(iter(row))
    if "last_updated" in row:
        stamp = row["last_updated"]
    else:
        stamp = datetime.combine(row["last_updated_date"], row["last_updated_time"])
    shown = stamp.isoformat(sep=" ", timespec="milliseconds") if stamp else "?"
    return f"{key} {row.get(key)}, last_updated {shown}"


def quarantined_rows(
    s3: Any, bucket: str, *, table: str | None = None, run_id: str | None = None
) -> Iterator[QuarantinedRow]:
    """Every quarantined row of the bucket, oldest run first, optionally of one table or run.

    Examples
    --------
    >>> [row.reason for row in quarantined_rows(s3, "processed", table="fact_sales_order")]
    ... # doctest: +SKIP
    ["agreed_delivery_date 'soon' is not a YYYY-MM-DD date"]
    """
    listed = [
        parsed
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=rejects_prefix(table)
        )
        for item in page.get("Contents", [])
        if (parsed := RejectsKey.parse(item["Key"])) is not None
    ]
    for rejects in sorted(listed, key=lambda parsed: (parsed.run_id, parsed.key)):
        if run_id and rejects.run_id != run_id:
            continue
        body = s3.get_object(Bucket=bucket, Key=rejects.key)["Body"].read()
        for row in parquet_table(body).to_pylist():
            yield QuarantinedRow(
                table=rejects.table,
                stage=rejects.stage.value,
                run_id=rejects.run_id,
                source_key=_version(row, rejects.table),
                reason=str(row.get(REJECT_REASON)),
                object_key=rejects.key,
            )
