"""The lake over many small runs: with the maintenance step after each, as the workflow runs
it, a fact table's data files stay few however many runs append to it, and the lake still
answers like the warehouse."""

from __future__ import annotations

import boto3
import pytest

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.lake.maintenance import MaintenanceRequest, MaintenanceSettings, maintain_lake
from totes.tables import (
    FACT_TABLES,
    WAREHOUSE_TABLES,
)

from .pipeline_harness import LAKE_DATABASE, PROCESSED, REGION, Pipeline

pytestmark = pytest.mark.slow

#: Five times the maintenance interval: enough for a bound that grew with the runs to show.
RUNS = 25
EVERY_COMMITS = 5

#: A sales order amended in the source: a new version for the next run to carry.
_AMEND = (
    "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() "
    "WHERE sales_order_id = (SELECT min(sales_order_id) FROM sales_order) + %s"
)


def test_many_small_runs_leave_each_fact_month_a_few_files_and_the_lake_equal(
    lake: Pipeline,
) -> None:
    # Given a loaded lake, then 25 runs (ingest, transform and load of every table) with a
    # sales order amended before each, and the maintenance step after each (due every five
    # commits: as deployed, but more often, so that it comes five times)
    assert lake.lake is not None
    assert lake.warehouse_dsn is not None
    settings = MaintenanceSettings(
        bucket=PROCESSED, database=LAKE_DATABASE, every_commits=EVERY_COMMITS
    )
    glue = boto3.client("glue", region_name=REGION)
    lake.run()
    compactions = 0
    for run in range(RUNS):
        with connect(lake.source_dsn) as conn:
            conn.execute(_AMEND, (run,))
        lake.run()
        result = maintain_lake(
            MaintenanceRequest(run_id=lake.run_id), settings, lake=lake.lake, glue=glue
        )
        compactions += result.payload()["partitions_compacted"]

    # Then every fact table holds at most one file per month plus one per commit since it
    # was last compacted (fewer than five): a bound that does not grow with the runs
    assert compactions >= RUNS // EVERY_COMMITS
    for table in FACT_TABLES:
        iceberg = lake.lake.table(table)
        assert iceberg is not None
        files = iceberg.inspect.files().num_rows
        months = iceberg.inspect.partitions().num_rows
        assert files <= months + EVERY_COMMITS, (table, files, months)
    # And every table still answers exactly like the warehouse
    for table in WAREHOUSE_TABLES:
        iceberg = lake.lake.table(table)
        assert iceberg is not None
        names = [field.name for field in iceberg.schema().fields]
        rows = iceberg.scan().to_arrow().to_pylist()
        assert sorted(tuple(row[name] for name in names) for row in rows) == (
            warehouse_rows_as_lake(lake.warehouse_dsn, table)
        ), table
