"""The lake zone and its catalog, in process against moto and a real PostgreSQL: load writes what
the warehouse committed, the catalog step describes it, and the two stay equal through
incremental runs, replays, a lost lake state and a failed or repeated catalog step."""

from __future__ import annotations

from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.errors import LakeCatalogError
from totes.lake.catalog import (
    CHANGES_MERGED,
    GENERATION,
    CatalogRequest,
    CatalogSettings,
    catalog_lake,
)
from totes.lake.layout import (
    CHANGES_PREFIX,
    PARTITION_COLUMN,
    lake_schema,
    read_state,
    state_key,
)
from totes.lake.reusing_session import ReusingSession
from totes.load import lake_export
from totes.load.star_zone import StarFileKey, read_star_file
from totes.names import (
    DIMENSION_TABLES,
    WAREHOUSE_TABLES,
)
from totes.parquet_objects import read_parquet
from totes.warehouse.star import FACT_VERSION_KEYS
from totes_local.source.mutate import mutate

from .pipeline_harness import PROCESSED, Pipeline, create_resources

DATABASE = "totes_lake"


@pytest.fixture
def lake(s3: Any, dynamodb: Any, seeded_source_dsn: str, warehouse_dsn: str) -> Pipeline:
    create_resources(s3, dynamodb)
    boto3.client("glue", region_name="eu-west-2").create_database(DatabaseInput={"Name": DATABASE})
    return Pipeline(s3, dynamodb, seeded_source_dsn, warehouse_dsn)


def _catalog(pipeline: Pipeline) -> Any:
    return catalog_lake(
        CatalogRequest(run_id=pipeline.run_id),
        CatalogSettings(bucket=PROCESSED, database=DATABASE),
        s3=pipeline.s3,
        glue=boto3.client("glue", region_name="eu-west-2"),
        session=ReusingSession(region_name="eu-west-2"),
    )


def _glue_table(name: str) -> dict[str, Any]:
    glue = boto3.client("glue", region_name="eu-west-2")
    table: dict[str, Any] = glue.get_table(DatabaseName=DATABASE, Name=name)["Table"]
    return table


def _lake_rows(pipeline: Pipeline, table: str) -> list[tuple[Any, ...]]:
    """What a reader of the catalogued table sees: every file under its location(s)."""
    described = _glue_table(table)
    if described.get("PartitionKeys"):
        glue = boto3.client("glue", region_name="eu-west-2")
        partitions = glue.get_partitions(DatabaseName=DATABASE, TableName=table)["Partitions"]
        locations = [p["StorageDescriptor"]["Location"] for p in partitions]
    else:
        locations = [described["StorageDescriptor"]["Location"]]
    names = lake_schema(table).names
    rows = []
    for location in locations:
        for key in pipeline.keys(location.removeprefix(f"s3://{PROCESSED}/")):
            rows.extend(read_parquet(pipeline.s3, PROCESSED, key).select(names).to_pylist())
    return sorted(tuple(row.values()) for row in rows)


def _assert_lake_equals_warehouse(pipeline: Pipeline) -> None:
    assert pipeline.warehouse_dsn is not None
    for table in WAREHOUSE_TABLES:
        assert _lake_rows(pipeline, table) == warehouse_rows_as_lake(
            pipeline.warehouse_dsn, table
        ), table


def test_the_catalogued_lake_holds_what_the_warehouse_committed_run_after_run(
    lake: Pipeline,
) -> None:
    # Given a first run and its catalog step
    lake.run()
    first = _catalog(lake)
    # Then every warehouse table is catalogued and holds exactly the warehouse's rows
    assert {table.table for table in first.tables if table.created} == set(WAREHOUSE_TABLES)
    _assert_lake_equals_warehouse(lake)
    assert [key["Name"] for key in _glue_table("fact_sales_order")["PartitionKeys"]] == [
        PARTITION_COLUMN
    ]
    # When the source changes (new versions, a department moving city) and a run follows
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=3, changes=40)
    lake.run()
    second = _catalog(lake)
    # Then facts gained their new versions and dimensions their current rows, nothing twice
    _assert_lake_equals_warehouse(lake)
    assert second.to_payload()["snapshots_written"] >= 1
    # And an idle run and catalog step change nothing
    lake.run()
    idle = _catalog(lake)
    assert idle.to_payload()["partitions_added"] == idle.to_payload()["snapshots_written"] == 0
    _assert_lake_equals_warehouse(lake)


