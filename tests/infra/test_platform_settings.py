"""How operators choose per-deployment settings through CDK context."""

from __future__ import annotations

import pytest
from aws_cdk import App

from stacks.log_groups import retention_period
from stacks.managed_layers import POWERTOOLS
from stacks.settings import LOG_RETENTION_DAYS_ALLOWED, InvalidSettingError, PlatformSettings
from totes.lake.maintenance import MaintenanceSettings
from totes.names import SOURCE_SECRET_NAME, WAREHOUSE_SECRET_NAME

pytestmark = pytest.mark.infra


def test_without_context_the_platform_uses_the_shared_names():
    # Given an application with no context at all
    settings = PlatformSettings.from_context(App())

    # Then the stack and secret names are the ones the handlers expect
    assert settings.stack_name == "TotesDataPlatform"
    assert settings.source_secret_name == SOURCE_SECRET_NAME
    assert settings.warehouse_secret_name == WAREHOUSE_SECRET_NAME
    assert settings.schedule_rate_minutes == 5
    assert settings.alarm_email is None
    # And the pipeline runs on schedule, gentle on the source database
    assert settings.schedule_enabled is True
    assert settings.ingest_max_concurrency == 3
    assert settings.log_retention_days == 30
    # And the Powertools layer is the release the lock pins, never whatever is newest
    assert settings.powertools_version == POWERTOOLS.version


def test_cdk_json_names_the_same_secrets_as_the_handlers(cdk_json_context):
    # Given the committed cdk.json
    settings = PlatformSettings.from_context(App(context=cdk_json_context))

    # Then a deployment with it reads the secrets the handlers look up
    assert settings.source_secret_name == SOURCE_SECRET_NAME
    assert settings.warehouse_secret_name == WAREHOUSE_SECRET_NAME


def test_command_line_values_arrive_as_text_and_are_understood():
    # Given `cdk synth -c schedule_rate_minutes=15 -c alarm_email=ops@example.com`
    app = App(context={"schedule_rate_minutes": "15", "alarm_email": " ops@example.com "})

    # Then the settings hold the number 15 and the trimmed address
    settings = PlatformSettings.from_context(app)
    assert settings.schedule_rate_minutes == 15
    assert settings.alarm_email == "ops@example.com"


def test_an_empty_alarm_email_means_no_subscription():
    # Given cdk.json's placeholder of an empty address
    settings = PlatformSettings.from_context(App(context={"alarm_email": ""}))

    # Then no address is subscribed, rather than an invalid one
    assert settings.alarm_email is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("schedule_rate_minutes", "0"),
        ("schedule_rate_minutes", "five"),
        ("schedule_rate_minutes", True),
        ("raw_retention_days", -1),
        ("raw_retention_days", 1.5),
        ("stack_name", "1-starts-with-a-digit"),
        ("stack_name", "has_underscores"),
        ("alarm_email", "not-an-address"),
        ("source_secret_name", " "),
        ("schedule_enabled", "maybe"),
        ("schedule_enabled", 1),
        ("ingest_max_concurrency", 0),
        ("ingest_max_concurrency", "41"),
        ("log_retention_days", 10),
        ("powertools_version", "2.40.0"),
        ("powertools_version", "newest"),
        ("ingest_max_rows", "0"),
        ("load_max_files", "many"),
        ("catch_up_budget_seconds", 0),
        ("catch_up_budget_seconds", "300"),
        ("catch_up_budget_seconds", "241"),
    ],
)
def test_a_value_that_cannot_be_deployed_is_rejected_before_deployment(key, value):
    # Given a context value CloudFormation or the pipeline could not work with
    app = App(context={key: value})

    # When the settings are read, Then synthesis stops and names the offending key
    with pytest.raises(InvalidSettingError, match=key):
        PlatformSettings.from_context(app)


