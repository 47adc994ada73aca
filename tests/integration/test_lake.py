"""The lake's Iceberg tables, in process against a moto server and a real PostgreSQL: load
commits what the warehouse committed, exactly once through crashes and repeats, a table
lost or of an earlier layout is made again from the warehouse, and maintenance keeps the
files few without changing what a query answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pyarrow as pa
import pytest
from moto.s3.responses import S3Response

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.errors import LakeCommitError
from totes.lake.iceberg import COMMITS_SINCE_MAINTENANCE, EXPORTED_THROUGH, RUN, Lake
from totes.lake.layout import lake_schema, table_prefix
from totes.lake.maintenance import (
    MaintenanceRequest,
    MaintenanceSettings,
    due_tables,
    maintain_lake,
)
from totes.load import lake_export
from totes.names import TRANSIENT_ERRORS
from totes.tables import (
    FACT_TABLES,
    GOLD_TABLES,
    SOURCE_TABLES,
    WAREHOUSE_TABLES,
)
from totes_local.source.mutate import mutate

from .pipeline_harness import LAKE_DATABASE, PROCESSED, REGION, Pipeline


def _lake(pipeline: Pipeline) -> Lake:
    assert pipeline.lake is not None
    return pipeline.lake


def _lake_rows(
    pipeline: Pipeline, table: str, snapshot_id: int | None = None
) -> list[tuple[Any, ...]]:
    """What a reader of the Iceberg table sees (as of a snapshot, if given)."""
    iceberg = _lake(pipeline).table(table)
    assert iceberg is not None, f"the lake has no table {table}"
    rows = iceberg.scan(snapshot_id=snapshot_id).to_arrow().select(lake_schema(table).names)
    return sorted(tuple(row.values()) for row in rows.to_pylist())


def _assert_lake_equals_warehouse(pipeline: Pipeline) -> None:
    assert pipeline.warehouse_dsn is not None
    for table in WAREHOUSE_TABLES:
        assert _lake_rows(pipeline, table) == warehouse_rows_as_lake(
            pipeline.warehouse_dsn, table
        ), table


def _maintain(pipeline: Pipeline, *, every_commits: int = 1, hours_later: int = 0) -> Any:
    return maintain_lake(
        MaintenanceRequest(run_id=pipeline.run_id),
        MaintenanceSettings(bucket=PROCESSED, database=LAKE_DATABASE, every_commits=every_commits),
        lake=_lake(pipeline),
        glue=boto3.client("glue", region_name=REGION),
        now=datetime.now(UTC) + timedelta(hours=hours_later),
    )


def test_every_warehouse_table_is_an_iceberg_table_that_holds_what_the_warehouse_committed(
    lake: Pipeline,
) -> None:
    # Given a first run
    lake.run()
    # Then every warehouse table is an Iceberg table in Glue holding exactly its rows,
    # the facts partitioned by month
    glue = boto3.client("glue", region_name=REGION)
    for table in WAREHOUSE_TABLES:
        described = glue.get_table(DatabaseName=LAKE_DATABASE, Name=table)["Table"]
        assert described["Parameters"]["table_type"] == "ICEBERG", table
    _assert_lake_equals_warehouse(lake)
    sales = _lake(lake).table("fact_sales_order")
    assert sales is not None
    assert [field.name for field in sales.spec().fields] == ["last_updated_month"]
    # And its columns keep the warehouse's types, but times of day, which are text
    arrow = sales.schema().as_arrow()
    assert arrow.field("created_time").type in (pa.string(), pa.large_string())
    assert arrow.field("unit_price").type == pa.decimal128(10, 2)
    assert arrow.field("created_date").type == pa.date32()
    assert arrow.field("sales_record_id").type == pa.int32()
    # When the source changes (new versions, a department moving city) and a run follows
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=3, changes=40)
    lake.run()
    # Then facts gained their new versions and dimensions their current rows, nothing twice
    _assert_lake_equals_warehouse(lake)
    # And an idle run commits nothing
    snapshots = {table: len(_lake(lake).table(table).snapshots()) for table in WAREHOUSE_TABLES}  # type: ignore[union-attr]
    lake.run()
    assert snapshots == {
        table: len(_lake(lake).table(table).snapshots())  # type: ignore[union-attr]
        for table in WAREHOUSE_TABLES
    }


def test_a_crash_between_the_warehouse_commit_and_the_lakes_leaves_nothing_twice(
    lake: Pipeline,
) -> None:
    # Given a run whose loads committed to the warehouse but not to the lake (a crash
    # between the two commits), after a run that reached both
    lake.run()
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=7, changes=60)
    lake_of_pipeline = lake.lake
    lake.lake = None
    lake.run()
    lake.lake = lake_of_pipeline
    # When the next run loads nothing new but finds the lake behind
    lake.run()
    # Then the lake equals the warehouse, no row twice
    _assert_lake_equals_warehouse(lake)
    # And an export repeated from the same position writes nothing more
    assert lake.warehouse_dsn is not None
    with connect(lake.warehouse_dsn) as conn, conn.transaction():
        for table in WAREHOUSE_TABLES:
            assert lake_export.export_to_lake(conn, _lake(lake), table, run_id="again") == 0
    _assert_lake_equals_warehouse(lake)


def test_a_load_whose_lake_commit_fails_is_retried_and_the_retry_completes_the_lake(
    lake: Pipeline,
) -> None:
    # Given everything transformed and the dimensions loaded, and a lake whose files
    # cannot be written (its S3 endpoint does not answer)
    lake.run_through_dimensions()
    healthy = _lake(lake)
    lake.lake = Lake(
        healthy.settings,
        glue=healthy.glue,
        s3=healthy.s3,
        file_io={"s3.endpoint": "http://127.0.0.1:9", "s3.region": REGION},
    )
    # When the fact load commits to the warehouse and then cannot commit to the lake
    with pytest.raises(LakeCommitError, match="fact_sales_order") as failed:
        lake.load("fact_sales_order")
    # Then the error is one the state machine retries
    assert type(failed.value).__name__ in TRANSIENT_ERRORS
    # When the load runs again with the lake healthy
    lake.lake = healthy
    again = lake.load("fact_sales_order")
    # Then nothing went into the warehouse twice, and the lake holds exactly its rows
    assert again.rows_loaded == 0
    assert lake.warehouse_dsn is not None
    assert _lake_rows(lake, "fact_sales_order") == warehouse_rows_as_lake(
        lake.warehouse_dsn, "fact_sales_order"
    )


@pytest.fixture
def read_back(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables the lake export reads back from the warehouse, each time it does."""
    tables: list[str] = []
    copy_out = lake_export._copy_out

    def recorded(conn: Any, query: Any, table: str) -> Any:
        tables.append(table)
        return copy_out(conn, query, table)

    monkeypatch.setattr(lake_export, "_copy_out", recorded)
    return tables


