"""The one stack of the data platform: it composes the constructs, nothing more."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from stacks.alerts import AlertTopic
from stacks.credentials_check import CredentialsCheck
from stacks.functions import LakeMaintenancePolicy, PipelineFunctions, StageLimits
from stacks.lake import Lakehouse
from stacks.monitoring import PipelineMonitoring
from stacks.network import DatabaseNetwork
from stacks.packaging import PipelinePackaging
from stacks.schedule import PipelineSchedule
from stacks.settings import PlatformSettings
from stacks.storage import DataBuckets
from stacks.watermarks import WatermarkTable
from stacks.workflow import PipelineWorkflow


class DataPlatformStack(Stack):
    """The totesys-to-warehouse pipeline: storage, functions, workflow, schedule, alarms.

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
    packaging : PipelinePackaging or None
        Handler folders and built layers; ``None`` uses the repository's
        ``lambdas/`` and ``build/layers/``.

    Attributes
    ----------
    settings : PlatformSettings
        The settings the stack was built with.
    buckets : DataBuckets
        Raw, processed and access-log buckets.
    watermarks : WatermarkTable
        Extraction high-water marks.
    lakehouse : Lakehouse
        The Glue database and Athena workgroup of the lake zone.
    alerts : AlertTopic
        The topic every alert goes to.
    functions : PipelineFunctions
        Ingest, transform, load, the progress check after each pass, the failure notice
        and the lake's maintenance.
    workflow : PipelineWorkflow
        The Express state machine.
    schedule : PipelineSchedule
        What starts it.
    monitoring : PipelineMonitoring
        Alarms and dashboard.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: PlatformSettings,
        env: Environment | None = None,
        packaging: PipelinePackaging | None = None,
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
            processed_version_retention_days=settings.processed_version_retention_days,
            access_log_retention_days=settings.access_log_retention_days,
        )
        self.watermarks = WatermarkTable(self, "Watermarks")
        self.lakehouse = Lakehouse(
            self,
            "Lakehouse",
            buckets=self.buckets,
            database_name=settings.lake_database,
            workgroup_name=settings.athena_workgroup,
            results_retention_days=settings.athena_results_retention_days,
        )
        # First, because both the workflow and the alarms report to it.
        self.alerts = AlertTopic(self, "Alerts", email=settings.alarm_email)
        self.functions = PipelineFunctions(
            self,
            "Functions",
            packaging=packaging or PipelinePackaging.from_repository(),
            buckets=self.buckets,
            watermark_table=self.watermarks.table,
            source_secret_name=settings.source_secret_name,
            warehouse_secret_name=settings.warehouse_secret_name,
            log_retention_days=settings.log_retention_days,
            powertools_version=settings.powertools_version,
            lake_database_name=self.lakehouse.database.ref,
            limits=StageLimits(
                ingest_max_rows=settings.ingest_max_rows,
                transform_max_rows=settings.transform_max_rows,
                load_max_files=settings.load_max_files,
                catch_up_budget_seconds=settings.catch_up_budget_seconds,
            ),
            lake_maintenance=LakeMaintenancePolicy(
                every_commits=settings.lake_maintain_every_commits,
                snapshot_retention_hours=settings.lake_snapshot_retention_hours,
                target_file_mb=settings.lake_target_file_mb,
            ),
        )
        self.lakehouse.grant_table_writing(self.functions.load)
        self.lakehouse.grant_maintenance(self.functions.lake_maintenance)
        if settings.network is not None:
            # Without it the functions run outside any VPC and reach the databases at the
            # addresses their secrets give: those must accept TLS connections from Lambda.
            self.network = DatabaseNetwork(self, "DatabaseNetwork", settings=settings.network)
            for function in (
                self.functions.ingest,
                self.functions.load,
                self.functions.credentials_check,
            ):
                self.network.place(function)
        self.workflow = PipelineWorkflow(
            self,
            "Workflow",
            functions=self.functions,
            alerts=self.alerts,
            ingest_max_concurrency=settings.ingest_max_concurrency,
            log_retention_days=settings.log_retention_days,
        )
        self.schedule = PipelineSchedule(
            self,
            "Schedule",
            state_machine=self.workflow.state_machine,
            rate_minutes=settings.schedule_rate_minutes,
            enabled=settings.schedule_enabled,
        )
        if settings.schedule_enabled:
            # Nothing is scheduled until both secrets are there: without them every run
            # would fail and mail the topic (see README, First deployment).
            self.credentials_check = CredentialsCheck(
                self,
                "CredentialsCheck",
                function=self.functions.credentials_check,
                secret_names=(settings.source_secret_name, settings.warehouse_secret_name),
            )
            self.schedule.node.add_dependency(self.credentials_check)
        self.monitoring = PipelineMonitoring(
            self,
            "Monitoring",
            alerts=self.alerts,
            state_machine=self.workflow.state_machine,
            functions=self.functions,
            schedule_rate_minutes=settings.schedule_rate_minutes,
        )

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
            description="Mirror and gold zones: Parquet, ready to load into the warehouse",
        )
        CfnOutput(
            self,
            "WatermarkTableName",
            value=self.watermarks.table.table_name,
            description="Extraction high-water mark of each source table",
        )
        CfnOutput(
            self,
            "PipelineStateMachineArn",
            value=self.workflow.state_machine.state_machine_arn,
            description="The Express state machine; start an execution by hand with this ARN",
        )
        CfnOutput(
            self,
            "AlertTopicArn",
            value=self.alerts.topic.topic_arn,
            description="Alarms and failed executions are published here",
        )
        CfnOutput(
            self,
            "LakeDatabaseName",
            value=self.lakehouse.database.ref,
            description="Glue database of the lake: one Iceberg table per warehouse table",
        )
        CfnOutput(
            self,
            "LakeWorkgroupName",
            value=self.lakehouse.workgroup.ref,
            description="Athena workgroup to query the lake with (results encrypted, expiring)",
        )
        CfnOutput(
            self,
            "LakeQueryPolicyArn",
            value=self.lakehouse.query_policy.managed_policy_arn,
            description="Attach to a role to let it query the lake through the workgroup",
        )
        CfnOutput(
            self,
            "DashboardName",
            value=self.monitoring.dashboard.dashboard_name,
            description="CloudWatch dashboard of the pipeline",
        )
