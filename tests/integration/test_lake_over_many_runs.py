"""The lake over many small loads: with the maintenance step after each, as the workflow runs
it, a fact table's data files stay few however many commits append to it, and it still
answers like the warehouse."""

from __future__ import annotations

import boto3
import pytest

from tests.lake_reading import warehouse_rows_as_lake
from totes.db import connect
from totes.lake.maintenance import MaintenanceRequest, MaintenanceSettings, maintain_lake
from totes.load import lake_export, warehouse_sql

from .pipeline_harness import LAKE_DATABASE, PROCESSED, REGION, Pipeline

pytestmark = pytest.mark.slow

LOADS = 50
EVERY_COMMITS = 12
TABLE = "fact_sales_order"

#: A new version of the newest sales order, one millisecond later (a load's commit of
#: one amended order, without the stages before it).
_NEW_VERSION = """
INSERT INTO fact_sales_order (
    sales_order_id, created_date, created_time, last_updated_date, last_updated_time,
    sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id,
    agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id)
SELECT sales_order_id, created_date, created_time, last_updated_date,
    last_updated_time + interval '1 millisecond',
    sales_staff_id, counterparty_id, units_sold + 1, unit_price, currency_id, design_id,
    agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id
FROM fact_sales_order ORDER BY sales_record_id DESC LIMIT 1
"""


def test_fifty_small_loads_leave_each_fact_month_a_few_files_and_the_lake_equal(
    lake: Pipeline,
) -> None:
    # Given a loaded lake, then fifty loads of one amended sales order each (an append a
    # load), each followed by the maintenance step (due every twelve commits, as deployed)
    assert lake.lake is not None
    assert lake.warehouse_dsn is not None
    lake.run()
    settings = MaintenanceSettings(
        bucket=PROCESSED, database=LAKE_DATABASE, every_commits=EVERY_COMMITS
    )
    glue = boto3.client("glue", region_name=REGION)
    compactions = 0
    with connect(lake.warehouse_dsn) as conn:
        for load in range(LOADS):
            with conn.transaction():
                conn.execute(_NEW_VERSION)
            with conn.transaction():
                warehouse_sql.lock_target(conn, TABLE)
                assert lake_export.export_to_lake(conn, lake.lake, TABLE, run_id=f"l{load}") == 1
            result = maintain_lake(
                MaintenanceRequest(run_id=f"l{load}"), settings, lake=lake.lake, glue=glue
            )
            compactions += result.to_payload()["partitions_compacted"]

    # Then the table holds at most one file per month plus one per commit since it was
    # last compacted (fewer than twelve): a bound that does not grow with the loads
    iceberg = lake.lake.table(TABLE)
    assert iceberg is not None
    files = iceberg.inspect.files().num_rows
    months = iceberg.inspect.partitions().num_rows
    assert compactions >= LOADS // EVERY_COMMITS
    assert files <= months + EVERY_COMMITS, (files, months)
    # And it still answers exactly like the warehouse
    names = [field.name for field in iceberg.schema().fields]
    rows = iceberg.scan().to_arrow().to_pylist()
    assert sorted(tuple(row[name] for name in names) for row in rows) == (
        warehouse_rows_as_lake(lake.warehouse_dsn, TABLE)
    )
