"""The CDK entry point, run the way the CDK CLI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.slow]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def test_app_py_synthesises_the_platform_into_a_cloud_assembly(cdk_json_context, tmp_path):
    # Given the context the CDK CLI passes from cdk.json and a target environment
    environment = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(cdk_json_context),
        "CDK_OUTDIR": str(tmp_path),
        "CDK_DEFAULT_ACCOUNT": "123456789012",
        "CDK_DEFAULT_REGION": "eu-west-2",
    }

    # When app.py runs, as `cdk synth` runs it
    completed = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    # Then it exits cleanly and writes the stack's template for that account and region
    assert completed.returncode == 0, completed.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    stack_artifact = manifest["artifacts"]["TotesDataPlatform"]
    assert stack_artifact["environment"] == "aws://123456789012/eu-west-2"
    template = json.loads((tmp_path / "TotesDataPlatform.template.json").read_text("utf-8"))
    resource_types = sorted(resource["Type"] for resource in template["Resources"].values())
    assert resource_types.count("AWS::S3::Bucket") == 4
    assert resource_types.count("AWS::DynamoDB::Table") == 1
    assert resource_types.count("AWS::Lambda::Function") == 7
    assert resource_types.count("Custom::CredentialsReadable") == 1
    assert resource_types.count("AWS::StepFunctions::StateMachine") == 1
    assert resource_types.count("AWS::Scheduler::Schedule") == 1
