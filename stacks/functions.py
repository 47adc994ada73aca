"""The Lambda functions of the pipeline: ingest, transform, load, the progress check, and
the lake's maintenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks.log_groups import operational_log_group
from stacks.packaging import PipelinePackaging
from stacks.settings import LAKE_MAINTENANCE_TIMEOUT_SECONDS
from stacks.storage import DataBuckets
from totes.names import (
    LAKE_PREFIX,
    METRICS_NAMESPACE,
    MIRROR_PREFIX,
    REJECTS_PREFIX,
    SERVICE_NAME,
    TRANSFORM_STAGING_PREFIX,
    TRANSFORM_STATE_PREFIX,
    EnvironmentVariable,
)
from totes.tables import GOLD_TABLES

#: The runtime the dependencies layer is built for (scripts/build_layers.py).
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
HANDLER = "handler.handler"
#: The alias the state machine invokes: the function's current version, published by
#: each deployment that changes the function, so that an execution under way when a
#: deployment lands runs one version of each function throughout its invocations.
LIVE_ALIAS = "live"

# Public SSM parameter, published by the Powertools team in every region they
# publish the layer to, whose value is the ARN of that release's layer.
_POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/x86_64/python3.12/{version}"

_CODE_EXCLUDES = ["__pycache__", "*.pyc", ".keep"]


@dataclass(frozen=True)
class _Sizing:
    memory_mb: int
    timeout: Duration


# Transform holds a table's worth of Arrow data in memory, hence the most memory;
# Lambda also gives CPU in proportion to memory, which Parquet encoding uses.
_INGEST = _Sizing(memory_mb=1024, timeout=Duration.seconds(120))
_TRANSFORM = _Sizing(memory_mb=2048, timeout=Duration.seconds(180))
_LOAD = _Sizing(memory_mb=1024, timeout=Duration.seconds(120))
# Adds up a pass's counts: no data passes through it.
_PROGRESS = _Sizing(memory_mb=256, timeout=Duration.seconds(10))
# Writes the failure email from the error: text only.
_FAILURE = _Sizing(memory_mb=256, timeout=Duration.seconds(10))
# Compaction rewrites a partition (a fact's month, a dimension whole) from memory.
# Its timeout is what an execution keeps aside after its passes (settings: the budget).
_LAKE_MAINTENANCE = _Sizing(
    memory_mb=1024, timeout=Duration.seconds(LAKE_MAINTENANCE_TIMEOUT_SECONDS)
)
# Reads two secrets when the stack is deployed, then answers CloudFormation.
_CREDENTIALS_CHECK = _Sizing(memory_mb=256, timeout=Duration.seconds(30))


@dataclass(frozen=True)
class StageLimits:
    """How big a bite each stage takes per invocation (see the handlers' settings).

    Attributes
    ----------
    ingest_max_rows : int
        Source rows per ingest batch.
    transform_max_rows : int
        Raw rows one transform invocation consumes per warehouse table.
    load_max_files : int
        Gold files one load invocation applies per warehouse table.
    catch_up_budget_seconds : int
        Elapsed seconds by which an execution's last pass should end.
    """

    ingest_max_rows: int
    transform_max_rows: int
    load_max_files: int
    catch_up_budget_seconds: int


@dataclass(frozen=True)
class LakeMaintenancePolicy:
    """When the lake maintenance step compacts a table, and what it keeps.

    Attributes
    ----------
    every_commits : int
        Commits to a table since it was last maintained that make it due.
    snapshot_retention_hours : int
        Age past which a table's snapshots are expired.
    target_file_mb : int
        Size of the files compaction writes.
    """

    every_commits: int
    snapshot_retention_hours: int
    target_file_mb: int


class PipelineFunctions(Construct):
    """Ingest, transform, load, progress, the failure notice and the lake's maintenance:
    each with its own role and log group, all with the same layers.

    Every role is written out rather than granted broadly, so it is visible
    (and tested) that each stage reaches only what it needs:

    - ingest reads the source credentials, adds raw objects but can read, list or
      delete none (it writes only new keys, conditionally; versioning keeps any
      accidental overwrite recoverable), and reads and writes watermarks;
    - transform reads the raw zone and the newest batch each watermark names, reads its
      own state, staged files and mirrors, and writes those, the gold files of each
      warehouse table and rejected rows;
    - load reads the warehouse credentials, transform's states (how many gold files each
      table has committed), the gold files and the quarantine, writes
      (and deletes what it replaced of) quarantined rows, and writes the lake's Iceberg
      tables: their data and metadata files in the lake zone, which it reads back and
      deletes when it makes a table afresh (its Glue rights come from
      :meth:`stacks.lake.Lakehouse.grant_table_writing`);
    - progress (the check after each pass) reaches nothing but its own logs;
    - describe-failure (the failure email's text) reaches nothing but its own logs too:
      the state machine publishes what it returns;
    - lake maintenance reads and writes the lake zone of the processed bucket: it
      compacts the tables' small files, expires their old snapshots and deletes the
      files nothing references any more (its Glue rights come from
      :meth:`stacks.lake.Lakehouse.grant_maintenance`);
    - credentials-check (run by CloudFormation when the stack is deployed, see
      :class:`stacks.credentials_check.CredentialsCheck`) reads both secrets.

    Metrics go out as CloudWatch embedded metric format in the logs, so no
    function needs ``cloudwatch:PutMetricData``. The workflow tier records every call
    the functions make and checks it against these roles, and every grant against
    those calls (``tests/workflow/test_least_privilege.py``).

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    packaging : PipelinePackaging
        Handler folders and built layer zips; checked before anything is created.
    buckets : DataBuckets
        Raw and processed zones.
    watermark_table : aws_cdk.aws_dynamodb.ITable
        Extraction high-water marks.
    source_secret_name, warehouse_secret_name : str
        Secrets Manager names of the database credentials.
    log_retention_days : int
        Days the function logs are kept.
    powertools_version : str
        Release of the public Powertools v3 layer, or ``"latest"``.
    lake_database_name : str
        The Glue database of the lake's tables.
    limits : StageLimits
        The bite of each stage and the catch-up budget, given to the functions as
        environment variables.
    lake_maintenance : LakeMaintenancePolicy
        When the maintenance step compacts a table and what it keeps, given to it as
        environment variables.

    Attributes
    ----------
    ingest, transform, load, progress, describe_failure, lake_maintenance : Function
        The functions.
    layers : list of aws_cdk.aws_lambda.ILayerVersion
        Dependencies, core package and Powertools, in that order: every function's layers.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        packaging: PipelinePackaging,
        buckets: DataBuckets,
        watermark_table: dynamodb.ITable,
        source_secret_name: str,
        warehouse_secret_name: str,
        log_retention_days: int,
        powertools_version: str,
        lake_database_name: str,
        limits: StageLimits,
        lake_maintenance: LakeMaintenancePolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        packaging.check()
        self._log_retention_days = log_retention_days
        self._live: dict[str, lambda_.Alias] = {}
        self.layers = self._layers(packaging, powertools_version)

        self.ingest = self._function(
            "Ingest",
            code=packaging.ingest_code,
            sizing=_INGEST,
            description="Extracts the next batch of one totesys table into the raw zone",
            environment={
                EnvironmentVariable.INGESTED_BUCKET: buckets.ingested.bucket_name,
                EnvironmentVariable.WATERMARK_TABLE: watermark_table.table_name,
                EnvironmentVariable.SOURCE_SECRET_NAME: source_secret_name,
                EnvironmentVariable.INGEST_MAX_ROWS: str(limits.ingest_max_rows),
            },
        )
        _allow_reading_secret(self.ingest, source_secret_name)
        # Conditional puts of new keys only: no read, no list, no delete (versioning keeps
        # any accidental overwrite recoverable).
        _allow_objects(
            self.ingest,
            buckets.ingested,
            ["s3:PutObject"],
            ["*"],
            why="ingest adds CSV parts and manifests under keys made at run time (table, "
            "run id, part); the raw zone is its bucket alone",
        )
        # Compare-and-set is a conditional PutItem: IAM cannot require the condition, the
        # watermark store always sends one.
        _allow(self.ingest, ["dynamodb:GetItem", "dynamodb:PutItem"], [watermark_table.table_arn])

        self.transform = self._function(
            "Transform",
            code=packaging.transform_code,
            sizing=_TRANSFORM,
            description="Shapes raw batches into the mirror and gold zones (Parquet)",
            environment={
                EnvironmentVariable.INGESTED_BUCKET: buckets.ingested.bucket_name,
                EnvironmentVariable.PROCESSED_BUCKET: buckets.processed.bucket_name,
                EnvironmentVariable.WATERMARK_TABLE: watermark_table.table_name,
                EnvironmentVariable.TRANSFORM_MAX_ROWS: str(limits.transform_max_rows),
                # How far back transform lists manifests: how late one can arrive.
                EnvironmentVariable.INGEST_TIMEOUT_SECONDS: str(int(_INGEST.timeout.to_seconds())),
            },
        )
        # The watermarks name each source's newest batch: a source none of whose batches
        # is new to the target is not listed.
        _allow(self.transform, ["dynamodb:BatchGetItem"], [watermark_table.table_arn])
        _allow_listing(self.transform, buckets.ingested)
        _allow_objects(
            self.transform,
            buckets.ingested,
            ["s3:GetObject"],
            ["*"],
            why="transform reads the batches ingest wrote, whose keys are made at run time; "
            "the whole raw zone is its input",
        )
        # Its state and staged files may not exist yet: only a role that may list the
        # bucket is told 404 (absent) rather than 403.
        _allow_listing(self.transform, buckets.processed)
        _allow_objects(
            self.transform,
            buckets.processed,
            # Read as well as written: a put that finds its content-named key taken, or a
            # commit resumed from staging, checks the object already there.
            ["s3:GetObject", "s3:PutObject"],
            [
                f"{TRANSFORM_STATE_PREFIX}/*",
                f"{TRANSFORM_STAGING_PREFIX}/*",
                f"{MIRROR_PREFIX}/*",
                f"{REJECTS_PREFIX}/*",
                *(f"{table}/*" for table in GOLD_TABLES),
            ],
            why="transform writes the gold files of each warehouse table, rejected rows, "
            "and its own state, staged files and mirrors, under keys made at run time",
        )

        self.load = self._function(
            "Load",
            code=packaging.load_code,
            sizing=_LOAD,
            description="Loads star-zone files into the warehouse, exactly once per file",
            environment={
                EnvironmentVariable.PROCESSED_BUCKET: buckets.processed.bucket_name,
                EnvironmentVariable.WAREHOUSE_SECRET_NAME: warehouse_secret_name,
                EnvironmentVariable.LOAD_MAX_FILES: str(limits.load_max_files),
                EnvironmentVariable.LAKE_DATABASE: lake_database_name,
            },
        )
        _allow_reading_secret(self.load, warehouse_secret_name)
        _allow_listing(self.load, buckets.processed)
        _allow_objects(
            self.load,
            buckets.processed,
            ["s3:GetObject"],
            [
                f"{TRANSFORM_STATE_PREFIX}/*",
                *(f"{table}/*" for table in GOLD_TABLES),
                f"{REJECTS_PREFIX}/*",
                f"{LAKE_PREFIX}/*",
            ],
            why="load reads transform's state of each warehouse table (how many gold files "
            "it committed), the gold files, the quarantine it replays and the lake's Iceberg "
            "metadata and data files, under keys made at run time",
        )
        # Facts whose dimension row is missing are quarantined, and rewritten or deleted
        # once replayed. What the warehouse committed is committed to the lake's tables:
        # a table made afresh (its metadata lost, or of an earlier release's layout)
        # replaces its folder's files, and each commit deletes the table's metadata files
        # past the ten it keeps.
        _allow_objects(
            self.load,
            buckets.processed,
            ["s3:PutObject", "s3:DeleteObject"],
            [f"{REJECTS_PREFIX}/*", f"{LAKE_PREFIX}/*"],
            why="load writes quarantined rows and the lake tables' data and metadata files, "
            "keyed by table and run, and deletes those it replaced",
        )

        self.progress = self._function(
            "Progress",
            code=packaging.progress_code,
            sizing=_PROGRESS,
            description="Totals a pipeline pass, publishes the backlog, decides on another pass",
            environment={
                EnvironmentVariable.CATCH_UP_BUDGET_SECONDS: str(limits.catch_up_budget_seconds),
            },
        )

        self.describe_failure = self._function(
            "DescribeFailure",
            code=packaging.failure_code,
            sizing=_FAILURE,
            description="Writes the email about a failed execution: state, table, error, advice",
            environment={},
            # Runs only when an execution failed: a cold start there costs nobody a wait.
            invoked_through_alias=False,
        )

        self.lake_maintenance = self._function(
            "LakeMaintenance",
            code=packaging.lake_maintenance_code,
            sizing=_LAKE_MAINTENANCE,
            description="Compacts the lake's Iceberg tables, expires old snapshots, deletes "
            "unreferenced files",
            environment={
                EnvironmentVariable.PROCESSED_BUCKET: buckets.processed.bucket_name,
                EnvironmentVariable.LAKE_DATABASE: lake_database_name,
                EnvironmentVariable.LAKE_MAINTAIN_EVERY_COMMITS: str(
                    lake_maintenance.every_commits
                ),
                EnvironmentVariable.LAKE_SNAPSHOT_RETENTION_HOURS: str(
                    lake_maintenance.snapshot_retention_hours
                ),
                EnvironmentVariable.LAKE_TARGET_FILE_MB: str(lake_maintenance.target_file_mb),
            },
        )
        # Orphans are found by listing a table's folder.
        _allow_listing(self.lake_maintenance, buckets.processed)
        _allow_objects(
            self.lake_maintenance,
            buckets.processed,
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            [f"{LAKE_PREFIX}/*"],
            why="lake maintenance reads the lake tables' files, writes the compacted data "
            "files and new metadata, and deletes the files no snapshot references any more",
        )

        self.credentials_check = self._function(
            "CredentialsCheck",
            code=packaging.credentials_check_code,
            sizing=_CREDENTIALS_CHECK,
            description="At deployment: both credentials secrets readable and complete, or why not",
            environment={},
            # Runs once per deployment that creates it: nothing waits on a cold start.
            invoked_through_alias=False,
        )
        _allow_reading_secret(self.credentials_check, source_secret_name)
        _allow_reading_secret(self.credentials_check, warehouse_secret_name)

    @property
    def by_stage(self) -> Mapping[str, lambda_.Function]:
        """The functions by stage name, in pipeline order."""
        return {
            "ingest": self.ingest,
            "transform": self.transform,
            "load": self.load,
            "progress": self.progress,
            "describe_failure": self.describe_failure,
            "lake_maintenance": self.lake_maintenance,
        }

    def live(self, function: lambda_.Function) -> lambda_.IFunction:
        """What the state machine invokes: the function's ``live`` alias, if it has one."""
        return self._live.get(function.node.id, function)

    def _layers(
        self, packaging: PipelinePackaging, powertools_version: str
    ) -> list[lambda_.ILayerVersion]:
        dependencies = lambda_.LayerVersion(
            self,
            "DependenciesLayer",
            code=lambda_.Code.from_asset(str(packaging.dependencies_layer)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Third-party dependencies of the totes functions: psycopg, pyarrow, "
            "pyiceberg",
        )
        core = lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=lambda_.Code.from_asset(str(packaging.core_layer)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="The totes core package shared by every handler",
        )
        # Resolved by CloudFormation at deploy time in the deployment's region: no
        # account or region is baked into the template, and no lookup runs at synth.
        powertools_arn = ssm.StringParameter.value_for_string_parameter(
            self, _POWERTOOLS_LAYER_PARAMETER.format(version=powertools_version)
        )
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self, "PowertoolsLayer", powertools_arn
        )
        return [dependencies, core, powertools]

    def _function(
        self,
        construct_id: str,
        *,
        code: Path,
        sizing: _Sizing,
        description: str,
        environment: Mapping[str, str],
        invoked_through_alias: bool = True,
    ) -> lambda_.Function:
        log_group = operational_log_group(
            self, f"{construct_id}Logs", retention_days=self._log_retention_days
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{construct_id} function of {Stack.of(self).stack_name}",
        )
        # Written out instead of AWSLambdaBasicExecutionRole, whose log rights
        # reach every log group in the account.
        _allow(role, ["logs:CreateLogStream", "logs:PutLogEvents"], [log_group.log_group_arn])
        function = lambda_.Function(
            self,
            construct_id,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(code), exclude=_CODE_EXCLUDES),
            layers=self.layers,
            memory_size=sizing.memory_mb,
            timeout=sizing.timeout,
            description=description,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            # No SnapStart: its snapshot cache was two thirds of the monthly bill, for cold
            # starts that a five-minute schedule rarely meets (ADR 20). A replaced version
            # is deleted.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        if invoked_through_alias:
            self._live[construct_id] = lambda_.Alias(
                self,
                f"{construct_id}Live",
                alias_name=LIVE_ALIAS,
                version=function.current_version,
                description="The current version, which the state machine invokes",
            )
        Validations.of(function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=(
                    "Pinned to python3.12 on purpose: the dependencies layer is built from "
                    "cp312 wheels and the public Powertools layer is chosen for python3.12; "
                    "moving the runtime means rebuilding both, as one reviewed change."
                ),
            )
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Active X-Ray tracing needs xray:PutTraceSegments and "
                    "xray:PutTelemetryRecords, which support no resource-level permissions."
                ),
            )
        )
        return function


