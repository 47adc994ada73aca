"""The lakehouse: a Glue database of the lake zone's Iceberg tables, an Athena workgroup to
query them, and a policy that lets a person (or a tool) do so."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Stack, Token, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.storage import DataBuckets, locked_down_bucket
from totes.names import LAKE_PREFIX

#: Athena cancels a query that would scan more: a runaway query costs at most this.
BYTES_SCANNED_CUTOFF = 10 * 1024**3
#: Athena engine version 3 (Trino): the engine the queries are written for, and the one
#: that reads Iceberg tables.
ATHENA_ENGINE = "Athena engine version 3"
# What Athena reads of the catalog to query an Iceberg table: no partitions, which an
# Iceberg table keeps in its own metadata rather than in Glue.
_GLUE_READ = ("glue:GetDatabase", "glue:GetTable", "glue:GetTables")
# Every commit of pyiceberg's Glue catalog reads the table (its metadata location and
# version, for an optimistic lock) and the database (to tell an S3 Tables federation
# apart), then updates the table.
_GLUE_COMMIT = ("glue:GetDatabase", "glue:GetTable", "glue:UpdateTable")


class Lakehouse(Construct):
    """The Glue database of the lake zone's tables, and Athena, set up to query them.

    - The database holds one Apache Iceberg table per warehouse table, its data and
      metadata in the lake zone. The load function creates each and commits to it what
      the warehouse committed (:meth:`grant_table_writing`); the lake maintenance step
      at the end of every execution compacts their files and expires their old
      snapshots (:meth:`grant_maintenance`).
    - The workgroup enforces its configuration: every query writes its results,
      encrypted, to the results bucket (of its own, which expires them), and is
      cancelled past :data:`BYTES_SCANNED_CUTOFF`.
    - ``query_policy`` is a managed policy with what querying needs and nothing
      more: attach it to the roles of the analysts (``totes lake query --stack``).

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    buckets : DataBuckets
        The processed bucket (the lake zone is in it) and the access-log bucket.
    database_name : str
        Name of the Glue database.
    workgroup_name : str
        Name of the Athena workgroup.
    results_retention_days : int
        Days query results are kept.

    Attributes
    ----------
    database : aws_cdk.aws_glue.CfnDatabase
    workgroup : aws_cdk.aws_athena.CfnWorkGroup
    results : aws_cdk.aws_s3.Bucket
        Where Athena writes query results.
    query_policy : aws_cdk.aws_iam.ManagedPolicy
        Querying the lake through the workgroup.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        buckets: DataBuckets,
        database_name: str,
        workgroup_name: str,
        results_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._processed = buckets.processed
        self.database_name = database_name
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name,
                description="The totes lake: one Iceberg table per warehouse table (facts "
                "with every version, dimensions current), in the lake zone of the processed "
                "bucket",
            ),
        )
        self.results = locked_down_bucket(
            self,
            "AthenaResults",
            access_logs=buckets.access_logs,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireQueryResults",
                    expiration=Duration.days(results_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=workgroup_name,
            description="Queries of the totes lake",
            state="ENABLED",
            # Deleting the stack deletes the workgroup's saved queries with it.
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ATHENA_ENGINE
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"{self.results.s3_url_for_object()}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                    expected_bucket_owner=stack.account,
                ),
            ),
        )
        self.query_policy = iam.ManagedPolicy(
            self,
            "QueryPolicy",
            description=f"Query the lake of {stack.stack_name} with Athena (workgroup "
            f"{workgroup_name}): read the catalog and the lake zone, write query results",
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "athena:StartQueryExecution",
                        "athena:GetQueryExecution",
                        "athena:GetQueryResults",
                        "athena:StopQueryExecution",
                        "athena:GetWorkGroup",
                    ],
                    resources=[self.workgroup_arn],
                ),
                iam.PolicyStatement(actions=list(_GLUE_READ), resources=self.catalog_arns()),
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[self._processed.arn_for_objects(f"{LAKE_PREFIX}/*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket", "s3:GetBucketLocation"],
                    resources=[self._processed.bucket_arn, self.results.bucket_arn],
                ),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[self.results.arn_for_objects("*")],
                ),
            ],
        )
        acknowledge = Validations.of(self.query_policy).acknowledge
        acknowledge(self._tables_acknowledgment())
        for bucket, pattern, why in (
            (self._processed, f"{LAKE_PREFIX}/*", "the lake's files, under the lake prefix only"),
            (self.results, "*", "query results, in the bucket Athena writes them to"),
        ):
            bucket_id = stack.get_logical_id(_cfn_bucket(bucket))
            acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{pattern}]",
                    reason=f"Queries read or write objects whose keys are known at run time: "
                    f"{why}.",
                )
            )

    @property
    def workgroup_arn(self) -> str:
        """The workgroup's ARN."""
        return Stack.of(self).format_arn(
            service="athena", resource="workgroup", resource_name=self.workgroup.name
        )

    def catalog_arns(self) -> list[str]:
        """The Data Catalog, the lake's database and its tables (Glue checks all three)."""
        stack = Stack.of(self)
        # By reference, not by name: the grant follows the database wherever it is deployed.
        database = self.database.ref
        return [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=database),
            stack.format_arn(service="glue", resource="table", resource_name=f"{database}/*"),
        ]

    def _tables_acknowledgment(self) -> Acknowledgment:
        stack = Stack.of(self)
        # As cdk-nag writes the ARN: pseudo parameters where the stack has no environment.
        partition, region, account = (
            f"<AWS::{name}>" if Token.is_unresolved(value) else value
            for name, value in (
                ("Partition", stack.partition),
                ("Region", stack.region),
                ("AccountId", stack.account),
            )
        )
        database = f"<{stack.get_logical_id(self.database)}>"
        tables = f"arn:{partition}:glue:{region}:{account}:table/{database}/*"
        return Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::{tables}]",
            reason="The lake's tables are created by the load function at run time, one "
            "per warehouse table; the grant is scoped to the lake's own database.",
        )

    def grant_table_writing(self, function: lambda_.Function) -> None:
        """Let the load function create the lake's tables and commit to them.

        Besides committing, it creates a table the lake lacks, after dropping whatever
        Glue entry held its name (an earlier release's table, or one whose metadata is
        lost). Its rights on the lake zone's objects are granted with its other S3 rights.
        """
        self._grant_glue(function, [*_GLUE_COMMIT, "glue:CreateTable", "glue:DeleteTable"])

    def grant_maintenance(self, function: lambda_.Function) -> None:
        """Let the lake maintenance function find the tables due and commit to them.

        One ``GetTables`` per run lists every table with the properties that say which
        are due; compaction and snapshot expiry are commits. Creating and dropping tables
        is load's alone. Its rights on the lake zone's objects are granted with its other
        S3 rights.
        """
        self._grant_glue(function, ["glue:GetTables", *_GLUE_COMMIT])

    def _grant_glue(self, function: lambda_.Function, actions: list[str]) -> None:
        if function.role is None:  # pragma: no cover - every function here has its own role
            raise ValueError(f"{function.node.path} has no role")
        Validations.of(function.role).acknowledge(self._tables_acknowledgment())
        function.add_to_role_policy(
            iam.PolicyStatement(actions=actions, resources=self.catalog_arns())
        )


def _cfn_bucket(bucket: s3.Bucket) -> s3.CfnBucket:
    cfn_bucket = bucket.node.default_child
    if not isinstance(cfn_bucket, s3.CfnBucket):  # pragma: no cover - an L2 bucket always has one
        raise TypeError(f"{bucket.node.path} has no CloudFormation bucket")
    return cfn_bucket