def test_an_idle_catalog_step_reads_one_page_of_tables_and_one_state_per_table(
    lake: Pipeline,
) -> None:
    # Given a catalogued lake and a run that loads nothing new
    lake.run()
    _catalog(lake)
    lake.run()
    glue = boto3.client("glue", region_name="eu-west-2")
    calls: list[str] = []
    for client in (lake.s3, glue):
        client.meta.events.register(
            "before-call", lambda model, **_: calls.append(model.name), unique_id="count"
        )
    # When the catalog step runs
    try:
        idle = catalog_lake(
            CatalogRequest(run_id=lake.run_id),
            CatalogSettings(bucket=PROCESSED, database=DATABASE),
            s3=lake.s3,
            glue=glue,
            session=ReusingSession(region_name="eu-west-2"),
        )
    finally:
        lake.s3.meta.events.unregister("before-call", unique_id="count")
    # Then it changes nothing, with one request for the tables and one state read per table
    assert idle.to_payload()["partitions_added"] == idle.to_payload()["snapshots_written"] == 0
    assert sorted(calls) == sorted(["GetTables"] + ["GetObject"] * len(WAREHOUSE_TABLES))
    _assert_lake_equals_warehouse(lake)


def test_a_glue_table_deleted_by_hand_is_made_again_by_the_next_step(lake: Pipeline) -> None:
    # Given a catalogued lake, then a fact's and a dimension's Glue tables deleted
    lake.run()
    _catalog(lake)
    glue = boto3.client("glue", region_name="eu-west-2")
    for table in ("fact_sales_order", "dim_staff"):
        glue.delete_table(DatabaseName=DATABASE, Name=table)
    # When a run with nothing new to load is catalogued
    lake.run()
    again = _catalog(lake)
    # Then both are made again, with every partition, and the lake equals the warehouse
    assert {table.table for table in again.tables if table.created} == {
        "fact_sales_order",
        "dim_staff",
    }
    _assert_lake_equals_warehouse(lake)


def test_a_malformed_lake_state_fails_its_table_and_the_others_are_still_catalogued(
    lake: Pipeline,
) -> None:
    # Given a loaded lake whose export state of fact_sales_order was overwritten by hand
    lake.run()
    lake.s3.put_object(Bucket=PROCESSED, Key=state_key("fact_sales_order"), Body=b"[1, 2]")
    # When the catalog step runs
    with pytest.raises(LakeCatalogError, match="1 of 11 lake tables") as failed:
        _catalog(lake)
    # Then the error names the table and why, and every other table is catalogued
    assert "fact_sales_order: ValidationError" in str(failed.value)
    glue = boto3.client("glue", region_name="eu-west-2")
    catalogued = {table["Name"] for table in glue.get_tables(DatabaseName=DATABASE)["TableList"]}
    assert catalogued == set(WAREHOUSE_TABLES) - {"fact_sales_order"}


def test_a_lake_whose_state_was_lost_begins_again_from_the_warehouse(lake: Pipeline) -> None:
    # Given a catalogued lake, then its export state and files lost (a bucket restored bare)
    lake.run()
    _catalog(lake)
    before = _glue_table("dim_staff")["Parameters"][GENERATION]
    for key in lake.keys("lake/"):
        lake.s3.delete_object(Bucket=PROCESSED, Key=key)
    # When the next run loads nothing new, and the catalog step follows
    lake.run()
    _catalog(lake)
    # Then every table begins a new generation from what the warehouse holds, and the
    # catalog rebuilds from it: the lake equals the warehouse again
    assert read_state(lake.s3, PROCESSED, "dim_staff").generation != before
    assert _glue_table("dim_staff")["Parameters"][GENERATION] > before
    _assert_lake_equals_warehouse(lake)