def _allow(target: lambda_.Function | iam.Role, actions: list[str], resources: list[str]) -> None:
    role = _role_of(target) if isinstance(target, lambda_.Function) else target
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources))


def _role_of(function: lambda_.Function) -> iam.IRole:
    if function.role is None:  # pragma: no cover - every function here is given its own role
        raise ValueError(f"{function.node.path} has no role")
    return function.role


def _allow_listing(function: lambda_.Function, bucket: s3.IBucket) -> None:
    # Without ListBucket, S3 answers a missing key with 403 instead of 404.
    _allow(function, ["s3:ListBucket"], [bucket.bucket_arn])


def _allow_objects(
    function: lambda_.Function,
    bucket: s3.Bucket,
    actions: list[str],
    key_patterns: list[str],
    *,
    why: str,
) -> None:
    _allow(function, actions, [bucket.arn_for_objects(pattern) for pattern in key_patterns])
    bucket_logical_id = Stack.of(function).get_logical_id(_cfn_bucket(bucket))
    for pattern in key_patterns:
        # On the role: its policy, not the function, is what the rule inspects.
        Validations.of(_role_of(function)).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{pattern}]",
                reason=f"{why} ({', '.join(actions)} within this one bucket).",
            )
        )


def _cfn_bucket(bucket: s3.Bucket) -> s3.CfnBucket:
    cfn_bucket = bucket.node.default_child
    if not isinstance(cfn_bucket, s3.CfnBucket):  # pragma: no cover - an L2 bucket always has one
        raise TypeError(f"{bucket.node.path} has no CloudFormation bucket")
    return cfn_bucket


def _allow_reading_secret(function: lambda_.Function, secret_name: str) -> None:
    # Secrets Manager appends "-" and six random characters to the name in the ARN;
    # matching exactly six keeps a secret named e.g. "<name>-old" out of reach.
    secret_arn = Stack.of(function).format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=f"{secret_name}-??????",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    _allow(function, ["secretsmanager:GetSecretValue"], [secret_arn])
