"""The lakehouse through the whole workflow: after each run the lake, queried with SQL over its
Glue catalog, answers exactly like the warehouse, and a catalog failure costs the lake a
run, never the warehouse."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.lake.layout import lake_schema
from totes.names import WAREHOUSE_TABLES
from totes.warehouse.reconcile import reconcile
from totes_local.cli import main
from totes_local.lake import lake_tables, query
from totes_local.runtime.assembly import CloudAssembly
from totes_local.source.mutate import mutate
from totes_local.stacks import local_stack

from .support import REPO_ROOT, Fault, WorkflowFactory, faulty_assembly

pytestmark = pytest.mark.slow


def _lake_rows(service_dir: Path, table: str) -> list[tuple[Any, ...]]:
    names = ", ".join(lake_schema(table).names)
    result = query(local_stack(service_dir), f"SELECT {names} FROM {table}")
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


def _partitions(service_dir: Path) -> dict[str, list[tuple[list[str], str]]]:
    return {
        table.name: table.partitions
        for table in lake_tables(local_stack(service_dir))
        if table.partitioned
    }


def test_the_lake_answers_like_the_warehouse_after_every_run(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a first run of the product
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        first = workflow.execute()
        # Then every warehouse table has a Glue table, facts partitioned by month
        tables = {table.name: table for table in lake_tables(local_stack(service_dir))}
        assert set(tables) == set(WAREHOUSE_TABLES)
        assert {name for name, table in tables.items() if table.partitioned} == {
            "fact_sales_order",
            "fact_purchase_order",
            "fact_payment",
        }
        assert first.succeeded
        assert first.summary["lake"]["tables"] == len(WAREHOUSE_TABLES)
        # And each answers a query with exactly the warehouse's rows and types
        _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
        before = _partitions(service_dir)

        # When the source changes (new orders, amendments, a department moving city) and
        # the product runs again
        with connect(seeded_source_dsn) as conn:
            mutate(conn, seed=7, changes=60)
        second = workflow.execute()

    # Then the lake still answers like the warehouse: dimensions current, facts with history
    assert second.succeeded
    _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
    # And the catalog gained the partitions of the new versions' month, each once
    after = _partitions(service_dir)
    for table, partitions in after.items():
        assert set(map(str, before[table])) <= set(map(str, partitions)), table
        assert len(partitions) == len({str(p) for p in partitions}), table
    assert sum(map(len, after.values())) > sum(map(len, before.values()))
    # And `totes lake` lists the tables and answers SQL on the command line, in JSON too
    assert main(["lake", "tables", "--data-dir", str(service_dir), "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {table["table"] for table in listed} == set(WAREHOUSE_TABLES)
    count = "SELECT count(*) AS versions FROM fact_sales_order"
    assert main(["lake", "query", count, "--data-dir", str(service_dir), "--json"]) == 0
    (answer,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert answer == {"versions": len(warehouse_rows_as_lake(warehouse_dsn, "fact_sales_order"))}
    # And the README's example runs as written, and gives what the warehouse gives
    revenue = _readme_lake_query()
    with connect(warehouse_dsn) as conn:
        expected = [tuple(row) for row in conn.execute(revenue)]
    assert [
        tuple(row.values()) for row in query(local_stack(service_dir), revenue).to_pylist()
    ] == (expected)


def test_a_failed_catalog_step_leaves_the_loads_done_and_the_next_run_repairs_the_lake(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    local_workflow: WorkflowFactory,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a deployment whose catalog step fails
    fault = Fault("CatalogLake", "catalog_lake", None, "raise InjectedFaultError('Glue is down')")
    broken = faulty_assembly(cloud_assembly, fault, tmp_path / "faulty-cdk.out")
    with local_workflow(seeded_source_dsn, warehouse_dsn, assembly=broken) as workflow:
        # When the product runs
        failed = workflow.execute()
        notifications = workflow.notifications()
    # Then the execution fails there, saying so, and the warehouse is loaded all the same
    assert (failed.status, failed.error) == ("FAILED", "InjectedFaultError")
    entry = failed.failed_entry
    assert entry is not None
    assert entry.name == "CatalogLake"
    assert [note.subject for note in notifications] == [
        "totes: CatalogLake failed (InjectedFaultError)"
    ]
    with connect(seeded_source_dsn) as source, connect(warehouse_dsn) as warehouse:
        assert reconcile(source, warehouse) == []
    assert lake_tables(local_stack(service_dir)) == []
    # When the catalog works again and the next run comes, with nothing new to load
    with local_workflow(seeded_source_dsn, warehouse_dsn) as workflow:
        repaired = workflow.execute()
    # Then the lake is brought up to date from what the loads wrote
    assert repaired.succeeded
    _assert_lake_answers_like_the_warehouse(service_dir, warehouse_dsn)
