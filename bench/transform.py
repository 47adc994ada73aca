"""Benchmark the transform stage: the sales_order batch at scale 100 into fact_sales_order.

Uses the source database the ingest benchmark keeps (``totes_bench_source_<scale>``,
seeded on first use), ingests sales_order into moto's S3, then transforms it,
reporting time and peak RSS (which includes moto's in-memory copy of the objects).

    python bench/transform.py          # scale 100
    python bench/transform.py 1        # scale 1
"""

from __future__ import annotations

import sys
import time

from common import INGESTED, PROCESSED, WATERMARKS, bench_aws, bench_source, peak_rss_mb

from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import DynamoWatermarkStore
from totes.transform.stage import TransformRequest, TransformSettings, transform_target


def main(scale: float) -> None:
    with bench_source(scale) as dsn, bench_aws() as (s3, dynamodb):
        ingested = ingest_table(
            IngestRequest(table="sales_order", run_id="bench"),
            IngestSettings(bucket=INGESTED, watermark_table=WATERMARKS, max_rows=10**8),
            source_dsn=lambda: dsn,
            s3=s3,
            watermarks=DynamoWatermarkStore(dynamodb, WATERMARKS),
        )
        before = peak_rss_mb()
        settings = TransformSettings(
            ingested_bucket=INGESTED, processed_bucket=PROCESSED, watermark_table=WATERMARKS
        )
        for target in ("fact_sales_order",):
            started = time.perf_counter()
            result = transform_target(
                TransformRequest(target=target, run_id="bench"),
                settings,
                s3=s3,
                watermarks=DynamoWatermarkStore(dynamodb, WATERMARKS),
            )
            seconds = time.perf_counter() - started
            print(
                f"{target} from {ingested.rows:,} sales orders: {result.rows:,} rows in "
                f"{seconds:.2f} s; peak RSS {peak_rss_mb():.0f} MB (after ingest: "
                f"{before:.0f} MB, includes moto's copies)"
            )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 100.0)
