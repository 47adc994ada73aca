"""Security and correctness checks a deployment has to pass: cdk-nag and cfn-lint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import Acknowledgment, App, Environment, Validations
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from cfnlint.config import ConfigMixIn
from cfnlint.runner import Runner
from constructs import IConstruct

from stacks.application import build_application

pytestmark = pytest.mark.infra

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CFN_LINT_CONFIG = REPOSITORY_ROOT / ".cfnlintrc.yaml"

# Long enough to say why, not just "not needed".
MINIMUM_REASON_LENGTH = 20


def test_awssolutions_finds_nothing_unacknowledged(platform):
    # Given the synthesised platform
    # When the AWS Solutions rule pack checks every resource
    report = AwsSolutionsChecks().validate_scope(platform.stack)

    # Then there is no error and no warning left that nobody has acknowledged
    findings = [
        f"{violation.severity} {violation.rule_name}: {violation.description} "
        f"({', '.join(str(resource.construct_path) for resource in violation.violating_resources)})"
        for violation in report.violations
    ]
    assert findings == []


def _acknowledged_rules(scope: IConstruct) -> dict[tuple[str, str], str]:
    """Reason of every rule acknowledged under ``scope``, by (construct path, rule)."""
    return {
        (construct.node.path, rule): reason
        for construct in scope.node.find_all()
        for entry in construct.node.metadata
        if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule, reason in entry.data.items()
    }


def test_every_acknowledged_rule_says_why(platform):
    # Given every rule acknowledged anywhere in the stack
    acknowledgements = _acknowledged_rules(platform.stack)

    # Then each one carries a reason a reviewer can judge, not just "not needed"
    unexplained = {
        f"{rule} on {path}": reason
        for (path, rule), reason in acknowledgements.items()
        if len(reason.strip()) < MINIMUM_REASON_LENGTH
    }
    assert unexplained == {}


def test_only_wildcards_without_a_narrower_form_and_the_pinned_runtime_are_acknowledged(platform):
    # Given every rule acknowledged anywhere in the stack
    # (the CDK records each acknowledgement once more, as of the annotation it silences)
    rules = {rule.removeprefix("Annotation::") for _, rule in _acknowledged_rules(platform.stack)}

    # Then the waivers are of two kinds only: the Python runtime the layers are
    # built for, and IAM wildcards that name no more than one bucket's objects,
    # one function's versions, the tables of the lake's one database, or actions
    # with no resource-level permissions
    assert rules
    assert {rule.split("[")[0] for rule in rules} == {"AwsSolutions-L1", "AwsSolutions-IAM5"}
    lake_tables = "AwsSolutions-IAM5[Resource::arn:aws:glue:eu-west-2:123456789012:table/"
    for rule in rules - {"AwsSolutions-L1", "AwsSolutions-IAM5[Resource::*]"}:
        if rule.startswith(lake_tables):
            database = platform.stack.get_logical_id(platform.stack.lakehouse.database)
            assert rule == f"{lake_tables}<{database}>/*]"
            continue
        assert rule.startswith("AwsSolutions-IAM5[Resource::<"), rule
        assert rule.endswith(("/*]", "/_manifests/*]", ".Arn>:*]")), rule


def test_an_acknowledgement_and_its_reason_are_recorded_in_the_template(cdk_json_context, tmp_path):
    # Given the application as app.py builds it, with a finding acknowledged
    app = App(context=cdk_json_context, outdir=str(tmp_path))
    stack = build_application(app, env=Environment(account="123456789012", region="eu-west-2"))
    reason = "Scratch bucket of this test only; it never holds data."
    scratch = s3.Bucket(stack, "Scratch", enforce_ssl=True)
    Validations.of(scratch).acknowledge(Acknowledgment(id="AwsSolutions-S1", reason=reason))

    # When the stack is synthesised
    resources = Template.from_stack(stack).to_json()["Resources"]

    # Then the deployed template tells an auditor which rule was waived and why
    scratch_id = stack.get_logical_id(scratch.node.default_child)
    assert resources[scratch_id]["Metadata"]["cdk_nag"]["rules_to_suppress"] == [
        {"id": "AwsSolutions-S1", "reason": reason}
    ]


def test_synthesis_fails_on_an_unacknowledged_finding(cdk_json_context, tmp_path):
    # Given the application as app.py builds it
    app = App(context=cdk_json_context, outdir=str(tmp_path))
    stack = build_application(app, env=Environment(account="123456789012", region="eu-west-2"))

    # When someone adds a bucket without access logs or TLS enforcement
    s3.Bucket(stack, "CarelessBucket")

    # Then `cdk synth` stops instead of producing a deployable template
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        Template.from_stack(stack)
    report = json.loads((tmp_path / "validation-report.json").read_text(encoding="utf-8"))
    rules = {
        violation["ruleName"]
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
    }
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


@pytest.mark.parametrize("shape", ["default", "in a VPC"])
def test_cfn_lint_finds_no_errors_or_warnings(template, synthesise_platform, tmp_path, shape):
    # Given the synthesised template written out as `cdk synth` would, in either shape
    if shape != "default":
        from tests.infra.test_database_network import NETWORK  # noqa: PLC0415

        template = synthesise_platform(**NETWORK).template
    template_path = tmp_path / "TotesDataPlatform.template.json"
    template_path.write_text(json.dumps(template.to_json(), indent=1), encoding="utf-8")

    # When cfn-lint checks it with the repository's settings
    config = ConfigMixIn(["--config-file", str(CFN_LINT_CONFIG), str(template_path)])
    matches = list(Runner(config).run())

    # Then CloudFormation would accept every resource and property as written
    problems = [str(match) for match in matches if match.rule.id[0] in {"E", "W"}]
    assert problems == []
