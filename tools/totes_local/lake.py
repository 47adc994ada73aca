"""``totes lake``: the lake's Iceberg tables, and SQL over them, now or as they were.

The Glue catalog lists the tables; each is an Apache Iceberg table, read through its
own metadata (pyiceberg), the same way on one machine and on AWS:

- on one machine, DuckDB runs the SQL over pyiceberg scans of the tables the
  statement names (DuckDB's own Iceberg extension is downloaded at run time, which an
  offline machine cannot do);
- against a deployed stack, Athena (engine 3, which reads Iceberg) runs it in the
  stack's workgroup, through awswrangler.

``--as-of`` reads every table as it was at a time, or when a run committed: locally
each table's snapshot of that time is scanned; on Athena each table is read ``FOR
TIMESTAMP AS OF`` that time (through a ``WITH`` clause named after it, so the same SQL
runs unchanged). The same simple SQL (SELECT, JOIN, GROUP BY over the star schema) runs
on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from totes.errors import TotesError
from totes.lake.iceberg import RUN, Lake, LakeSettings
from totes.lake.layout import lake_schema
from totes.tables import WAREHOUSE_TABLES
from totes_local.stacks import StackOutputs

if TYPE_CHECKING:
    from pyiceberg.table import Table

_LEADING_WITH = re.compile(r"^\s*with\s+", re.IGNORECASE)


class LakeQueryError(TotesError):
    """The lake could not answer a query: no such table or run, or the SQL is not valid."""


@dataclass(frozen=True)
class LakeSnapshot:
    """One snapshot of a lake table: a commit, what made it, and when."""

    snapshot_id: int
    committed_at: datetime
    operation: str
    run_id: str | None
    rows_added: int

    def as_json(self) -> dict[str, Any]:
        """The snapshot as ``totes lake tables --json`` prints it."""
        return {
            "snapshot_id": self.snapshot_id,
            "committed_at": self.committed_at.isoformat(),
            "operation": self.operation,
            "run_id": self.run_id,
            "rows_added": self.rows_added,
        }


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake as its current Iceberg metadata describes it."""

    name: str
    location: str
    columns: list[tuple[str, str]]
    partition_keys: list[str]
    rows: int
    files: int
    partitions: int
    snapshots: list[LakeSnapshot]

    def as_json(self) -> dict[str, Any]:
        """The table as ``totes lake tables --json`` prints it."""
        return {
            "table": self.name,
            "location": self.location,
            "columns": [{"name": name, "type": kind} for name, kind in self.columns],
            "partition_keys": self.partition_keys,
            "rows": self.rows,
            "files": self.files,
            "partitions": self.partitions,
            "snapshots": [snapshot.as_json() for snapshot in self.snapshots],
        }


def stack_lake(stack: StackOutputs) -> Lake:
    """The lake of a deployment, read with the caller's credentials (the local service's)."""
    from totes_local.runtime.service import LOCAL_CREDENTIALS  # noqa: PLC0415

    file_io = {"s3.region": stack.region} if stack.region else {}
    if stack.endpoint_url is not None:
        file_io |= {
            "s3.endpoint": stack.endpoint_url,
            "s3.access-key-id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
    settings = LakeSettings(
        bucket=stack.output("ProcessedBucketName"), database=stack.output("LakeDatabaseName")
    )
    return Lake(settings, glue=stack.client("glue"), s3=stack.client("s3"), file_io=file_io)


def _snapshots(table: Table) -> list[LakeSnapshot]:
    snapshots = []
    for snapshot in table.snapshots():
        summary = snapshot.summary
        snapshots.append(
            LakeSnapshot(
                snapshot_id=snapshot.snapshot_id,
                committed_at=datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC),
                operation=str(summary.operation.value) if summary else "",
                run_id=summary.get(RUN) if summary else None,
                # A figure the summary lacks reads as None (a delete adds no records).
                rows_added=int(summary["added-records"] or 0) if summary else 0,
            )
        )
    return snapshots


def lake_tables(stack: StackOutputs) -> list[LakeTable]:
    """Every table of the stack's lake, with its files, partitions and snapshots.

    Examples
    --------
    >>> [table.name for table in lake_tables(local_stack(Path(".totes")))]  # doctest: +SKIP
    ['dim_counterparty', 'dim_currency', ..., 'fact_sales_order']
    """
    lake = stack_lake(stack)
    found = []
    for name in sorted(WAREHOUSE_TABLES):
        table = lake.table(name)
        if table is None:
            continue
        files = table.inspect.files().select(["record_count"])
        spec = table.spec()
        found.append(
            LakeTable(
                name=name,
                location=table.location(),
                columns=[(field.name, str(field.field_type)) for field in table.schema().fields],
                partition_keys=[field.name for field in spec.fields],
                rows=sum(files.column("record_count").to_pylist()),
                files=files.num_rows,
                partitions=table.inspect.partitions().num_rows if spec.fields else 0,
                snapshots=_snapshots(table),
            )
        )
    return found


