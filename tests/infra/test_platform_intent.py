"""What the synthesised stack promises about the data it stores.

Each test reads as: given the data platform synthesised with the fixed test
context, when CloudFormation deploys the template, then <the promise holds>.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

pytestmark = pytest.mark.infra


def _logical_id(construct: Any) -> str:
    """Logical id of the CloudFormation resource behind an L2 construct."""
    return str(construct.stack.get_logical_id(construct.node.default_child))


def _bucket(template: Template, logical_id: str) -> dict[str, Any]:
    bucket: dict[str, Any] = template.find_resources("AWS::S3::Bucket")[logical_id]
    return bucket


def _policy_statements_of(template: Template, bucket_logical_id: str) -> list[dict[str, Any]]:
    policies = template.find_resources(
        "AWS::S3::BucketPolicy", {"Properties": {"Bucket": {"Ref": bucket_logical_id}}}
    )
    assert len(policies) == 1, f"expected one bucket policy on {bucket_logical_id}"
    (policy,) = policies.values()
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_the_platform_has_exactly_four_buckets(template):
    # Given the synthesised platform
    # Then it holds raw data, processed data (with the lake), Athena's query results, and
    # the access logs of the three: no stray buckets
    template.resource_count_is("AWS::S3::Bucket", 4)


def test_no_bucket_can_be_made_public(template):
    # Given every bucket of the platform
    buckets = template.find_resources("AWS::S3::Bucket")

    # Then each one blocks public ACLs and public policies, old and new
    for logical_id, bucket in buckets.items():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id


def test_every_bucket_refuses_requests_without_tls(template):
    # Given every bucket of the platform
    for logical_id in template.find_resources("AWS::S3::Bucket"):
        # When a client talks to it over plain HTTP
        statements = _policy_statements_of(template, logical_id)

        # Then its bucket policy denies the request, whoever the caller is
        assert any(
            statement["Effect"] == "Deny"
            and statement["Principal"] == {"AWS": "*"}
            and statement["Action"] == "s3:*"
            and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statement in statements
        ), f"{logical_id} accepts requests without TLS"


def test_every_bucket_encrypts_objects_at_rest(template):
    # Given every bucket, Then objects are encrypted with S3-managed keys by default
    template.resource_properties_count_is(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            }
        },
        4,
    )


def test_the_raw_zone_keeps_every_version_of_every_object(platform, template):
    # Given the ingested (raw zone) bucket
    ingested = _bucket(template, _logical_id(platform.stack.buckets.ingested))

    # Then an overwrite or delete by mistake can be undone
    assert ingested["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_raw_data_moves_to_cheaper_storage_but_never_expires(platform, template):
    # Given the ingested bucket and raw_retention_days=90 in the test context
    ingested = _bucket(template, _logical_id(platform.stack.buckets.ingested))
    (rule,) = ingested["Properties"]["LifecycleConfiguration"]["Rules"]

    # Then objects and their older versions move to Glacier Instant Retrieval after 90 days
    after_90_days = [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
    assert rule["Transitions"] == after_90_days
    assert rule["NoncurrentVersionTransitions"] == after_90_days
    # And nothing is ever deleted: the raw zone is the record everything is rebuilt from
    expiring = {"ExpirationInDays", "ExpirationDate", "NoncurrentVersionExpiration"}
    assert expiring.isdisjoint(rule), f"raw data would expire: {rule}"


def test_data_buckets_log_every_request_to_the_access_log_bucket(platform, template):
    # Given the two data buckets
    buckets = platform.stack.buckets
    log_bucket_id = _logical_id(buckets.access_logs)

    # Then each writes its server access logs, under its own prefix, to the log bucket
    for data_bucket, prefix in ((buckets.ingested, "ingested/"), (buckets.processed, "processed/")):
        bucket = _bucket(template, _logical_id(data_bucket))
        assert bucket["Properties"]["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": log_bucket_id},
            "LogFilePrefix": prefix,
        }


def test_deleting_the_stack_keeps_the_data(template):
    # Given the resources that hold data
    for resource_type in ("AWS::S3::Bucket", "AWS::DynamoDB::Table"):
        # When the stack is deleted or a resource is replaced
        # Then CloudFormation leaves the bucket or table (and its contents) in place
        for logical_id, resource in template.find_resources(resource_type).items():
            assert resource["DeletionPolicy"] == "Retain", logical_id
            assert resource["UpdateReplacePolicy"] == "Retain", logical_id


def test_watermarks_are_keyed_by_source_table_name(template):
    # Given the watermark table
    # Then it has exactly one item per source table, addressed by its name
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "table_name", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "table_name", "AttributeType": "S"}],
        },
    )


def test_watermarks_are_recoverable_and_billed_per_request(template):
    # Given the watermark table
    # Then it can be restored to any second of the last 35 days, cannot be deleted
    # by accident, is encrypted with an AWS-managed key, and costs nothing when idle
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": True,
            "SSESpecification": {"SSEEnabled": True},
            "BillingMode": "PAY_PER_REQUEST",
            "ProvisionedThroughput": Match.absent(),
        },
    )


def test_stack_outputs_name_the_buckets_and_the_table(platform, template):
    # Given a deployed stack, When an operator reads its outputs
    # Then they find the generated names of both data buckets and of the watermark table
    stack = platform.stack
    expected = {
        "IngestedBucketName": _logical_id(stack.buckets.ingested),
        "ProcessedBucketName": _logical_id(stack.buckets.processed),
        "WatermarkTableName": _logical_id(stack.watermarks.table),
    }
    for output_name, logical_id in expected.items():
        template.has_output(output_name, {"Value": {"Ref": logical_id}})