def test_fact_rows_are_appended_a_bite_at_a_time_and_each_bite_records_its_position(
    lake: Pipeline, monkeypatch: pytest.MonkeyPatch, read_back: list[str]
) -> None:
    # Given bites far smaller than a table, and a record of the tables read back from
    # the warehouse for the lake
    monkeypatch.setattr(lake_export, "EXPORT_BITE", 40)
    # And a record of the lake's tables read from the catalog, each time one is
    opened: list[str] = []
    table_of_lake = Lake.table

    def recorded(self: Lake, table: str) -> Any:
        opened.append(table)
        return table_of_lake(self, table)

    monkeypatch.setattr(Lake, "table", recorded)
    # When a run loads the warehouse and the lake
    lake.run()
    opened_by_run = list(opened)
    # Then the lake equals the warehouse, each fact took one commit per bite, and every
    # bite came from the rows the load had just copied in, none read back; each fact
    # table was read from the catalog once per bite (the first found none and made it),
    # not once more to find it lacked nothing
    _assert_lake_equals_warehouse(lake)
    assert not set(read_back) & set(FACT_TABLES)
    assert lake.warehouse_dsn is not None
    for table in FACT_TABLES:
        iceberg = _lake(lake).table(table)
        assert iceberg is not None
        rows = len(warehouse_rows_as_lake(lake.warehouse_dsn, table))
        appends = [s for s in iceberg.snapshots() if s.summary and s.summary.get(RUN)]
        assert len(appends) == -(-rows // 40) > 1, table
        assert opened_by_run.count(table) == len(appends), table
        assert int(iceberg.properties[EXPORTED_THROUGH]) >= rows


def _move_staff(dsn: str, department: int) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "UPDATE staff SET department_id = %s, last_updated = now() "
            "WHERE staff_id = (SELECT min(staff_id) FROM staff)",
            (department,),
        )