def as_of_moment(stack: StackOutputs, as_of: str) -> datetime:
    """The moment ``--as-of`` names: a time (ISO 8601, UTC if no offset), or a run's commit.

    A run's moment is that of the last lake snapshot it made.

    Raises
    ------
    LakeQueryError
        Neither a time nor a run the lake holds a snapshot of (an idle run commits
        nothing; snapshots older than the retention are gone).
    """
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        lake = stack_lake(stack)
        made = [
            snapshot.timestamp_ms
            for name in WAREHOUSE_TABLES
            if (table := lake.table(name)) is not None
            for snapshot in table.snapshots()
            if snapshot.summary and snapshot.summary.get(RUN) == as_of
        ]
        if not made:
            raise LakeQueryError(
                f"{as_of!r} is neither a time (ISO 8601, e.g. 2024-11-14T09:30:00Z) nor a run "
                "that committed to the lake (an idle run commits nothing; snapshots older "
                "than the retention are expired): give a time"
            ) from None
        return datetime.fromtimestamp(max(made) / 1000, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _named_tables(statement: str) -> list[str]:
    return [name for name in WAREHOUSE_TABLES if re.search(rf"\b{name}\b", statement)]


def query(stack: StackOutputs, statement: str, *, as_of: str | None = None) -> pa.Table:
    """Run SQL over the lake, now or as of a time or run: DuckDB here, Athena on AWS.

    Raises
    ------
    LakeQueryError
        The SQL does not run (a table the lake lacks, a syntax error): the engine says
        why; or ``as_of`` names no time or run.

    Examples
    --------
    >>> query(local_stack(Path(".totes")), "SELECT count(*) AS n FROM fact_sales_order")
    ... # doctest: +SKIP
    pyarrow.Table
    n: int64
    """
    moment = as_of_moment(stack, as_of) if as_of else None
    if stack.local:
        (result,) = _query_locally(stack, [statement], moment)
        return result
    return _query_athena(stack, statement, moment)


def _scan(table: Table | None, name: str, moment: datetime | None) -> pa.Table:
    """A table's rows now, or as of ``moment`` (none, with its columns, if it was not there)."""
    if table is None:
        return lake_schema(name).empty_table()
    if moment is None:
        return table.scan().to_arrow()
    snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
    if snapshot is None:
        # Every table is made by the first run that loads it: before its first snapshot
        # kept, the moment is older than the run or than the retention.
        oldest = min((kept.timestamp_ms for kept in table.snapshots()), default=None)
        since = "it has no snapshot yet"
        if oldest is not None:
            since = f"the oldest it keeps is from {datetime.fromtimestamp(oldest / 1000, UTC)}"
        raise LakeQueryError(
            f"the lake holds no snapshot of {name} as of {moment:%Y-%m-%d %H:%M:%S %Z} "
            f"({since}; older snapshots are expired after the retention)"
        )
    return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()


def query_each(stack: StackOutputs, statements: Sequence[str]) -> list[pa.Table]:
    """Run several statements over the lake as it is now, as :func:`query` runs each.

    On one machine every table the statements name is scanned once and all of them run
    over the same scans (a page of charts asks several questions of the same tables);
    on AWS, Athena runs each.

    Raises
    ------
    LakeQueryError
        One of the statements does not run.

    Examples
    --------
    >>> [table.num_rows for table in query_each(stack, ["SELECT 1", "SELECT 2"])]
    ... # doctest: +SKIP
    [1, 1]
    """
    if stack.local:
        return _query_locally(stack, statements, None)
    return [_query_athena(stack, statement, None) for statement in statements]


def _query_locally(
    stack: StackOutputs, statements: Sequence[str], moment: datetime | None
) -> list[pa.Table]:
    import duckdb  # noqa: PLC0415

    lake = stack_lake(stack)
    connection = duckdb.connect()
    results: list[pa.Table] = []
    try:
        for name in _named_tables("\n".join(statements)):
            found = lake.table(name)
            if found is None and moment is None:
                continue  # DuckDB names the missing table
            connection.register(name, _scan(found, name, moment))
        for statement in statements:
            relation = connection.sql(statement)
            # A statement that returns no rows (DDL, SET) has no relation.
            results.append(relation.to_arrow_table() if relation is not None else pa.table({}))
    except duckdb.Error as exc:
        raise LakeQueryError(f"the lake could not run the query: {exc}") from exc
    finally:
        connection.close()
    return results


def as_of_statement(statement: str, database: str, tables: list[str], moment: datetime) -> str:
    """The statement with each table read ``FOR TIMESTAMP AS OF`` the moment, for Athena.

    Examples
    --------
    >>> print(as_of_statement("SELECT count(*) FROM dim_staff", "lake", ["dim_staff"],
    ...                       datetime(2024, 11, 14, 9, 30, tzinfo=UTC)))
    ... # doctest: +NORMALIZE_WHITESPACE
    WITH dim_staff AS (SELECT * FROM "lake"."dim_staff"
        FOR TIMESTAMP AS OF TIMESTAMP '2024-11-14 09:30:00.000 UTC')
    SELECT count(*) FROM dim_staff
    """
    if not tables:
        return statement
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    # Table names are the warehouse's own, the database the stack's output: nothing a
    # user typed goes into the clause.
    clause = (
        '{name} AS (SELECT * FROM "{database}"."{name}" '
        "FOR TIMESTAMP AS OF TIMESTAMP '{stamp} UTC')"
    )
    named = ", ".join(clause.format(name=name, database=database, stamp=stamp) for name in tables)
    if _LEADING_WITH.match(statement):
        return f"WITH {named},\n{_LEADING_WITH.sub('', statement, count=1)}"
    return f"WITH {named}\n{statement}"


def _query_athena(stack: StackOutputs, statement: str, moment: datetime | None) -> pa.Table:
    import awswrangler as wr  # noqa: PLC0415
    import boto3  # noqa: PLC0415

    database = stack.output("LakeDatabaseName")
    if moment is not None:
        statement = as_of_statement(statement, database, _named_tables(statement), moment)
    try:
        frame = wr.athena.read_sql_query(
            statement,
            database=database,
            workgroup=stack.output("LakeWorkgroupName"),
            ctas_approach=False,
            dtype_backend="pyarrow",
            boto3_session=boto3.Session(region_name=stack.region),
        )
    except wr.exceptions.QueryFailed as exc:
        raise LakeQueryError(f"Athena could not run the query: {exc}") from exc
    return pa.Table.from_pandas(frame, preserve_index=False)
