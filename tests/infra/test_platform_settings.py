"""How operators choose per-deployment settings through CDK context."""

from __future__ import annotations

import pytest
from aws_cdk import App

from stacks.settings import InvalidSettingError, PlatformSettings
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
    ],
)
def test_a_value_that_cannot_be_deployed_is_rejected_before_deployment(key, value):
    # Given a context value CloudFormation or the pipeline could not work with
    app = App(context={key: value})

    # When the settings are read, Then synthesis stops and names the offending key
    with pytest.raises(InvalidSettingError, match=key):
        PlatformSettings.from_context(app)


def test_raw_retention_days_from_the_command_line_reaches_the_lifecycle_rule(synthesise_platform):
    # Given `cdk synth -c raw_retention_days=30`
    platform = synthesise_platform(raw_retention_days="30")

    # Then raw data moves to Glacier Instant Retrieval after 30 days instead of 90
    ingested_id = platform.stack.get_logical_id(platform.stack.buckets.ingested.node.default_child)
    ingested = platform.template.find_resources("AWS::S3::Bucket")[ingested_id]
    (rule,) = ingested["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}]


def test_stack_name_from_context_names_the_cloudformation_stack(synthesise_platform):
    # Given `cdk deploy -c stack_name=TotesDataPlatform-Staging`
    platform = synthesise_platform(stack_name="TotesDataPlatform-Staging")

    # Then a second, independent copy of the platform can live in the same account
    assert platform.stack.stack_name == "TotesDataPlatform-Staging"
