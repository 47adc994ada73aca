"""Benchmark the ingest stage: throughput on sales_order, peak memory, and an idle run.

Seeds a source at the given scale once (kept in database ``totes_bench_source_<scale>``
for later runs), then, against moto's in-memory S3 and DynamoDB:

1. ingests sales_order in one batch and reports rows/s and peak RSS;
2. ingests every other table;
3. runs ingest over all 11 tables again with no source change (the idle run).

    python bench/ingest.py          # scale 100
    python bench/ingest.py 1        # scale 1
"""

from __future__ import annotations

import subprocess
import sys
import time

from common import INGESTED, WATERMARKS, bench_aws, bench_source, peak_rss_mb

from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import DynamoWatermarkStore, Watermark
from totes.tables import SOURCE_TABLES


class _DiscardingS3:
    """Counts what would be uploaded, keeps nothing: isolates the handler's own memory."""

    def __init__(self) -> None:
        self.bytes = 0

    def put_object(self, *, Body: bytes, **_: object) -> None:  # noqa: N803 (boto3's name)
        self.bytes += len(Body)


class _MemoryWatermarks:
    def read(self, table: str) -> Watermark:
        return Watermark()

    def advance(self, table: str, expected: Watermark, new: Watermark) -> None:
        del table, expected, new


def measure_memory(dsn: str) -> None:
    """Ingest sales_order with nothing kept in memory but what ingest itself holds."""
    s3 = _DiscardingS3()
    result = ingest_table(
        IngestRequest(table="sales_order", run_id="memory"),
        IngestSettings(bucket="unused", watermark_table="unused", max_rows=10**8),
        source_dsn=lambda: dsn,
        s3=s3,
        watermarks=_MemoryWatermarks(),
    )
    print(
        f"sales_order, parts discarded after upload: {result.rows:,} rows, "
        f"{s3.bytes / 1e6:.1f} MB gzip; peak RSS {peak_rss_mb():.0f} MB"
    )


def main(scale: float) -> None:
    with bench_source(scale) as dsn:
        # A fresh process, so its peak RSS is ingest's alone.
        subprocess.run(  # noqa: S603 (this interpreter, this file, fixed arguments)
            [sys.executable, __file__, "--memory", dsn], check=True
        )
        with bench_aws() as (s3, dynamodb):
            settings = IngestSettings(bucket=INGESTED, watermark_table=WATERMARKS, max_rows=10**8)
            store = DynamoWatermarkStore(dynamodb, WATERMARKS)

            def ingest(table: str, run: str) -> tuple[int, float]:
                started = time.perf_counter()
                result = ingest_table(
                    IngestRequest(table=table, run_id=run),
                    settings,
                    source_dsn=lambda: dsn,
                    s3=s3,
                    watermarks=store,
                )
                return result.rows, time.perf_counter() - started

            before = peak_rss_mb()
            rows, seconds = ingest("sales_order", "bench-1")
            print(
                f"sales_order at scale {scale:g}: {rows:,} rows in {seconds:.2f} s = "
                f"{rows / seconds:,.0f} rows/s; peak RSS {peak_rss_mb():.0f} MB "
                f"(before: {before:.0f} MB, includes moto's in-memory copy of the parts)"
            )
            for table in SOURCE_TABLES:
                if table != "sales_order":
                    ingest(table, "bench-1")
            idle = [ingest(table, "bench-2") for table in SOURCE_TABLES]
            if any(rows for rows, _ in idle):
                raise RuntimeError("the idle run found rows: the source changed during the run")
            idle_seconds = sum(seconds for _, seconds in idle)
            print(f"idle run over {len(SOURCE_TABLES)} tables: {idle_seconds:.3f} s in total")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        measure_memory(sys.argv[2])
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 100.0)