def test_a_transform_bite_smaller_than_an_ingest_batch_is_rejected():
    # Given a transform limit below the ingest batch size (a raw batch is never split,
    # so the transform limit would not bound memory)
    app = App(context={"ingest_max_rows": 100_000, "transform_max_rows": "50000"})

    # When the settings are read, Then synthesis stops and says why
    with pytest.raises(InvalidSettingError, match=r"transform_max_rows \(50000\) must be at least"):
        PlatformSettings.from_context(app)


def test_raw_retention_days_from_the_command_line_reaches_the_lifecycle_rule(synthesise_platform):
    # Given `cdk synth -c raw_retention_days=30`
    platform = synthesise_platform(raw_retention_days="30")

    # Then raw data moves to Glacier Instant Retrieval after 30 days instead of 90
    ingested_id = platform.stack.get_logical_id(platform.stack.buckets.ingested.node.default_child)
    ingested = platform.template.find_resources("AWS::S3::Bucket")[ingested_id]
    (rule,) = ingested["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}]


def test_the_processed_bucket_keeps_previous_versions_for_the_days_context_sets(
    synthesise_platform,
):
    # Given `cdk deploy -c processed_version_retention_days=7`
    platform = synthesise_platform(processed_version_retention_days="7")

    # Then the processed bucket is versioned: a deleted or overwritten object (transform
    # state, the lake, quarantined rows) can be restored for 7 days, then its version expires
    processed_id = platform.stack.get_logical_id(
        platform.stack.buckets.processed.node.default_child
    )
    processed = platform.template.find_resources("AWS::S3::Bucket")[processed_id]["Properties"]
    assert processed["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in processed["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpirePreviousVersions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert rules["ExpirePreviousVersions"]["ExpiredObjectDeleteMarker"] is True


def test_stack_name_from_context_names_the_cloudformation_stack(synthesise_platform):
    # Given `cdk deploy -c stack_name=TotesDataPlatform-Staging`
    platform = synthesise_platform(stack_name="TotesDataPlatform-Staging")

    # Then a second, independent copy of the platform can live in the same account
    assert platform.stack.stack_name == "TotesDataPlatform-Staging"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("false", False),
        ("False", False),
        ("true", True),
        ("no", False),
    ],
)
def test_schedule_enabled_accepts_json_booleans_and_command_line_text(value, expected):
    # Given `cdk.json` holding a boolean, or `cdk deploy -c schedule_enabled=false` (text)
    settings = PlatformSettings.from_context(App(context={"schedule_enabled": value}))

    # Then "false" means false, although the text "false" is truthy in Python
    assert settings.schedule_enabled is expected


def test_cdk_json_declares_every_setting_with_its_default(cdk_json_context):
    # Given the committed cdk.json and the settings' own defaults
    defaults = PlatformSettings()
    declared = PlatformSettings.from_context(App(context=cdk_json_context))

    # Then an operator reading cdk.json sees every setting, set to what the code assumes
    network_keys = ("vpc_id", "subnet_ids", "route_table_ids", "database_security_group_ids")
    for name in PlatformSettings.__dataclass_fields__:
        if name == "network":  # declared by its context keys, empty: no VPC
            assert all(key in cdk_json_context for key in (*network_keys, "database_port"))
            assert declared.network is None
            continue
        assert name in cdk_json_context, f"{name} is missing from cdk.json"
        if name != "alarm_email":
            assert getattr(declared, name) == getattr(defaults, name), name


def test_the_lake_maintenance_defaults_are_the_maintenance_steps_own():
    # Given the settings' defaults and those the maintenance step assumes when not told
    defaults = PlatformSettings()
    handler = MaintenanceSettings(bucket="processed", database="lake")

    # Then a deployment that sets nothing maintains the lake as the step would by itself
    assert defaults.lake_maintain_every_commits == handler.every_commits
    assert defaults.lake_snapshot_retention_hours == handler.snapshot_retention_hours
    assert defaults.lake_target_file_mb == handler.target_file_mb


def test_every_accepted_log_retention_has_a_cloudwatch_retention_period():
    # Given every retention the settings accept, Then the CDK can express each one
    for days in LOG_RETENTION_DAYS_ALLOWED:
        assert retention_period(days) is not None
