"""The synthesised template, frozen as a reviewable JSON snapshot.

Any change to the infrastructure shows up as a diff of
``__snapshots__/test_template_snapshot/*.json`` in review. After an intended
change, refresh it with ``pytest tests/infra --snapshot-update``.
"""

from __future__ import annotations

import pytest
from aws_cdk import App, CfnOutput, Environment, Stack
from aws_cdk.assertions import Template
from aws_cdk.aws_s3_assets import Asset
from syrupy.extensions.json import JSONSnapshotExtension

pytestmark = pytest.mark.infra


@pytest.fixture
def json_snapshot(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def test_template_matches_the_reviewed_snapshot(template, mask_machine_dependent, json_snapshot):
    # Given the platform synthesised with the fixed test context
    # When its template is compared with the committed snapshot
    # Then nothing has changed that a reviewer has not seen
    assert mask_machine_dependent(template.to_json()) == json_snapshot


def test_snapshot_ignores_the_bytes_of_bundled_code(tmp_path, mask_machine_dependent):
    # Given two builds whose bundled code differs (as every handler edit will)
    def template_with_asset(content: str) -> dict:
        source = tmp_path / content
        source.mkdir()
        (source / "handler.py").write_text(content, encoding="utf-8")
        stack = Stack(App(), "Assets", env=Environment(account="123456789012", region="eu-west-2"))
        CfnOutput(stack, "CodeKey", value=Asset(stack, "Code", path=str(source)).s3_object_key)
        return Template.from_stack(stack).to_json()

    first, second = template_with_asset("version_one"), template_with_asset("version_two")

    # When the templates are masked for the snapshot
    # Then they differ only by asset hash, which the mask removes
    assert first != second
    assert mask_machine_dependent(first) == mask_machine_dependent(second)
    assert "<asset-hash>" in str(mask_machine_dependent(first))