def test_a_dimension_snapshot_gone_missing_is_rebuilt_and_the_previous_one_kept(
    lake: Pipeline,
) -> None:
    # Given two snapshots of dim_staff (a department moved in between)
    lake.run()
    _catalog(lake)
    first_location = _glue_table("dim_staff")["StorageDescriptor"]["Location"]
    with connect(lake.source_dsn) as conn:
        conn.execute("UPDATE department SET location = 'Leeds', last_updated = now()")
    lake.run()
    _catalog(lake)
    second = _glue_table("dim_staff")
    # Then the snapshot before the current one is kept for queries still reading it
    assert lake.keys(first_location.removeprefix(f"s3://{PROCESSED}/"))
    # When the current snapshot is lost and a change comes
    for key in lake.keys(
        second["StorageDescriptor"]["Location"].removeprefix(f"s3://{PROCESSED}/")
    ):
        lake.s3.delete_object(Bucket=PROCESSED, Key=key)
    with connect(lake.source_dsn) as conn:
        conn.execute(
            "UPDATE staff SET last_name = 'Ó Briain', last_updated = now() WHERE staff_id = 1"
        )
    lake.run()
    _catalog(lake)
    # Then it is rebuilt from the generation's first change, equal to the warehouse
    third = _glue_table("dim_staff")
    assert int(third["Parameters"][CHANGES_MERGED]) > int(second["Parameters"][CHANGES_MERGED])
    _assert_lake_equals_warehouse(lake)


def test_exports_repeated_after_a_crash_rewrite_the_same_objects(lake: Pipeline) -> None:
    # Given facts exported, then the watermark lost as if the export had crashed before it
    lake.run()
    written = lake.keys("lake/fact_payment/")
    lake.s3.delete_object(Bucket=PROCESSED, Key=state_key("fact_payment"))
    # When the next load exports again
    lake.load("fact_payment")
    # Then it wrote the very same objects again: nothing is there twice
    assert lake.keys("lake/fact_payment/") == written
    _catalog(lake)
    assert lake.warehouse_dsn is not None
    assert _lake_rows(lake, "fact_payment") == warehouse_rows_as_lake(
        lake.warehouse_dsn, "fact_payment"
    )


def test_the_times_of_day_are_text_and_every_other_column_keeps_the_warehouse_type(
    lake: Pipeline,
) -> None:
    lake.run()
    _catalog(lake)
    columns = {
        c["Name"]: c["Type"]
        for c in _glue_table("fact_sales_order")["StorageDescriptor"]["Columns"]
    }
    assert columns["created_time"] == columns["last_updated_time"] == "string"
    assert (columns["unit_price"], columns["created_date"], columns["sales_record_id"]) == (
        "decimal(10,2)",
        "date",
        "int",
    )
    sample = read_parquet(lake.s3, PROCESSED, lake.keys("lake/fact_sales_order/")[0])
    assert sample.schema.field("unit_price").type == pa.decimal128(10, 2)
    assert len(sample.column("created_time")[0].as_py()) == len("09:00:00.000")


