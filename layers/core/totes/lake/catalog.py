"""The catalog step: one Glue table per warehouse table, kept current with awswrangler.

Load writes the lake (see :mod:`totes.lake.layout`); this step describes it:

- a fact table is a Glue table over ``lake/<fact>/``, partitioned by the month of
  ``last_updated``; each month folder load has written is added as a partition;
- a dimension (and dim_date) is a Glue table over its current snapshot: the changes
  load wrote since the last snapshot (the lake's export state says how many there are)
  are merged into a new one (the latest row per key, in commit order), and the table
  is pointed at it, with the generation and the number of changes it holds recorded
  in the table's parameters. A new generation, or a snapshot gone missing, is rebuilt
  from the generation's first change.

Column types come from the Parquet files themselves (``wr.s3.read_parquet_metadata``),
so the catalog always says what the files hold.

The step reads the database's tables in one request and each table's export state,
and works only on the tables whose state moved since the step last described them:
a dimension whose table parameters name fewer changes than the state, a fact whose
``totes_exported_through`` parameter differs from the state's watermark (recorded
once its partitions are registered). A run whose catalog step failed is therefore
repaired by the next one, and a Glue table deleted by hand is made again; a partition
deleted by hand comes back when its fact next exports a row. A table that fails does
not stop the others; the step then raises :class:`LakeCatalogError`, naming each.
Tables are brought up to date a few at once, the largest first: each one mostly waits
for S3 and Glue, and merging a snapshot runs in Arrow without the GIL.

This module imports awswrangler, which comes from the AWS-managed AWS SDK for pandas
layer: only the catalog function loads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import awswrangler as wr
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from totes.contracts import NonEmptyText, parse_event, settings_from_environment
from totes.errors import LakeCatalogError
from totes.key_runs import last_of_each_key
from totes.lake.layout import (
    PARTITION_COLUMN,
    change_key,
    key_of,
    read_state,
    snapshot_prefix,
    table_prefix,
)
from totes.lake.reusing_session import ReusingSession
from totes.names import FACT_TABLES, WAREHOUSE_TABLES, EnvironmentVariable, largest_first
from totes.parquet_objects import parquet_bytes, read_parquet

#: Table parameters the catalog step keeps on each dimension's Glue table: the generation
#: of changes its snapshot holds, and how many of them.
GENERATION: Final = "totes_generation"
CHANGES_MERGED: Final = "totes_changes_merged"
#: Kept on each fact's Glue table: the lake's export watermark (the last record
#: exported) when the step last registered the table's partitions.
EXPORTED_THROUGH: Final = "totes_exported_through"
_SNAPSHOT_FILE: Final = "data.parquet"
#: Tables brought up to date at once.
TABLES_AT_ONCE: Final = 4
#: What can go wrong with one table and not the others: AWS, awswrangler, a Parquet file,
#: a lake state document.
_TABLE_FAILURES: Final = (
    BotoCoreError,
    ClientError,
    pa.ArrowException,
    OSError,
    ValidationError,  # a lake state document that is not one
    wr.exceptions.InvalidFile,
    wr.exceptions.NoFilesFound,
    wr.exceptions.UnsupportedType,
    wr.exceptions.UndetectedType,
    wr.exceptions.InvalidTable,
    wr.exceptions.ServiceApiError,
)


class CatalogRequest(BaseModel):
    """The event of ``CatalogLake``: the run it belongs to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: NonEmptyText

    @classmethod
    def from_event(cls, event: Any) -> CatalogRequest:
        """Validate the event.

        Raises
        ------
        InvalidEventError
            ``run_id`` is missing or empty.
        """
        return parse_event(cls, event, what="catalog event")


class CatalogSettings(BaseModel):
    """The processed bucket and the Glue database (environment variables in Lambda).

    Examples
    --------
    >>> CatalogSettings.from_environment({"PROCESSED_BUCKET": "p"})
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable LAKE_DATABASE is not set
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: NonEmptyText = Field(alias=EnvironmentVariable.PROCESSED_BUCKET)
    database: NonEmptyText = Field(alias=EnvironmentVariable.LAKE_DATABASE)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> CatalogSettings:
        """Read ``PROCESSED_BUCKET`` and ``LAKE_DATABASE``.

        Raises
        ------
        InvalidSettingError
            One of them is not set.
        """
        return settings_from_environment(cls, environment)


class TableCatalogued(BaseModel):
    """What the step did to one table."""

    model_config = ConfigDict(frozen=True)

    table: str
    created: bool = False
    partitions_added: NonNegativeInt = 0
    changes_merged: NonNegativeInt = 0
    rows: NonNegativeInt | None = None


class CatalogPayload(BaseModel):
    """What the catalog handler returns to the state machine (counts only)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    database: str
    tables: NonNegativeInt
    tables_created: NonNegativeInt
    partitions_added: NonNegativeInt
    snapshots_written: NonNegativeInt


