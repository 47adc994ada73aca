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
    assert "one Iceberg table per warehouse table" in properties["DatabaseInput"]["Description"]
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


def _glue_rights(platform, template, function) -> dict[str, set[str]]:
    """The Glue actions the function's role allows, checking that each reaches the lake alone."""
    allowed = allowed_actions(role_statements(template, function.role))
    database = f"<{platform.stack.get_logical_id(platform.stack.lakehouse.database)}>"
    lake = {
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/{database}",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/{database}/*",
    }
    glue = {
        action: resources for action, resources in allowed.items() if action.startswith("glue:")
    }
    assert {frozenset(resources) for resources in glue.values()} == {frozenset(lake)}
    return glue


def test_load_may_create_the_lakes_tables_and_commit_to_them_and_nothing_else(platform, template):
    # Given load's rights on the Glue Data Catalog
    glue = _glue_rights(platform, template, platform.stack.functions.load)

    # Then it commits to the lake's tables as pyiceberg's Glue catalog does (the table for
    # its metadata location and version, the database to tell an S3 Tables federation
    # apart, then the update), creates a table the lake lacks, and drops the Glue entry a
    # table made afresh replaces: in the lake's database only (checked above)
    assert set(glue) == {
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:UpdateTable",
        "glue:CreateTable",
        "glue:DeleteTable",
    }


def test_lake_maintenance_may_find_the_tables_due_and_commit_to_them_and_nothing_else(
    platform, template
):
    # Given lake maintenance's rights on the Glue Data Catalog
    glue = _glue_rights(platform, template, platform.stack.functions.lake_maintenance)

    # Then it lists the tables (whose properties say which are due) and commits to them,
    # in the lake's database only (checked above); creating and dropping tables is load's
    assert set(glue) == {"glue:GetTables", "glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"}


def test_no_other_function_reaches_the_glue_data_catalog(platform, template):
    # Given every function but the lake's two writers
    functions = platform.stack.functions
    others = [
        f
        for f in functions.by_stage.values()
        if f not in (functions.load, functions.lake_maintenance)
    ]

    # Then none may call Glue at all
    for function in others:
        allowed = allowed_actions(role_statements(template, function.role))
        assert not [action for action in allowed if action.startswith("glue:")], function


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
    # (no GetPartitions: an Iceberg table keeps its partitions in its own metadata)
    assert {action for action in actions if action.startswith("glue:")} == {
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetTables",
    }
    # And it changes nothing in the catalog, and writes nothing but query results
    assert not [a for a in actions if a.startswith("glue:") and not a.startswith("glue:Get")]
    assert "s3:DeleteObject" not in actions
    assert template.to_json()["Outputs"]["LakeQueryPolicyArn"]["Value"] == {"Ref": policy_id}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_when_and_how_the_lake_is_maintained_comes_from_context(synthesise_platform):
    # Given `cdk deploy -c lake_maintain_every_commits=4 -c lake_snapshot_retention_hours=168
    # -c lake_target_file_mb=64`
    platform = synthesise_platform(
        lake_maintain_every_commits="4",
        lake_snapshot_retention_hours="168",
        lake_target_file_mb="64",
    )

    # Then the maintenance step is told those
    maintenance = platform.template.find_resources("AWS::Lambda::Function")[
        logical_id(platform.stack.functions.lake_maintenance)
    ]
    variables = maintenance["Properties"]["Environment"]["Variables"]
    assert variables["LAKE_MAINTAIN_EVERY_COMMITS"] == "4"
    assert variables["LAKE_SNAPSHOT_RETENTION_HOURS"] == "168"
    assert variables["LAKE_TARGET_FILE_MB"] == "64"


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
        ("athena_results_retention_days", "0", "must be at least 1"),
        ("lake_maintain_every_commits", "0", "must be at least 1"),
        ("lake_snapshot_retention_hours", "a day", "must be a whole number"),
        ("lake_target_file_mb", -128, "must be at least 1"),
    ],
)
def test_a_lake_setting_that_cannot_be_deployed_is_refused_naming_it(
    synthesise_platform, key, value, message
):
    with pytest.raises(InvalidSettingError, match=message):
        synthesise_platform(**{key: value})
