"""Benchmark the load stage: fact_sales_order at scale 100 into the warehouse.

Builds synthetic gold files with the star schemas (dimensions sized as the generator
sizes the source at that scale, and ``Volumes.sales_order`` fact rows: 1,117,500 at
scale 100), puts them in moto's in-memory S3, and loads them into a fresh warehouse
database ``totes_bench_load`` (dropped at the end), reporting:

1. the first load of the fact file: rows/s, with the time of each step;
2. loading the same file again: skipped through the ledger;
3. the same rows in a new file: nothing inserted, time against the first load.

    python bench/load.py                            # scale 100
    python bench/load.py 1                          # scale 1
    LOAD_FK_TRIGGERS=always python bench/load.py    # keep the per-row foreign-key triggers
"""

from __future__ import annotations

import io
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from datetime import time as clock_time
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from moto import mock_aws

from totes.db import connect, create_database, drop_database, with_database
from totes.load import stage as load_stage
from totes.load import warehouse_sql
from totes.load.stage import (
    LoadRequest,
    LoadSettings,
    load_target,
)
from totes.names import EnvironmentVariable
from totes.results import LoadResult
from totes.warehouse.schema import init_warehouse
from totes.warehouse.star import STAR_SCHEMAS
from totes_local.runtime.postgres import find_or_start_server
from totes_local.source.generator import Volumes

BUCKET, REGION, DATABASE = "bench-processed", "eu-west-2", "totes_bench_load"
FIRST_DAY = date(2022, 11, 3)
DAYS = 740
#: The steps of a load, timed separately: (module, function).
STEPS = (
    (load_stage, "read_gold_file"),
    (warehouse_sql, "stage_rows"),
    (warehouse_sql, "count_present_versions"),
    (warehouse_sql, "new_positions"),
    (warehouse_sql, "extend_dim_date"),
    (warehouse_sql, "lock_references"),
    (warehouse_sql, "reserve_record_keys"),
    (warehouse_sql, "copy_rows"),
    (warehouse_sql, "quarantine_missing_references"),
    (warehouse_sql, "insert_facts"),
    (warehouse_sql, "upsert_dimension"),
    (warehouse_sql, "raise_newest_version"),
    (warehouse_sql, "newest_version"),
)


def _dimensions(volumes: Volumes, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    return {
        "dim_staff": [
            {
                "staff_id": n,
                "first_name": f"First {n}",
                "last_name": f"O'Last {n}",
                "department_name": "Sales",
                "location": "Leeds",
                "email_address": f"staff.{n}@terrifictotes.com",
            }
            for n in range(1, volumes.staff + 1)
        ],
        "dim_counterparty": [
            {
                "counterparty_id": n,
                "counterparty_legal_name": f"Hartmann, Franecki and Ratke {n}",
                "counterparty_legal_address_line_1": f"{n} Main Street",
                "counterparty_legal_address_line_2": None,
                "counterparty_legal_district": None,
                "counterparty_legal_city": "Leeds",
                "counterparty_legal_postal_code": f"{n:05d}",
                "counterparty_legal_country": "UK",
                "counterparty_legal_phone_number": "0113 496 0000",
            }
            for n in range(1, volumes.counterparty + 1)
        ],
        "dim_currency": [
            {"currency_id": 1, "currency_code": "GBP", "currency_name": "British Pound"},
            {"currency_id": 2, "currency_code": "USD", "currency_name": "US Dollar"},
            {"currency_id": 3, "currency_code": "EUR", "currency_name": "Euro"},
        ],
        "dim_design": [
            {
                "design_id": n,
                "design_name": f"Design {n}",
                "file_location": "/usr/share",
                "file_name": f"design-{n}.json",
            }
            for n in range(1, volumes.design + 1)
        ],
        "dim_location": [
            {
                "location_id": n,
                "address_line_1": f"{n} High Street",
                "address_line_2": None if rng.random() < 0.66 else "Flat 1",
                "district": None,
                "city": "Leeds",
                "postal_code": f"{n:05d}",
                "country": "UK",
                "phone": "0113 496 0000",
            }
            for n in range(1, volumes.address + 1)
        ],
    }


def _sales_orders(volumes: Volumes, rng: random.Random) -> pa.Table:
    rows = volumes.sales_order
    days = [FIRST_DAY + timedelta(days=n) for n in range(DAYS)]
    created = [rng.randrange(DAYS - 30) for _ in range(rows)]
    columns: dict[str, list[Any]] = {
        "sales_order_id": list(range(1, rows + 1)),
        "created_date": [days[n] for n in created],
        "created_time": [_time_of_day(rng) for _ in range(rows)],
        "last_updated_date": [days[n + rng.randrange(3)] for n in created],
        "last_updated_time": [_time_of_day(rng) for _ in range(rows)],
        "sales_staff_id": [rng.randint(1, volumes.staff) for _ in range(rows)],
        "counterparty_id": [rng.randint(1, volumes.counterparty) for _ in range(rows)],
        "units_sold": [rng.randint(1_000, 100_000) for _ in range(rows)],
        "unit_price": [Decimal(rng.randint(200, 400)) / 100 for _ in range(rows)],
        "currency_id": [rng.randint(1, 3) for _ in range(rows)],
        "design_id": [rng.randint(1, volumes.design) for _ in range(rows)],
        "agreed_payment_date": [days[n + rng.randrange(3, 30)] for n in created],
        "agreed_delivery_date": [days[n + rng.randrange(3, 30)] for n in created],
        "agreed_delivery_location_id": [rng.randint(1, volumes.address) for _ in range(rows)],
    }
    return pa.table(columns, schema=STAR_SCHEMAS["fact_sales_order"])


def _time_of_day(rng: random.Random) -> clock_time:
    ms = rng.randrange(86_400_000)
    return clock_time(ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000 * 1000)


def _put(s3: Any, key: str, table: pa.Table) -> int:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue())
    return len(sink.getvalue())