@dataclass
class CatalogResult:
    """What the catalog step did, table by table."""

    run_id: str
    database: str
    tables: list[TableCatalogued] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """The handler's return value.

        Examples
        --------
        >>> CatalogResult("r", "lake", [TableCatalogued(table="dim_staff", changes_merged=2)]
        ...               ).to_payload()["snapshots_written"]
        1
        """
        return CatalogPayload(
            run_id=self.run_id,
            database=self.database,
            tables=len(self.tables),
            tables_created=sum(table.created for table in self.tables),
            partitions_added=sum(table.partitions_added for table in self.tables),
            snapshots_written=sum(bool(table.changes_merged) for table in self.tables),
        ).model_dump()


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from (item["Key"] for item in page.get("Contents", []))


def _folders(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        yield from (item["Prefix"] for item in page.get("CommonPrefixes", []))


def _glue_tables(glue: Any, database: str) -> dict[str, dict[str, Any]]:
    """Every table of the database as Glue describes it, by name (a request per 100)."""
    paginator = glue.get_paginator("get_tables")
    return {
        table["Name"]: table
        for page in paginator.paginate(DatabaseName=database)
        for table in page.get("TableList", [])
    }


def _columns_types(bucket: str, key: str, session: ReusingSession) -> dict[str, str]:
    """The Athena types of a Parquet object's columns, as awswrangler reads them."""
    columns, _ = wr.s3.read_parquet_metadata(path=f"s3://{bucket}/{key}", boto3_session=session)
    return dict(columns)


def _catalog_fact(
    s3: Any,
    settings: CatalogSettings,
    table: str,
    described: dict[str, Any] | None,
    session: ReusingSession,
) -> TableCatalogued:
    exported_through = read_state(s3, settings.bucket, table).exported_through
    parameters = (described or {}).get("Parameters", {})
    if parameters.get(EXPORTED_THROUGH) == str(exported_through):
        return TableCatalogued(table=table)  # no record exported since the last step
    months = list(_folders(s3, settings.bucket, f"{table_prefix(table)}{PARTITION_COLUMN}="))
    if not months:
        return TableCatalogued(table=table)
    location = f"s3://{settings.bucket}/{table_prefix(table)}"
    created = described is None
    if created:
        first = next(_keys(s3, settings.bucket, months[0]))
        columns = _columns_types(settings.bucket, first, session)
        wr.catalog.create_parquet_table(
            database=settings.database,
            table=table,
            path=location,
            columns_types=columns,
            partitions_types={PARTITION_COLUMN: "string"},
            compression="zstd",
            description=f"{table}: every version the warehouse holds, by month of last_updated",
            boto3_session=session,
        )
    registered = set(
        wr.catalog.get_parquet_partitions(
            database=settings.database, table=table, boto3_session=session
        )
    )
    missing = {
        f"s3://{settings.bucket}/{folder}": [folder.rstrip("/").rsplit("=", 1)[1]]
        for folder in months
        if f"s3://{settings.bucket}/{folder}" not in registered
    }
    if missing:
        wr.catalog.add_parquet_partitions(
            database=settings.database,
            table=table,
            partitions_values=missing,
            compression="zstd",
            boto3_session=session,
        )
    # Recorded last: a step that fails before this point is done again by the next one.
    wr.catalog.upsert_table_parameters(
        {EXPORTED_THROUGH: str(exported_through)},
        database=settings.database,
        table=table,
        boto3_session=session,
    )
    return TableCatalogued(table=table, created=created, partitions_added=len(missing))


def latest_rows(tables: list[pa.Table], key: str) -> pa.Table:
    """The last row of each key over ``tables`` in order (later tables win), sorted by key.

    Examples
    --------
    >>> old = pa.table({"k": [1, 2], "v": ["a", "b"]})
    >>> new = pa.table({"k": [2], "v": ["c"]})
    >>> latest_rows([old, new], "k").column("v").to_pylist()
    ['a', 'c']
    """
    combined = pa.concat_tables(tables, promote_options="permissive")
    ordered = combined.sort_by([(key, "ascending")])  # stable: later rows stay later
    return ordered.filter(last_of_each_key(ordered, [key]))


def _snapshot_rows(
    s3: Any, bucket: str, table: str, generation: str, *, merged: int, changes: int
) -> pa.Table:
    """The table's current rows: the last snapshot, if it can be built on, and the changes since."""
    bases: list[pa.Table] = []
    if merged:
        snapshot = f"{snapshot_prefix(table, generation, merged)}{_SNAPSHOT_FILE}"
        try:
            bases = [read_parquet(s3, bucket, snapshot)]
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            merged = 0  # the snapshot is gone: rebuild from the generation's first change
    changes_read = [
        read_parquet(s3, bucket, change_key(table, generation, number))
        for number in range(merged, changes)
    ]
    return latest_rows([*bases, *changes_read], key_of(table))


def _catalog_dimension(
    s3: Any,
    settings: CatalogSettings,
    table: str,
    described: dict[str, Any] | None,
    session: ReusingSession,
) -> TableCatalogued:
    state = read_state(s3, settings.bucket, table)
    if state.generation is None:
        return TableCatalogued(table=table)  # nothing of it in the lake yet
    parameters = (described or {}).get("Parameters", {})
    # A new generation (a lake begun again) is built from its first change.
    merged = (
        int(parameters.get(CHANGES_MERGED, 0))
        if parameters.get(GENERATION) == state.generation
        else 0
    )
    if merged >= state.changes:
        return TableCatalogued(table=table)
    rows = _snapshot_rows(
        s3, settings.bucket, table, state.generation, merged=merged, changes=state.changes
    )
    folder = snapshot_prefix(table, state.generation, state.changes)
    s3.put_object(Bucket=settings.bucket, Key=f"{folder}{_SNAPSHOT_FILE}", Body=parquet_bytes(rows))
    wr.catalog.create_parquet_table(
        database=settings.database,
        table=table,
        path=f"s3://{settings.bucket}/{folder}",
        columns_types=_columns_types(settings.bucket, f"{folder}{_SNAPSHOT_FILE}", session),
        compression="zstd",
        description=f"{table}: the current rows, as in the warehouse",
        parameters={GENERATION: state.generation, CHANGES_MERGED: str(state.changes)},
        mode="overwrite",
        boto3_session=session,
    )
    _prune_snapshots(s3, settings.bucket, table, described)
    return TableCatalogued(
        table=table,
        created=described is None,
        changes_merged=state.changes - merged,
        rows=rows.num_rows,
    )


def _prune_snapshots(s3: Any, bucket: str, table: str, before: dict[str, Any] | None) -> None:
    """Delete the snapshots older than the one the table pointed at before this step.

    That one stays (a query that began on it still finds its files), and so does any
    newer one: an overlapping step may have written it, or pointed the table at it.
    """
    location = str((before or {}).get("StorageDescriptor", {}).get("Location", ""))
    previous = location.removeprefix(f"s3://{bucket}/")
    if not previous.startswith(table_prefix(table)):
        return
    for folder in _folders(s3, bucket, table_prefix(table)):
        if folder < previous:
            for key in _keys(s3, bucket, folder):
                s3.delete_object(Bucket=bucket, Key=key)


def catalog_lake(
    request: CatalogRequest,
    settings: CatalogSettings,
    *,
    s3: Any,
    glue: Any,
    session: ReusingSession | None = None,
) -> CatalogResult:
    """Bring every table of the lake up to date in the Glue catalog.

    ``session`` is shared by the threads that catalogue tables at once: a
    :class:`~totes.lake.reusing_session.ReusingSession` makes its clients under a lock
    (a plain boto3 session is not safe to make clients from in several threads).

    Raises
    ------
    LakeCatalogError
        Some tables could not be brought up to date (named, with why); the others were.

    Examples
    --------
    >>> catalog_lake(CatalogRequest(run_id="r"), settings, s3=s3, glue=glue)  # doctest: +SKIP
    CatalogResult(run_id='r', database='totes_lake', tables=[...])
    """
    shared = session or ReusingSession()
    result = CatalogResult(run_id=request.run_id, database=settings.database)
    try:
        described = _glue_tables(glue, settings.database)
    except (BotoCoreError, ClientError) as exc:
        raise LakeCatalogError(
            f"the Glue database {settings.database} cannot be read (the warehouse is "
            f"loaded; the next run tries again): {type(exc).__name__}: {exc}"
        ) from exc
    with ThreadPoolExecutor(max_workers=TABLES_AT_ONCE) as pool:
        started = {
            table: pool.submit(
                _catalog_fact if table in FACT_TABLES else _catalog_dimension,
                s3,
                settings,
                table,
                described.get(table),
                shared,
            )
            for table in largest_first(WAREHOUSE_TABLES)
        }
    failures: dict[str, Exception] = {}
    for table in WAREHOUSE_TABLES:
        try:
            result.tables.append(started[table].result())
        except _TABLE_FAILURES as exc:  # every table gets its turn; all are reported
            failures[table] = exc
    if failures:
        named = "; ".join(
            f"{table}: {type(exc).__name__}: {exc}" for table, exc in failures.items()
        )
        raise LakeCatalogError(
            f"{len(failures)} of {len(WAREHOUSE_TABLES)} lake tables were not brought up to "
            f"date (the warehouse is loaded; the next run tries again): {named}"
        ) from next(iter(failures.values()))
    return result
