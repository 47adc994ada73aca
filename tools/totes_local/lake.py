"""``totes lake``: the lake's tables, and SQL over them, on one machine or on AWS.

The Glue catalog says which tables there are, where their files are and which
partitions a table has; both engines read exactly that:

- on one machine, DuckDB runs the SQL over pyarrow datasets that read the Parquet
  files from the local AWS service's S3 endpoint as the query needs them (nothing is
  downloaded first), one dataset per catalogued table, partitions as columns;
- against a deployed stack, Athena runs it in the stack's workgroup, through
  awswrangler.

The same simple SQL (SELECT, JOIN, GROUP BY over the star schema) runs on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from totes.errors import TotesError
from totes_local.stacks import StackOutputs

_S3_LOCATION = re.compile(r"s3://(?P<bucket>[^/]+)/(?P<prefix>.*)")


class LakeQueryError(TotesError):
    """The lake could not answer a query: no such table, or the SQL is not valid."""


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake as the Glue catalog describes it."""

    name: str
    location: str
    columns: list[tuple[str, str]]
    partition_keys: list[tuple[str, str]]
    partitions: list[tuple[list[str], str]]

    @property
    def partitioned(self) -> bool:
        """Whether the table has partition columns (the facts, by month)."""
        return bool(self.partition_keys)

    def as_json(self) -> dict[str, Any]:
        """The table as ``totes lake tables --json`` prints it."""
        return {
            "table": self.name,
            "location": self.location,
            "columns": [{"name": name, "type": kind} for name, kind in self.columns],
            "partition_keys": [name for name, _ in self.partition_keys],
            "partitions": len(self.partitions),
        }


def _pages(glue: Any, operation: str, key: str, **arguments: Any) -> Iterator[dict[str, Any]]:
    for page in glue.get_paginator(operation).paginate(**arguments):
        yield from page[key]


def lake_tables(stack: StackOutputs) -> list[LakeTable]:
    """Every table of the stack's lake database, with its columns and partitions.

    Examples
    --------
    >>> [table.name for table in lake_tables(local_stack(Path(".totes")))]  # doctest: +SKIP
    ['dim_counterparty', 'dim_currency', ..., 'fact_sales_order']
    """
    glue = stack.client("glue")
    database = stack.output("LakeDatabaseName")
    tables = []
    for found in _pages(glue, "get_tables", "TableList", DatabaseName=database):
        descriptor = found["StorageDescriptor"]
        keys = [(key["Name"], key["Type"]) for key in found.get("PartitionKeys", [])]
        partitions = (
            [
                (list(partition["Values"]), partition["StorageDescriptor"]["Location"])
                for partition in _pages(
                    glue,
                    "get_partitions",
                    "Partitions",
                    DatabaseName=database,
                    TableName=found["Name"],
                )
            ]
            if keys
            else []
        )
        tables.append(
            LakeTable(
                name=found["Name"],
                location=descriptor["Location"],
                columns=[(column["Name"], column["Type"]) for column in descriptor["Columns"]],
                partition_keys=keys,
                partitions=sorted(partitions),
            )
        )
    return sorted(tables, key=lambda table: table.name)


def _filesystem(stack: StackOutputs) -> Any:
    from pyarrow import fs  # noqa: PLC0415

    from totes_local.runtime.service import LOCAL_CREDENTIALS  # noqa: PLC0415

    endpoint = urlsplit(stack.endpoint_url or "")
    return fs.S3FileSystem(
        access_key=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region=stack.region,
        scheme=endpoint.scheme,
        endpoint_override=endpoint.netloc,
    )


def _files(s3: Any, location: str) -> list[str]:
    match = _S3_LOCATION.fullmatch(location)
    if match is None:
        raise LakeQueryError(f"a lake table lives at {location}, which is not an S3 location")
    paginator = s3.get_paginator("list_objects_v2")
    return sorted(
        f"{match['bucket']}/{item['Key']}"
        for page in paginator.paginate(Bucket=match["bucket"], Prefix=match["prefix"])
        for item in page.get("Contents", [])
        if item["Key"].endswith(".parquet")
    )


def _dataset(stack: StackOutputs, table: LakeTable) -> Any:
    """The table's registered files (and partitions) as one pyarrow dataset over S3."""
    import pyarrow.dataset as ds  # noqa: PLC0415

    filesystem, s3 = _filesystem(stack), stack.client("s3")
    if not table.partitioned:
        return ds.dataset(_files(s3, table.location), filesystem=filesystem, format="parquet")
    base = table.location.removeprefix("s3://").rstrip("/")
    partitioning = ds.partitioning(
        pa.schema([(name, pa.string()) for name, _ in table.partition_keys]), flavor="hive"
    )
    files = [path for _, location in table.partitions for path in _files(s3, location)]
    return ds.dataset(
        files,
        filesystem=filesystem,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=base,
    )


def query(stack: StackOutputs, statement: str) -> pa.Table:
    """Run SQL over the lake: DuckDB on one machine, Athena for a deployed stack.

    Raises
    ------
    LakeQueryError
        The SQL does not run (a table the lake lacks, a syntax error): the engine says why.

    Examples
    --------
    >>> query(local_stack(Path(".totes")), "SELECT count(*) AS n FROM fact_sales_order")
    ... # doctest: +SKIP
    pyarrow.Table
    n: int64
    """
    return _query_locally(stack, statement) if stack.local else _query_athena(stack, statement)


def _query_locally(stack: StackOutputs, statement: str) -> pa.Table:
    import duckdb  # noqa: PLC0415

    connection = duckdb.connect()
    try:
        for table in lake_tables(stack):
            connection.register(table.name, _dataset(stack, table))
        relation = connection.sql(statement)
        # A statement that returns no rows (DDL, SET) has no relation.
        result: pa.Table = relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise LakeQueryError(f"the lake could not run the query: {exc}") from exc
    finally:
        connection.close()
    return result


def _query_athena(stack: StackOutputs, statement: str) -> pa.Table:
    import awswrangler as wr  # noqa: PLC0415
    import boto3  # noqa: PLC0415

    try:
        frame = wr.athena.read_sql_query(
            statement,
            database=stack.output("LakeDatabaseName"),
            workgroup=stack.output("LakeWorkgroupName"),
            ctas_approach=False,
            dtype_backend="pyarrow",
            boto3_session=boto3.Session(region_name=stack.region),
        )
    except wr.exceptions.QueryFailed as exc:
        raise LakeQueryError(f"Athena could not run the query: {exc}") from exc
    return pa.Table.from_pandas(frame, preserve_index=False)
