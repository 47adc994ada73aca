"""A first deployment that pages nobody: nothing is scheduled until both credentials
secrets are readable and complete, and a deployment without them stops saying so."""

from __future__ import annotations

import pytest

from tests.infra.template_reading import allowed_actions, logical_id, role_statements

pytestmark = pytest.mark.infra

PREFIX = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:"


def _check_resources(template) -> dict:
    return template.find_resources("Custom::CredentialsReadable")


def test_the_schedule_is_created_only_after_the_credentials_check_succeeds(platform, template):
    # Given the synthesised stack with its schedule enabled
    (check_id, check), *others = _check_resources(template).items()
    (schedule,) = template.find_resources("AWS::Scheduler::Schedule").values()

    # Then one check names both secrets the functions read, answered by its function
    assert others == []
    assert check["Properties"]["SecretNames"] == [
        "totesys_db_credentials",
        "postgres_db_credentials",
    ]
    function = platform.stack.functions.credentials_check
    assert check["Properties"]["ServiceToken"] == {"Fn::GetAtt": [logical_id(function), "Arn"]}
    # And CloudFormation waits two minutes for its answer, not its default hour
    assert check["Properties"]["ServiceTimeout"] == "120"
    # And the schedule waits for it: a failed check stops the deployment before any run
    assert check_id in schedule["DependsOn"]


def test_the_check_may_read_the_two_secrets_and_nothing_else(platform, template):
    # Given the check function's role
    allowed = allowed_actions(
        role_statements(template, platform.stack.functions.credentials_check.role)
    )

    # Then it reads exactly the two secrets, and otherwise writes only its logs and traces
    assert allowed.pop("secretsmanager:GetSecretValue") == {
        f"{PREFIX}totesys_db_credentials-??????",
        f"{PREFIX}postgres_db_credentials-??????",
    }
    assert set(allowed) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_a_deployment_with_the_schedule_disabled_needs_no_secrets_yet(synthesise_platform):
    # Given `cdk deploy -c schedule_enabled=false` (to pause the pipeline, or to deploy
    # before the secrets exist)
    platform = synthesise_platform(schedule_enabled="false")

    # Then there is nothing to check: nothing will run
    assert _check_resources(platform.template) == {}
