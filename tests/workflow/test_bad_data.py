"""Nothing bad passes silently: bad rows, unknown codes and schema drift through the whole
synthesised workflow, what `totes run` and `totes rejects` say, and what reaches the
warehouse once the cause is fixed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from totes.db import connect
from totes.warehouse.reconcile import reconcile
from totes_local.cli import EXIT_FAILURE, main
from totes_local.lake import query
from totes_local.rejects import quarantined_rows
from totes_local.runtime.assembly import CloudAssembly
from totes_local.stacks import local_stack

from .support import WorkflowFactory

pytestmark = pytest.mark.slow


def _totes(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _run(
    capsys: pytest.CaptureFixture[str],
    source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
) -> tuple[int, dict[str, Any], str]:
    """`totes run --json` in this process: its status, its one JSON line and what it printed."""
    status, out, err = _totes(
        capsys,
        "run",
        *("--source-dsn", source_dsn, "--warehouse-dsn", warehouse_dsn),
        *("--data-dir", str(service_dir), "--cdk-out", str(cloud_assembly.directory)),
        "--json",
    )
    (line,) = out.splitlines()
    return status, json.loads(line), err


def _lake_delivery_dates(service_dir: Path) -> dict[int, list[date]]:
    """The agreed delivery dates of orders 1 and 2 in the lake, in the versions made today."""
    rows = query(
        local_stack(service_dir),
        "SELECT sales_order_id, agreed_delivery_date FROM fact_sales_order "
        "WHERE sales_order_id IN (1, 2) AND last_updated_date = current_date "
        "ORDER BY sales_order_id",
    ).to_pylist()
    dates: dict[int, list[date]] = {}
    for row in rows:
        dates.setdefault(row["sales_order_id"], []).append(row["agreed_delivery_date"])
    return dates


def _reconciled(source_dsn: str, warehouse_dsn: str) -> None:
    with connect(source_dsn) as source, connect(warehouse_dsn) as warehouse:
        problems = reconcile(source, warehouse)
    assert problems == [], "\n".join(map(str, problems))


def test_bad_dates_an_unknown_currency_and_a_new_column_are_told_kept_and_recovered(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given two orders whose agreed dates are not dates (the 30th of February is well
    # formed but no day of the calendar), a new currency code and a new column
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = CASE sales_order_id "
            "WHEN 1 THEN '2024-02-30' ELSE 'soon' END, last_updated = now() "
            "WHERE sales_order_id IN (1, 2)"
        )
        conn.execute("INSERT INTO currency (currency_code, last_updated) VALUES ('XYZ', now())")
        conn.execute("ALTER TABLE design ADD COLUMN colour text DEFAULT 'teal'")

    # When the product runs
    status, result, printed = _run(
        capsys, seeded_source_dsn, warehouse_dsn, cloud_assembly, service_dir
    )

    # Then the execution succeeds (good rows must not wait for bad ones) and says it rejected two
    assert (status, result["status"], result["rows_rejected"]) == (0, "SUCCEEDED", 2)
    assert result["tables"]["fact_sales_order"]["rejected"] == 2
    assert "SUCCEEDED with 2 rows rejected" in printed
    # And each problem is listed with its count, its table and where the rows are
    warnings = {(w["kind"], w["table"]): w for w in result["warnings"]}
    dates = warnings[("rows_rejected", "fact_sales_order")]
    assert (dates["stage"], dates["count"]) == ("transform", 2)
    assert dates["detail"] == "agreed_delivery_date is not a YYYY-MM-DD date"
    assert sorted(dates["examples"]) == ["'2024-02-30'", "'soon'"]
    (rejects_key,) = dates["where"]
    currency = warnings[("unknown_code", "dim_currency")]
    assert "'XYZ'" in currency["detail"]
    assert "'Unknown currency (XYZ)'" in currency["detail"]
    column = warnings[("unexpected_columns", "design")]
    assert column["detail"] == "new source column colour: kept in the raw zone, not loaded"
    assert "Needs attention" in printed
    assert "kept at s3://" in printed
    assert rejects_key in printed

    # When the quarantine is listed
    status, out, _ = _totes(capsys, "rejects", "--data-dir", str(service_dir), "--json")
    # Then both orders are there with their reason, source row and run
    listed = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert sorted((row["source_key"].split(",")[0], row["reason"]) for row in listed) == [
        (
            "sales_order_id 1",
            "agreed_delivery_date '2024-02-30' is not a date: February 2024 has 29 days",
        ),
        ("sales_order_id 2", "agreed_delivery_date 'soon' is not a YYYY-MM-DD date"),
    ]
    assert {(row["table"], row["stage"], row["run_id"], row["object_key"]) for row in listed} == {
        ("fact_sales_order", "transform", result["run_id"], rejects_key)
    }
    # And the new column is not loaded, the unknown currency is, under its placeholder, and
    # no other date stands in for the impossible one, in the warehouse or in the lake
    with connect(warehouse_dsn) as conn:
        assert conn.execute(
            "SELECT currency_name FROM dim_currency WHERE currency_code = 'XYZ'"
        ).fetchone() == ("Unknown currency (XYZ)",)
        assert conn.execute(
            "SELECT count(*) FROM fact_sales_order WHERE sales_order_id IN (1, 2) "
            "AND last_updated_date = current_date"
        ).fetchone() == (0,)
    assert _lake_delivery_dates(service_dir) == {}

    # When the orders are fixed in the source (a new version of each) and the product runs
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = '2024-12-01', last_updated = now() "
            "WHERE sales_order_id IN (1, 2)"
        )
    status, fixed, printed = _run(
        capsys, seeded_source_dsn, warehouse_dsn, cloud_assembly, service_dir
    )
    # Then they reach the warehouse without any manual step, and it equals the rebuild
    assert (status, fixed["rows_rejected"], fixed["tables"]["fact_sales_order"]["loaded"]) == (
        0,
        0,
        2,
    )
    _reconciled(seeded_source_dsn, warehouse_dsn)
    assert _lake_delivery_dates(service_dir) == {1: [date(2024, 12, 1)], 2: [date(2024, 12, 1)]}
    # And the column is still reported while it is there, but nothing else is
    assert [(w["kind"], w["table"]) for w in fixed["warnings"]] == [
        ("unexpected_columns", "design")
    ]


def test_a_column_a_transform_needs_stops_the_run_loses_nothing_and_the_mail_says_why(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the warehouse up to date, then changed orders and a renamed column they need
    _run(capsys, seeded_source_dsn, warehouse_dsn, cloud_assembly, service_dir)
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() "
            "WHERE sales_order_id <= 5"
        )
        conn.execute("ALTER TABLE sales_order RENAME COLUMN units_sold TO units")

    # When the product runs
    status, result, printed = _run(
        capsys, seeded_source_dsn, warehouse_dsn, cloud_assembly, service_dir
    )

    # Then the execution fails in the sales orders' ingest with the named error
    assert (status, result["status"], result["error"]) == (
        EXIT_FAILURE,
        "FAILED",
        "SourceSchemaDriftError",
    )
    assert (result["failed_state"], result["failed_item"]) == ("IngestTable", "sales_order")
    # And the alert email names the state, the table and the error, decodes its message
    # and says what to do; `totes run` prints it as the email reads
    assert "Subject: totes: IngestTable failed for sales_order (SourceSchemaDriftError)" in printed
    assert "Message:        sales_order lacks units_sold: a transform needs it" in printed
    assert f"Run id:         {result['run_id']}" in printed
    assert "What to do: A source column the pipeline needs is gone" in printed
    assert "stackTrace" not in printed

    # When the column is back and the product runs again
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE sales_order RENAME COLUMN units TO units_sold")
    status, again, _ = _run(capsys, seeded_source_dsn, warehouse_dsn, cloud_assembly, service_dir)
    # Then it continues from where it stopped: the changed orders arrive, nothing is lost
    assert (status, again["status"]) == (0, "SUCCEEDED")
    assert again["tables"]["sales_order"]["ingested"] == 5
    _reconciled(seeded_source_dsn, warehouse_dsn)


def test_a_fact_quarantined_for_a_missing_dimension_row_is_replayed_when_it_arrives(
    seeded_source_dsn: str, warehouse_dsn: str, local_workflow: WorkflowFactory
) -> None:
    # Given an order for a design that the source does not have yet (ingest reads each
    # table in a snapshot of its own, so an order can arrive a run before its design; here
    # the source lets it in first), and no time to wait for it
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE sales_order DROP CONSTRAINT sales_order_design_id_fkey")
        (design_id,) = conn.execute("SELECT max(design_id) + 1 FROM design").fetchone() or (0,)
        conn.execute(
            "UPDATE sales_order SET design_id = %s, last_updated = now() WHERE sales_order_id = 7",
            (design_id,),
        )
    settings = {"extra_environment": {"LOAD_REJECT_AFTER_SECONDS": "0"}}
    with local_workflow(seeded_source_dsn, warehouse_dsn, **settings) as workflow:
        # When the product runs
        first = workflow.execute()
        quarantined = list(quarantined_rows(workflow.client("s3"), workflow.processed_bucket))
        # And runs again once the design has arrived
        with connect(seeded_source_dsn) as conn:
            conn.execute(
                "INSERT INTO design (design_id, design_name, file_location, file_name, "
                "last_updated) VALUES (%s, 'Tote', '/designs', 'tote.jpg', now())",
                (design_id,),
            )
        second = workflow.execute()
        left = list(quarantined_rows(workflow.client("s3"), workflow.processed_bucket))

    # Then the first execution quarantined the order, saying why and where it is kept
    assert first.succeeded
    assert first.tables()["fact_sales_order"]["rejected"] == 1
    (finding,) = first.findings()
    assert (finding.kind, finding.stage, finding.examples) == (
        "rows_rejected",
        "load",
        ["sales_order_id 7"],
    )
    assert [(row.stage, row.reason) for row in quarantined] == [
        ("load", f"design_id {design_id} not in dim_design")
    ]
    # And the second loaded the design, then replayed the order: nothing is quarantined now
    assert second.tables()["fact_sales_order"]["replayed"] == 1
    assert [f.kind for f in second.findings()] == ["rows_replayed"]
    assert left == []
    _reconciled(seeded_source_dsn, warehouse_dsn)
