"""The lakehouse through the whole workflow: after each run the lake's Iceberg tables, queried
with SQL, answer exactly like the warehouse, and as of an earlier run like the warehouse
did then; a table lost out of band comes back with the next run, and a maintenance
failure costs neither the warehouse nor the lake a row."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.lake.layout import lake_schema
from totes.tables import WAREHOUSE_TABLES
from totes.warehouse.reconcile import reconcile
from totes_local.cli import main
from totes_local.lake import lake_tables, query
from totes_local.runtime.assembly import CloudAssembly
from totes_local.source.mutate import mutate
from totes_local.stacks import local_stack

from .support import REPO_ROOT, Fault, WorkflowFactory, faulty_assembly

pytestmark = pytest.mark.slow


def _lake_rows(service_dir: Path, table: str, as_of: str | None = None) -> list[tuple[Any, ...]]:
    names = ", ".join(lake_schema(table).names)
    result = query(local_stack(service_dir), f"SELECT {names} FROM {table}", as_of=as_of)
    return sorted(tuple(row.values()) for row in result.to_pylist())


def _assert_lake_answers_like_the_warehouse(service_dir: Path, warehouse_dsn: str) -> None:
    for table in WAREHOUSE_TABLES:
        lake, warehouse = (
            _lake_rows(service_dir, table),
            warehouse_rows_as_lake(warehouse_dsn, table),
        )
        assert lake == warehouse, table
        # Equal values of equal types, column by column: decimals, dates, integers, text
        for column, (lake_value, warehouse_value) in enumerate(
            zip(lake[0], warehouse[0], strict=True)
        ):
            assert type(lake_value) is type(warehouse_value), (table, column)


def _readme_lake_query() -> str:
    """The SQL of the README's `totes lake query` example."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (statement,) = re.findall(r'^\$ \.venv/bin/totes lake query "([^"]+)"$', readme, re.MULTILINE)
    return statement


def test_the_lake_answers_like_the_warehouse_after_every_run_and_as_of_an_earlier_one(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a first run of the product
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        first = workflow.execute()
        # Then every warehouse table is an Iceberg table, facts partitioned by month
        tables = {table.name: table for table in lake_tables(local_stack(service_dir))}
        assert set(tables) == set(WAREHOUSE_TABLES)
        assert {name for name, table in tables.items() if table.partition_keys} == {
            "fact_sales_order",
            "fact_purchase_order",
            "fact_payment",
        }
        assert first.succeeded
        assert first.summary["lake"]["tables"] == len(WAREHOUSE_TABLES)
        # And each answers a query with exactly the warehouse's rows and types
        _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
        after_first = {
            table: warehouse_rows_as_lake(warehouse_dsn, table) for table in WAREHOUSE_TABLES
        }

        # When the source changes (new orders, amendments, a department moving city) and
        # the product runs again
        with connect(seeded_source_dsn) as conn:
            mutate(conn, seed=7, changes=60)
        second = workflow.execute()

    # Then the lake still answers like the warehouse: dimensions current, facts with history
    assert second.succeeded
    _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
    # And as of the first run, every table answers as the warehouse did after it
    assert first.run_id is not None
    changed = [
        table
        for table in WAREHOUSE_TABLES
        if after_first[table] != warehouse_rows_as_lake(warehouse_dsn, table)
    ]
    assert "fact_sales_order" in changed
    for table in WAREHOUSE_TABLES:
        assert _lake_rows(service_dir, table, as_of=first.run_id) == after_first[table], table
    # And `totes lake` lists the tables with their snapshots and the runs that made
    # them, and answers SQL on the command line, as of a run too, in JSON
    assert main(["lake", "tables", "--data-dir", str(service_dir), "--json"]) == 0
    listed = {
        table["table"]: table for table in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert set(listed) == set(WAREHOUSE_TABLES)
    runs = {snapshot["run_id"] for snapshot in listed["fact_sales_order"]["snapshots"]}
    assert {first.run_id, second.run_id} <= runs
    count = "SELECT count(*) AS versions FROM fact_sales_order"
    for as_of, expected in (
        ([], len(warehouse_rows_as_lake(warehouse_dsn, "fact_sales_order"))),
        (["--as-of", first.run_id], len(after_first["fact_sales_order"])),
    ):
        arguments = ["lake", "query", count, "--data-dir", str(service_dir), "--json", *as_of]
        assert main(arguments) == 0
        (answer,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert answer == {"versions": expected}
    # And the README's example runs as written, and gives what the warehouse gives
    revenue = _readme_lake_query()
    with connect(warehouse_dsn) as conn:
        expected_rows = [tuple(row) for row in conn.execute(revenue)]
    assert [
        tuple(row.values()) for row in query(local_stack(service_dir), revenue).to_pylist()
    ] == (expected_rows)


def test_lake_tables_deleted_out_of_band_are_made_again_by_the_next_execution(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    service_dir: Path,
) -> None:
    # Given a loaded lake whose fact table's Glue entry is deleted, and a dimension's
    # Iceberg metadata files too (a clean-up by hand, a run killed half way)
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        assert workflow.execute().succeeded
        glue, s3 = workflow.client("glue"), workflow.client("s3")
        database = local_stack(service_dir).output("LakeDatabaseName")
        glue.delete_table(DatabaseName=database, Name="fact_payment")
        bucket = workflow.processed_bucket
        assert bucket
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="lake/dim_staff/metadata/")
        for item in listed["Contents"]:
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        # When the next execution runs, with nothing new to load
        repaired = workflow.execute()
    # Then it succeeds, and the lake answers like the warehouse again
    assert repaired.succeeded, repaired.error
    _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)


def test_a_failed_maintenance_step_leaves_warehouse_and_lake_loaded_and_says_so(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a deployment whose lake maintenance fails
    fault = Fault("MaintainLake", "maintain_lake", None, "raise InjectedFaultError('Glue is down')")
    broken = faulty_assembly(cloud_assembly, fault, tmp_path / "faulty-cdk.out")
    with local_workflow(seeded_source_dsn, warehouse_dsn, assembly=broken) as workflow:
        # When the product runs
        failed = workflow.execute()
        notifications = workflow.notifications()
    # Then the execution fails there, saying so
    assert (failed.status, failed.error) == ("FAILED", "InjectedFaultError")
    entry = failed.failed_entry
    assert entry is not None
    assert entry.name == "MaintainLake"
    assert [note.subject for note in notifications] == [
        "totes: MaintainLake failed (InjectedFaultError)"
    ]
    # And the warehouse is loaded all the same, and the lake with it
    with connect(seeded_source_dsn) as source, connect(warehouse_dsn) as warehouse:
        assert reconcile(source, warehouse) == []
    _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
    # When maintenance works again and the next run comes
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        again = workflow.execute()
    # Then it succeeds
    assert again.succeeded
