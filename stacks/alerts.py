"""The one SNS topic every alert of the platform goes to."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

# The data keys SNS needs to encrypt and read messages on the topic.
_PUBLISH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class AlertTopic(Construct):
    """Encrypted, TLS-only SNS topic for alarms and failed executions.

    Encrypted with a customer managed key rather than the AWS managed
    ``alias/aws/sns``: CloudWatch alarms can only publish to an encrypted topic
    when the key policy lets the CloudWatch service use the key, and the policy
    of an AWS managed key cannot be changed.

    Parameters
    ----------
    scope : constructs.Construct
        Parent construct.
    construct_id : str
        Id of this construct within ``scope``.
    email : str or None
        Address subscribed to the topic (SNS asks it to confirm); ``None``
        subscribes nobody, for deployments whose alerts are wired elsewhere.

    Attributes
    ----------
    topic : aws_cdk.aws_sns.Topic
        The alert topic.
    key : aws_cdk.aws_kms.Key
        The key the topic's messages are encrypted with.
    """

    def __init__(self, scope: Construct, construct_id: str, *, email: str | None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts the alert notifications of {stack.stack_name}",
            enable_key_rotation=True,
            # Only messages in flight are encrypted with it; nothing outlives the stack.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        cloudwatch_alarms_of_this_account = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {
                "aws:SourceArn": stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name="*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            },
        }
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToEncryptAlerts",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=list(_PUBLISH_KEY_ACTIONS),
                resources=["*"],  # in a key policy, "*" is this key
                conditions=cloudwatch_alarms_of_this_account,
            )
        )

        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="totes data platform alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        # Declaring a topic policy replaces the default one, so CloudWatch's right
        # to publish is stated here rather than assumed.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=cloudwatch_alarms_of_this_account,
            )
        )
        if email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` publish to the topic, including use of its key.

        Parameters
        ----------
        grantee : aws_cdk.aws_iam.IGrantable
            Usually the role of the state machine.
        """
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        self.key.grant(grantee, *_PUBLISH_KEY_ACTIONS)
