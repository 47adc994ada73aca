"""The one stack of the data platform: it composes the constructs, nothing more."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from stacks.settings import PlatformSettings
from stacks.storage import DataBuckets
from stacks.watermarks import WatermarkTable


class DataPlatformStack(Stack):
    """Storage and state of the totesys-to-warehouse pipeline.

    Parameters
    ----------
    scope : constructs.Construct
        Usually the ``App``.
    construct_id : str
        Construct id; also the CloudFormation stack name.
    settings : PlatformSettings
        Per-deployment choices, usually read from CDK context.
    env : aws_cdk.Environment or None
        Target account and region; ``None`` synthesises an
        environment-agnostic template.

    Attributes
    ----------
    settings : PlatformSettings
        The settings the stack was built with.
    buckets : DataBuckets
        Raw, processed and access-log buckets.
    watermarks : WatermarkTable
        Extraction high-water marks.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PlatformSettings,
        env: Environment | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=env,
            description="totes data platform: totesys to star-schema warehouse pipeline",
        )
        self.settings = settings

        self.buckets = DataBuckets(
            self,
            "DataBuckets",
            raw_retention_days=settings.raw_retention_days,
            access_log_retention_days=settings.access_log_retention_days,
        )
        self.watermarks = WatermarkTable(self, "Watermarks")

        CfnOutput(
            self,
            "IngestedBucketName",
            value=self.buckets.ingested.bucket_name,
            description="Raw zone: CSV parts and manifests, as extracted from totesys",
        )
        CfnOutput(
            self,
            "ProcessedBucketName",
            value=self.buckets.processed.bucket_name,
            description="Mirror and star zones: Parquet, ready to load into the warehouse",
        )
        CfnOutput(
            self,
            "WatermarkTableName",
            value=self.watermarks.table.table_name,
            description="Extraction high-water mark of each source table",
        )