def test_exports_take_a_bite_at_a_time_and_the_lake_still_equals_the_warehouse(
    lake: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given exports that read at most 50 rows at a time, and new generations read back
    # from the warehouse rather than from gold files
    monkeypatch.setattr(lake_export, "EXPORT_BITE", 50)
    monkeypatch.setattr(lake_export, "GOLD_FILES_PER_NEW_GENERATION", 0)
    # When a first run loads more than that into a dimension and a fact, and the catalog follows
    lake.run()
    _catalog(lake)
    # Then each was written in bites (the dimension's first changes, the fact's files)
    assert lake.warehouse_dsn is not None
    transactions = len(warehouse_rows_as_lake(lake.warehouse_dsn, "dim_transaction"))
    assert transactions > 100
    assert read_state(lake.s3, PROCESSED, "dim_transaction").changes == -(-transactions // 50)
    first_records = {key.rsplit("/", 1)[1] for key in lake.keys("lake/fact_payment/")}
    assert len(first_records) > 2
    # And the lake holds exactly the warehouse's rows
    _assert_lake_equals_warehouse(lake)


def _ledger_files(pipeline: Pipeline) -> dict[str, int]:
    assert pipeline.warehouse_dsn is not None
    with connect(pipeline.warehouse_dsn) as conn:
        counted = conn.execute(
            "SELECT warehouse_table, count(*) FROM load_ledger GROUP BY warehouse_table"
        ).fetchall()
    return {table: int(files) for table, files in counted}


def _lose_the_lake(pipeline: Pipeline) -> None:
    for key in pipeline.keys("lake/"):
        pipeline.s3.delete_object(Bucket=PROCESSED, Key=key)


def test_a_new_generation_is_written_from_the_gold_files_a_change_per_file(
    lake: Pipeline,
) -> None:
    # Given a warehouse loaded by two runs (the source changed in between), then the lake lost
    lake.run()
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=3, changes=40)
    lake.run()
    files = _ledger_files(lake)
    assert max(files[table] for table in DIMENSION_TABLES if table in files) >= 2
    _lose_the_lake(lake)
    # When the next run loads nothing new, and the catalog step follows
    lake.run()
    _catalog(lake)
    # Then each dimension's new generation holds a change per gold file the ledger records
    for table in DIMENSION_TABLES:
        if table in files:
            assert read_state(lake.s3, PROCESSED, table).changes == files[table], table
    # And the lake equals the warehouse
    _assert_lake_equals_warehouse(lake)


def test_gold_files_that_do_not_make_up_the_table_make_a_new_generation_read_the_warehouse(
    lake: Pipeline,
) -> None:
    # Given a loaded warehouse, then three dimensions whose gold files no longer make up
    # the table: a currency added by hand (no file holds it), staff's file removed, and
    # locations' file damaged (or of a release whose star schema differed); the lake lost
    lake.run()
    assert lake.warehouse_dsn is not None
    with connect(lake.warehouse_dsn) as conn:
        conn.execute(
            "INSERT INTO dim_currency (currency_id, currency_code, currency_name) "
            "VALUES (999, 'XTS', 'Testing code')"
        )
    for key in lake.keys("dim_staff/"):
        lake.s3.delete_object(Bucket=PROCESSED, Key=key)
    for key in lake.keys("dim_location/"):
        lake.s3.put_object(Bucket=PROCESSED, Key=key, Body=b"not a Parquet file")
    _lose_the_lake(lake)
    # When the next run loads nothing new, and the catalog step follows
    lake.run()
    _catalog(lake)
    # Then each of them began its new generation from the warehouse, in one change, and
    # nothing of the abandoned attempt is left among its changes
    for table in ("dim_currency", "dim_staff", "dim_location"):
        state = read_state(lake.s3, PROCESSED, table)
        assert lake.keys(f"{CHANGES_PREFIX}/{table}/") == [
            f"{CHANGES_PREFIX}/{table}/{state.generation}/{0:012d}.parquet"
        ], table
    # And the lake holds the added currency and equals the warehouse
    assert (999, "XTS", "Testing code") in _lake_rows(lake, "dim_currency")
    _assert_lake_equals_warehouse(lake)


def _lake_objects(pipeline: Pipeline, prefix: str) -> dict[str, pa.Table]:
    return {key: pipeline.parquet(key) for key in pipeline.keys(prefix)}


def _run_to_the_sales_orders(pipeline: Pipeline) -> Any:
    """A run whose load of fact_sales_order is returned (the other facts are not loaded)."""
    pipeline.run_through_dimensions()
    return pipeline.load("fact_sales_order")


def test_fact_rows_written_as_they_commit_are_the_objects_reading_them_back_writes(
    lake: Pipeline,
) -> None:
    # Given a first run, whose fact load wrote its rows to the lake as each file committed
    loaded = _run_to_the_sales_orders(lake)
    assert loaded.rows_loaded > 0
    assert [file.rows_exported for file in loaded.files] == [
        file.rows_loaded for file in loaded.files
    ]
    assert lake.warehouse_dsn is not None
    as_committed = _lake_objects(lake, "lake/fact_sales_order/")
    assert sum(t.num_rows for t in as_committed.values()) == len(
        warehouse_rows_as_lake(lake.warehouse_dsn, "fact_sales_order")
    )
    # When the lake's objects and watermark of the table are lost and the export reads
    # the rows back from the warehouse
    for key in [*as_committed, state_key("fact_sales_order")]:
        lake.s3.delete_object(Bucket=PROCESSED, Key=key)
    with connect(lake.warehouse_dsn) as conn, conn.transaction():
        lake_export.export_facts(conn, lake.s3, PROCESSED, "fact_sales_order")
    # Then it writes the very same objects: names, schema and rows
    read_back = _lake_objects(lake, "lake/fact_sales_order/")
    assert read_back.keys() == as_committed.keys()
    for key, table in read_back.items():
        assert table.equals(as_committed[key], check_metadata=False), key


def test_a_fact_file_whose_earlier_rows_the_lake_lacks_is_exported_from_the_warehouse(
    lake: Pipeline,
) -> None:
    # Given a loaded first run, then fact_sales_order's lake watermark lost (a crash
    # between its objects and its watermark, say)
    lake.run()
    lake.s3.delete_object(Bucket=PROCESSED, Key=state_key("fact_sales_order"))
    # When new versions of orders arrive and are loaded
    with connect(lake.source_dsn) as conn:
        mutate(conn, seed=5, changes=40)
    loaded = _run_to_the_sales_orders(lake)
    # Then the new file's rows were not written on their own (the lake lacked rows before
    # them), the export caught up from the warehouse, and the lake equals it
    assert loaded.rows_loaded > 0
    assert [file.rows_exported for file in loaded.files] == [0]
    assert loaded.rows_exported > loaded.rows_loaded
    _catalog(lake)
    assert lake.warehouse_dsn is not None
    assert _lake_rows(lake, "fact_sales_order") == warehouse_rows_as_lake(
        lake.warehouse_dsn, "fact_sales_order"
    )


def test_committed_fact_rows_below_newer_ones_are_left_to_the_read_back(lake: Pipeline) -> None:
    # Given sales orders loaded into an empty table (numbered 1..n in version order), then
    # the table's lake objects and watermark lost
    loaded = _run_to_the_sales_orders(lake)
    [gold_key] = lake.keys("fact_sales_order/")
    gold = read_star_file(lake.s3, PROCESSED, StarFileKey.parse(gold_key))  # type: ignore[arg-type]
    in_order = gold.sort_by([(c, "ascending") for c in FACT_VERSION_KEYS["fact_sales_order"]])
    numbered = in_order.add_column(
        0,
        pa.field("sales_record_id", pa.int32(), nullable=False),
        pa.array(range(1, in_order.num_rows + 1), pa.int32()),
    )
    for key in [*lake.keys("lake/fact_sales_order/"), state_key("fact_sales_order")]:
        lake.s3.delete_object(Bucket=PROCESSED, Key=key)
    assert lake.warehouse_dsn is not None
    # When the older half is offered as just committed (the newer half an overlapping
    # load's, whose crashed export may have left objects under the same names)
    with connect(lake.warehouse_dsn) as conn, conn.transaction():
        older = lake_export.export_committed_facts(
            conn, lake.s3, PROCESSED, "fact_sales_order", numbered.slice(0, loaded.rows_loaded // 2)
        )
    # Then nothing is written from memory: the read-back writes the whole bite
    assert older == 0
    assert lake.keys("lake/fact_sales_order/") == []
    # While rows that are the table's newest are written
    with connect(lake.warehouse_dsn) as conn, conn.transaction():
        every = lake_export.export_committed_facts(
            conn, lake.s3, PROCESSED, "fact_sales_order", numbered
        )
    assert every == loaded.rows_loaded
    _catalog(lake)
    assert _lake_rows(lake, "fact_sales_order") == warehouse_rows_as_lake(
        lake.warehouse_dsn, "fact_sales_order"
    )


def test_an_s3_failure_writing_committed_facts_leaves_them_to_the_end_of_the_load(
    lake: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given S3 failing the first write of the lake's objects
    real_put_all = lake_export._put_all
    failures = iter([True])

    def flaky(*args: Any, **kwargs: Any) -> None:
        if next(failures, False):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")
        real_put_all(*args, **kwargs)

    monkeypatch.setattr(lake_export, "_put_all", flaky)
    # When sales orders are loaded
    loaded = _run_to_the_sales_orders(lake)
    # Then the file is loaded, its rows were not written as it committed, and the export
    # at the end of the load wrote them: the lake equals the warehouse
    assert loaded.rows_loaded > 0
    assert [file.rows_exported for file in loaded.files] == [0]
    assert loaded.rows_exported >= loaded.rows_loaded  # dim_date's rows too
    _catalog(lake)
    assert lake.warehouse_dsn is not None
    assert _lake_rows(lake, "fact_sales_order") == warehouse_rows_as_lake(
        lake.warehouse_dsn, "fact_sales_order"
    )
