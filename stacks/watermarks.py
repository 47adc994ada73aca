"""DynamoDB table that holds the extraction high-water mark of each source table."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from totes.names import WATERMARK_PARTITION_KEY


class WatermarkTable(Construct):
    """One item per source table: how far extraction has safely got.

    Losing a watermark does not lose data (extraction starts again from the
    beginning and every stage is idempotent) but it costs a full re-extraction,
    so the table has point-in-time recovery, deletion protection, and outlives
    the stack.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.

    Attributes
    ----------
    table : aws_cdk.aws_dynamodb.Table
        On-demand table keyed by ``table_name`` (string).
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=WATERMARK_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            # A handful of conditional writes every few minutes: provisioned
            # capacity would be paid for and sit idle.
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
