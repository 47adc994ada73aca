"""Drive the stages in-process against moto, the way the state machine would, for tests."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import (
    DynamoWatermarkStore,
    NewestBatches,
    Watermark,
    WatermarkStore,
)
from totes.lake.iceberg import Lake
from totes.load.stage import LoadRequest, LoadSettings, load_target
from totes.results import IngestResult, LoadResult
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
)
from totes.transform.stage import (
    TransformRequest,
    TransformResult,
    TransformSettings,
    transform_target,
)

INGESTED, PROCESSED, WATERMARKS, REGION = "ingested", "processed", "watermarks", "eu-west-2"
LAKE_DATABASE = "totes_lake"


#: What a load's payload says about the rows and files it moved (not its timings).
_LOAD_COUNTED = (
    "table",
    "run_id",
    "files",
    "rows_loaded",
    "rows_skipped",
    "rows_rejected",
    "files_waiting",
    "has_more",
    "files_remaining",
    "rows_replayed",
    "findings",
)


def load_counts(payload: dict[str, Any]) -> dict[str, Any]:
    """The counts of a load's payload, without its timings (which vary run to run)."""
    return {key: payload[key] for key in _LOAD_COUNTED}


def create_resources(s3: Any, dynamodb: Any) -> None:
    """The buckets and table the CDK stack deploys."""
    for bucket in (INGESTED, PROCESSED):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb.create_table(
        TableName=WATERMARKS,
        KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@dataclass
class Pipeline:
    """Ingest, transform and load over moto, one run at a time."""

    s3: Any
    dynamodb: Any
    source_dsn: str
    warehouse_dsn: str | None = None
    runs: int = 0
    transformed: dict[str, TransformResult] = field(default_factory=dict)
    #: The lake load commits to (none: the warehouse alone).
    lake: Lake | None = None

    @property
    def run_id(self) -> str:
        return f"run-{self.runs:04d}"

    @property
    def watermarks(self) -> DynamoWatermarkStore:
        return DynamoWatermarkStore(self.dynamodb, WATERMARKS)

    def ingest(
        self,
        table: str,
        *,
        extracted_at: datetime | None = None,
        watermarks: WatermarkStore | None = None,
        **options: Any,
    ) -> IngestResult:
        """Ingest ``table``, as an invocation that started at ``extracted_at`` (default: now)."""
        return ingest_table(
            IngestRequest(table=table, run_id=self.run_id, **options),
            IngestSettings(bucket=INGESTED, watermark_table=WATERMARKS),
            source_dsn=lambda: self.source_dsn,
            s3=self.s3,
            watermarks=watermarks or self.watermarks,
            clock=lambda: extracted_at or datetime.now(UTC),
        )

    def transform(
        self, target: str, *, watermarks: NewestBatches | None = None, **settings: Any
    ) -> TransformResult:
        result = transform_target(
            TransformRequest(target=target, run_id=self.run_id),
            TransformSettings(
                ingested_bucket=INGESTED,
                processed_bucket=PROCESSED,
                watermark_table=WATERMARKS,
                **settings,
            ),
            s3=self.s3,
            watermarks=watermarks or self.watermarks,
        )
        self.transformed[target] = result
        return result

    def load(self, target: str, **settings: Any) -> LoadResult:
        if self.warehouse_dsn is None:
            raise ValueError("this pipeline has no warehouse")
        dsn = self.warehouse_dsn
        return load_target(
            LoadRequest(target=target, run_id=self.run_id),
            LoadSettings(bucket=PROCESSED, **settings),
            warehouse_dsn=lambda: dsn,
            s3=self.s3,
            lake=self.lake,
        )

    def run_through_dimensions(self) -> None:
        """A new run that ingests and transforms everything and loads only the dimensions."""
        self.runs += 1
        for table in SOURCE_TABLES:
            self.ingest(table)
        for target in GOLD_TABLES:
            self.transform(target)
        for target in GOLD_DIMENSIONS:
            self.load(target)

    def run(self) -> dict[str, TransformResult]:
        """A new run: ingest every table, transform every target, load if there is a warehouse."""
        self.runs += 1
        for table in SOURCE_TABLES:
            self.ingest(table)
        results = {target: self.transform(target) for target in GOLD_TABLES}
        if self.warehouse_dsn is not None:
            for target in (*GOLD_DIMENSIONS, *FACT_TABLES):
                self.load(target)
        return results

    def keys(self, prefix: str, bucket: str = PROCESSED) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )

    def parquet(self, key: str) -> pa.Table:
        body = self.s3.get_object(Bucket=PROCESSED, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body))

    def gold(self, target: str) -> pa.Table:
        """Every gold file of a target, concatenated."""
        tables = [self.parquet(key) for key in self.keys(f"{target}/")]
        return pa.concat_tables(tables) if tables else pa.table({})


class CrashBeforeAdvance:
    """A watermark store whose process dies right before the advance (after the manifest)."""

    def __init__(self, store: WatermarkStore) -> None:
        self.store = store

    def read(self, table: str) -> Watermark:
        return self.store.read(table)

    def advance(self, table: str, expected: Watermark, new: Watermark) -> None:
        raise SystemExit("crash injected between the manifest and the watermark")


class StaleReader:
    """A watermark store read at the same moment as another execution's, before it advanced."""

    def __init__(self, store: WatermarkStore, seen: Watermark) -> None:
        self.store, self.seen = store, seen

    def read(self, table: str) -> Watermark:
        return self.seen

    def advance(self, table: str, expected: Watermark, new: Watermark) -> None:
        self.store.advance(table, expected, new)
