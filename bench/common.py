"""What the stage benchmarks share: a kept source database, moto's AWS, peak memory."""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from totes.db import connect, create_database, with_database
from totes.source.schema import existing_source_tables
from totes_local.runtime.postgres import find_or_start_server
from totes_local.source.generator import seed_synthetic

REGION = "eu-west-2"
INGESTED, PROCESSED, WATERMARKS = "bench-ingested", "bench-processed", "bench-watermarks"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def bench_source(scale: float) -> Iterator[str]:
    """The DSN of a source seeded at ``scale``, kept as ``totes_bench_source_<scale>``."""
    with tempfile.TemporaryDirectory() as scratch:
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        try:
            database = f"totes_bench_source_{str(scale).replace('.', '_')}"
            create_database(server.admin_dsn, database)
            dsn = with_database(server.admin_dsn, database)
            with connect(dsn) as conn:
                if not existing_source_tables(conn):
                    print(f"seeding scale {scale:g} (kept for later runs) ...", flush=True)
                    seed_synthetic(conn, scale=scale, seed=0)
            yield dsn
        finally:
            server.stop()


@contextmanager
def bench_aws() -> Iterator[tuple[Any, Any]]:
    """moto's S3 and DynamoDB with the pipeline's buckets and watermark table."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for bucket in (INGESTED, PROCESSED):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        dynamodb.create_table(
            TableName=WATERMARKS,
            KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield s3, dynamodb