def test_a_dimension_change_reads_only_the_file_that_may_hold_its_key(
    lake: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loaded lake whose dim_staff two changes spread over several files
    lake.run()
    for department in (2, 3):
        _move_staff(lake.source_dsn, department)
        lake.run()
    # And a record of the objects S3 is asked for (GETs, with the bytes asked: the
    # server answers in this process)
    fetched: list[tuple[str, str]] = []
    get_object = S3Response.get_object

    def recorded(response: S3Response) -> Any:
        fetched.append((response.path, response.headers.get("Range", "")))
        return get_object(response)

    monkeypatch.setattr(S3Response, "get_object", recorded)
    # When one more staff member moves and a run exports the change
    _move_staff(lake.source_dsn, 4)
    lake.run()
    # Then the change read one data file of dim_staff, once (its footer, then its
    # pages): the one that may hold the changed key. pyiceberg's upsert read two, to
    # find the rows to compare before the rows to rewrite.
    data = [(path, asked) for path, asked in fetched if "/lake/dim_staff/data/" in path]
    assert len({path for path, _ in data}) == 1
    assert len(data) == len(set(data)) == 2
    # And the lake equals the warehouse
    _assert_lake_equals_warehouse(lake)


def test_a_first_load_writes_the_lake_from_the_rows_it_copied_in_and_reads_back_only_dates(
    lake: Pipeline, read_back: list[str]
) -> None:
    # Given an empty warehouse and lake
    # When a run loads both
    lake.run()
    # Then the lake equals the warehouse, and only dim_date (made by load itself) was
    # read back: every other table came from the files the load had just copied in
    _assert_lake_equals_warehouse(lake)
    assert set(read_back) == {"dim_date"}
    # And each table was made by the commit that wrote its rows: its first version holds
    # them (no empty version before it), one metadata file and one snapshot (dim_date
    # aside: it grows as the facts' loads bring dates)
    for table in set(WAREHOUSE_TABLES) - {"dim_date"}:
        iceberg = _lake(lake).table(table)
        assert iceberg is not None
        assert [snapshot.parent_snapshot_id for snapshot in iceberg.snapshots()] == [None]
        metadata = lake.keys(f"{table_prefix(table)}metadata/")
        assert len([key for key in metadata if key.endswith(".metadata.json")]) == 1, table


def test_a_first_load_of_two_files_writes_the_lake_from_the_warehouse_not_the_first_file(
    lake: Pipeline, read_back: list[str]
) -> None:
    # Given two runs that ingested and transformed, none loading: dim_staff has two gold
    # files, the second changing a third of the staff
    for change in (False, True):
        if change:
            with connect(lake.source_dsn) as conn:
                conn.execute(
                    "UPDATE staff SET first_name = first_name || 'x', "
                    "last_updated = localtimestamp(3) WHERE staff_id % 3 = 0"
                )
        lake.runs += 1
        for table in SOURCE_TABLES:
            lake.ingest(table)
        for target in GOLD_TABLES:
            lake.transform(target)

    # When one invocation loads both: the first copied into the empty table, the second
    # upserted over it
    loaded = lake.load("dim_staff")

    # Then the lake was written from the warehouse, which holds both files' rows, and
    # not from the first file's rows in memory
    assert loaded.files == 2
    assert _lake_rows(lake, "dim_staff") == warehouse_rows_as_lake(
        str(lake.warehouse_dsn), "dim_staff"
    )
    assert read_back == ["dim_staff"]


def test_a_dimension_change_larger_than_an_upsert_takes_rewrites_the_table_from_the_warehouse(
    lake: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a loaded lake, and upserts limited to a single row
    lake.run()
    monkeypatch.setattr(lake_export, "UPSERT_MAX_ROWS", 1)
    # When the source changes (a department moving city re-emits every staff row of it)
    # and a run follows
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=11, changes=60)
    lake.run()
    # Then a dimension that changed was rewritten whole by this run (its last commit
    # added as many rows as the table holds), and the lake equals the warehouse
    rewritten = []
    for table in ("dim_staff", "dim_location", "dim_counterparty", "dim_design"):
        iceberg = _lake(lake).table(table)
        assert iceberg is not None
        last = iceberg.current_snapshot()
        assert last is not None
        assert last.summary is not None
        if last.summary.get(RUN) == lake.run_id:
            rewritten.append(last.summary.get("added-records") == last.summary.get("total-records"))
    assert rewritten
    assert all(rewritten)
    _assert_lake_equals_warehouse(lake)


def test_a_table_of_the_earlier_layout_is_replaced_by_an_iceberg_table_from_the_warehouse(
    lake: Pipeline,
) -> None:
    # Given a warehouse loaded beside a lake in the earlier release's layout: a Parquet
    # Glue table over month folders, watermarks and dimension changes of its own
    lake_of_pipeline, lake.lake = lake.lake, None
    lake.run()
    lake.lake = lake_of_pipeline
    earlier = {
        "lake/_state/fact_payment.json": b'{"exported_through": 3}',
        "lake/_changes/dim_staff/20241114T090000000000Z-ab12cd/000000000000.parquet": b"x",
        "lake/fact_payment/last_updated_month=2024-11/000000000001.parquet": b"x",
        "lake/dim_staff/version=20241114T090000000000Z-ab12cd-000000000001/data.parquet": b"x",
    }
    for key, body in earlier.items():
        lake.s3.put_object(Bucket=PROCESSED, Key=key, Body=body)
    glue = boto3.client("glue", region_name=REGION)
    for table in ("fact_payment", "dim_staff"):
        glue.create_table(
            DatabaseName=LAKE_DATABASE,
            TableInput={
                "Name": table,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": {"classification": "parquet", "totes_exported_through": "3"},
                "StorageDescriptor": {"Location": f"s3://{PROCESSED}/lake/{table}/"},
            },
        )
    # When a run follows
    lake.run()
    # Then every table is an Iceberg table equal to the warehouse, and the earlier
    # layout's files are gone
    _assert_lake_equals_warehouse(lake)
    assert not set(earlier) & set(lake.keys("lake/"))


def test_maintenance_compacts_small_files_expires_old_snapshots_and_removes_orphans(
    lake: Pipeline,
) -> None:
    # Given a lake after a first run and two small runs (a file per month touched each)
    lake.run()
    for seed in range(2):
        with connect(lake.source_dsn) as conn:
            mutate(conn, seed=seed, changes=20)
        lake.run()
    sales = _lake(lake).table("fact_sales_order")
    assert sales is not None
    files_before = sales.inspect.files().num_rows
    months = sales.inspect.partitions().num_rows

    # When maintenance runs with every table due, hours after the commits
    result = _maintain(lake, hours_later=30)

    # Then each fact month is one file, old snapshots are gone but the current one, the
    # files they alone held are deleted, and the lake still equals the warehouse
    payload = result.payload()
    assert payload["tables_maintained"] == len(WAREHOUSE_TABLES)
    assert payload["partitions_compacted"] >= 1
    assert payload["orphans_removed"] >= 1
    compacted = _lake(lake).table("fact_sales_order")
    assert compacted is not None
    assert compacted.inspect.files().num_rows == months < files_before
    assert len(compacted.snapshots()) == 1
    referenced = set(compacted.inspect.all_files().column("file_path").to_pylist())
    data_files = {
        f"s3://{PROCESSED}/{key}" for key in lake.keys(f"{table_prefix('fact_sales_order')}data/")
    }
    assert data_files == referenced
    _assert_lake_equals_warehouse(lake)
    # And the count of commits since is back to zero: nothing is due any more
    assert compacted.properties[COMMITS_SINCE_MAINTENANCE] == "0"
    assert due_tables(boto3.client("glue", region_name=REGION), LAKE_DATABASE, 1) == (
        len(WAREHOUSE_TABLES),
        [],
    )


def test_orphans_are_looked_for_once_a_day_not_at_every_maintenance(lake: Pipeline) -> None:
    # Given a maintained lake, and then a stray file in a fact table's data folder
    lake.run()
    _maintain(lake, hours_later=30)
    stray = f"{table_prefix('fact_sales_order')}data/stray.parquet"
    lake.s3.put_object(Bucket=PROCESSED, Key=stray, Body=b"not referenced")

    def maintained_later(hours: int) -> int:
        with connect(lake.source_dsn) as conn:
            mutate(conn, seed=hours, changes=5)
        lake.run()
        return int(_maintain(lake, hours_later=hours).payload()["orphans_removed"])

    # When the table is maintained again within the day
    # Then the folder is not searched (each search reads every snapshot kept): the stray stays
    assert maintained_later(31) == 0
    assert stray in lake.keys(table_prefix("fact_sales_order"))
    # When it is maintained a day after the last search
    # Then the stray is found and deleted
    assert maintained_later(55) >= 1
    assert stray not in lake.keys(table_prefix("fact_sales_order"))
    _assert_lake_equals_warehouse(lake)


def test_tables_below_the_commit_count_are_not_touched_and_cost_one_glue_request(
    lake: Pipeline,
) -> None:
    # Given a lake after one run: each table committed once or twice
    lake.run()
    glue = boto3.client("glue", region_name=REGION)
    calls: list[str] = []
    glue.meta.events.register("before-call.glue.*", lambda model, **_: calls.append(model.name))
    # When maintenance runs with tables due only after twelve commits
    result = maintain_lake(
        MaintenanceRequest(run_id="idle"),
        MaintenanceSettings(bucket=PROCESSED, database=LAKE_DATABASE),
        lake=_lake(lake),
        glue=glue,
    )
    # Then no table is maintained, and the step asked Glue once
    assert result.payload()["tables_maintained"] == 0
    assert calls == ["GetTables"]
