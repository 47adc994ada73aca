"""Benchmark the transform stage: the sales_order batch at scale 100 into fact_sales_order.

Uses the source database the ingest benchmark keeps (``totes_bench_source_<scale>``,
seeded on first use), ingests sales_order into moto's S3, then transforms it,
reporting time and peak RSS (which includes moto's in-memory copy of the objects).

    python bench/transform.py          # scale 100
    python bench/transform.py 1        # scale 1
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import boto3
from moto import mock_aws

from totes.db import connect, create_database, with_database
from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import DynamoWatermarkStore
from totes.local.postgres import find_or_start_server
from totes.source.generator import seed_synthetic
from totes.source.schema import existing_source_tables
from totes.transform.stage import TransformRequest, TransformSettings, transform_target

REGION = "eu-west-2"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(scale: float) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    with tempfile.TemporaryDirectory() as scratch:
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        database = f"totes_bench_source_{str(scale).replace('.', '_')}"
        create_database(server.admin_dsn, database)
        dsn = with_database(server.admin_dsn, database)
        with connect(dsn) as conn:
            if not existing_source_tables(conn):
                print(f"seeding scale {scale:g} (kept for later runs) ...", flush=True)
                seed_synthetic(conn, scale=scale, seed=0)
        with mock_aws():
            s3 = boto3.client("s3", region_name=REGION)
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            for bucket in ("ingested", "processed"):
                s3.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
                )
            dynamodb.create_table(
                TableName="watermarks",
                KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            ingested = ingest_table(
                IngestRequest("sales_order", "bench"),
                IngestSettings(bucket="ingested", watermark_table="watermarks", max_rows=10**8),
                source_dsn=lambda: dsn,
                s3=s3,
                watermarks=DynamoWatermarkStore(dynamodb, "watermarks"),
            )
            before = _peak_rss_mb()
            settings = TransformSettings(ingested_bucket="ingested", processed_bucket="processed")
            for target in ("fact_sales_order", "dim_date"):
                started = time.perf_counter()
                result = transform_target(TransformRequest(target, "bench"), settings, s3=s3)
                seconds = time.perf_counter() - started
                print(
                    f"{target} from {ingested.rows:,} sales orders: {result.rows:,} rows in "
                    f"{seconds:.2f} s; peak RSS {_peak_rss_mb():.0f} MB (after ingest: "
                    f"{before:.0f} MB, includes moto's copies)"
                )
        server.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 100.0)
