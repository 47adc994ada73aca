"""The lakehouse: the Glue database, the Athena workgroup and its results, who may do what."""

from __future__ import annotations

import pytest

from stacks.lake import ATHENA_ENGINE, BYTES_SCANNED_CUTOFF
from stacks.settings import InvalidSettingError
from tests.infra.template_reading import allowed_actions, logical_id, role_statements

ACCOUNT, REGION = "123456789012", "eu-west-2"


def _one(template, resource_type: str) -> tuple[str, dict]:
    ((resource_id, resource),) = template.find_resources(resource_type).items()
    return resource_id, resource["Properties"]


def test_the_lake_has_a_glue_database_of_its_own(platform, template):
    # Given the stack's Glue database
    database_id, properties = _one(template, "AWS::Glue::Database")
    # Then it is in this account's catalog, named from the stack unless context says otherwise
    assert properties["CatalogId"] == ACCOUNT
    assert properties["DatabaseInput"]["Name"] == "totesdataplatform_lake"
    assert "one table per warehouse table" in properties["DatabaseInput"]["Description"]
    # And its name is an output, for `totes lake --stack` and the analysts
    outputs = template.to_json()["Outputs"]
    assert outputs["LakeDatabaseName"]["Value"] == {"Ref": database_id}


def test_the_workgroup_enforces_encrypted_results_in_a_bucket_that_forgets_them(platform, template):
    # Given the Athena workgroup
    workgroup_id, properties = _one(template, "AWS::Athena::WorkGroup")
    configuration = properties["WorkGroupConfiguration"]
    results = platform.stack.lakehouse.results
    # Then its settings cannot be overridden per query, and queries are capped and measured
    assert properties["Name"] == "TotesDataPlatform-lake"
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["BytesScannedCutoffPerQuery"] == BYTES_SCANNED_CUTOFF
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    assert configuration["EngineVersion"] == {"SelectedEngineVersion": ATHENA_ENGINE}
    # And every result is written encrypted, to the results bucket, owned by this account
    output = configuration["ResultConfiguration"]
    assert output["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    assert output["ExpectedBucketOwner"] == ACCOUNT
    assert output["OutputLocation"] == {
        "Fn::Join": ["", ["s3://", {"Ref": logical_id(results)}, "/"]]
    }
    # And the results bucket expires them, and logs its access like every bucket
    bucket = template.find_resources("AWS::S3::Bucket")[logical_id(results)]["Properties"]
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["ExpirationInDays"], rule["Status"]) == (30, "Enabled")
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "athenaresults/"
    assert template.to_json()["Outputs"]["LakeWorkgroupName"]["Value"] == {"Ref": workgroup_id}


def test_the_catalog_function_may_keep_the_lakes_tables_current_and_nothing_else(
    platform, template
):
    # Given the catalog function's rights
    allowed = allowed_actions(role_statements(template, platform.stack.functions.catalog.role))
    database = f"<{platform.stack.get_logical_id(platform.stack.lakehouse.database)}>"
    catalog = {
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{database}",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{database}/*",
    }
    # Then it reads and writes tables and partitions of the lake's database only
    glue = {
        action: resources for action, resources in allowed.items() if action.startswith("glue:")
    }
    # (not GetDatabase: the step names its database, never looks it up)
    assert set(glue) == {
        "glue:GetTable",
        "glue:GetTables",
        "glue:GetPartitions",
        "glue:CreateTable",
        "glue:UpdateTable",
        "glue:DeleteTable",
        "glue:BatchCreatePartition",
        "glue:BatchDeletePartition",
    }
    assert {frozenset(resources) for resources in glue.values()} == {frozenset(catalog)}
    # And of S3, only the lake zone of the processed bucket
    processed = f"<{logical_id(platform.stack.buckets.processed)}.Arn>"
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed[action] == {f"{processed}/lake/*"}, action
    assert not [action for action in allowed if action.startswith(("athena:", "dynamodb:"))]


def test_analysts_get_a_policy_to_query_the_lake_through_the_workgroup(platform, template):
    # Given the query policy
    policy_id = platform.stack.get_logical_id(
        platform.stack.lakehouse.query_policy.node.default_child
    )
    statements = template.find_resources("AWS::IAM::ManagedPolicy")[policy_id]["Properties"][
        "PolicyDocument"
    ]["Statement"]
    actions = {action for statement in statements for action in _listed(statement["Action"])}
    # Then it runs queries in the workgroup, reads the catalog and the lake, writes results
    assert {action for action in actions if action.startswith("athena:")} == {
        "athena:StartQueryExecution",
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
        "athena:StopQueryExecution",
        "athena:GetWorkGroup",
    }
    assert {action for action in actions if action.startswith("glue:")} == {
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetTables",
        "glue:GetPartitions",
    }
    # And it changes nothing in the catalog, and writes nothing but query results
    assert not [a for a in actions if a.startswith("glue:") and not a.startswith("glue:Get")]
    assert "s3:DeleteObject" not in actions
    assert template.to_json()["Outputs"]["LakeQueryPolicyArn"]["Value"] == {"Ref": policy_id}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_the_lakes_names_come_from_context(synthesise_platform):
    platform = synthesise_platform(
        lake_database_name="sales_lake", athena_workgroup_name="analysts"
    )
    _, database = _one(platform.template, "AWS::Glue::Database")
    _, workgroup = _one(platform.template, "AWS::Athena::WorkGroup")
    assert (database["DatabaseInput"]["Name"], workgroup["Name"]) == ("sales_lake", "analysts")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lake_database_name", "Sales-Lake", "is not a Glue database name"),
        ("athena_workgroup_name", "the analysts", "is not an Athena workgroup name"),
        ("aws_sdk_pandas_version", "latest", "must be a 3.x.y release"),
        ("athena_results_retention_days", "0", "must be at least 1"),
    ],
)
def test_a_lake_setting_that_cannot_be_deployed_is_refused_naming_it(
    synthesise_platform, key, value, message
):
    with pytest.raises(InvalidSettingError, match=message):
        synthesise_platform(**{key: value})