@contextmanager
def _step_timer() -> Iterator[dict[str, float]]:
    """Time the steps of the load stage, summed by step, while the block runs."""
    spent: dict[str, float] = defaultdict(float)
    originals = [(module, name, getattr(module, name)) for module, name in STEPS]

    def timed(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(step)
        def run(*args: Any, **kwargs: Any) -> Any:
            label = "stage_keys" if kwargs.get("keys_only") else name
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - started

        return run

    for module, name, step in originals:
        setattr(module, name, timed(name, step))
    try:
        yield spent
    finally:
        for module, name, step in originals:
            setattr(module, name, step)


def main(scale: float) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    volumes, rng = Volumes.at_scale(scale), random.Random(0)  # noqa: S311 (synthetic data)
    with tempfile.TemporaryDirectory() as scratch:
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        drop_database(server.admin_dsn, DATABASE)
        create_database(server.admin_dsn, DATABASE)
        dsn = with_database(server.admin_dsn, DATABASE)
        with connect(dsn) as conn:
            init_warehouse(conn)
        try:
            with mock_aws():
                s3 = boto3.client("s3", region_name=REGION)
                s3.create_bucket(
                    Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
                )
                _run(s3, dsn, volumes, rng, scale)
        finally:
            drop_database(server.admin_dsn, DATABASE)
            server.stop()


def _run(s3: Any, dsn: str, volumes: Volumes, rng: random.Random, scale: float) -> None:
    settings = LoadSettings.from_environment(
        {EnvironmentVariable.PROCESSED_BUCKET: BUCKET, **os.environ}
    )

    def load(target: str, run_id: str) -> tuple[LoadResult, float, dict[str, float]]:
        with _step_timer() as spent:
            started = time.perf_counter()
            result = load_target(
                LoadRequest(target=target, run_id=run_id),
                settings,
                warehouse_dsn=lambda: dsn,
                s3=s3,
            )
            return result, time.perf_counter() - started, dict(spent)

    for target, rows in _dimensions(volumes, rng).items():
        _put(
            s3,
            f"{target}/run=bench-1/part-0.parquet",
            pa.Table.from_pylist(rows, STAR_SCHEMAS[target]),
        )
        load(target, "bench-1")

    print(
        f"building {volumes.sales_order:,} fact_sales_order rows (scale {scale:g}) ...", flush=True
    )
    facts = _sales_orders(volumes, rng)
    size = _put(s3, "fact_sales_order/run=bench-1/part-0.parquet", facts)

    first, first_s, steps = load("fact_sales_order", "bench-1")
    if first.rows_loaded != facts.num_rows:
        raise RuntimeError(f"first load inserted {first.rows_loaded:,} of {facts.num_rows:,}")
    checks = "per-row FK triggers" if first.fk_triggers else "set-based FK checks"
    print(
        f"first load: {first.rows_loaded:,} rows ({size / 1e6:.1f} MB Parquet) in {first_s:.2f} s"
        f" = {first.rows_loaded / first_s:,.0f} rows/s ({checks})"
    )
    print("  " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()))

    again, again_s, _ = load("fact_sales_order", "bench-2")
    if again.applied:
        raise RuntimeError("loading the same file again applied it: the ledger did not skip it")
    print(f"same file again: skipped by the ledger in {again_s * 1000:.0f} ms")

    _put(s3, "fact_sales_order/run=bench-3/part-0.parquet", facts)
    replay, replay_s, steps = load("fact_sales_order", "bench-3")
    if replay.rows_loaded or replay.rows_skipped != facts.num_rows:
        raise RuntimeError(f"the same rows in a new file inserted {replay.rows_loaded:,} rows")
    print(
        f"same rows in a new file: 0 inserted, {replay.rows_skipped:,} skipped in {replay_s:.2f} s"
        f" = {replay_s / first_s:.0%} of the first load (target < 20 %)"
    )
    print("  " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 100.0)
