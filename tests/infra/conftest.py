"""Shared fixtures of the infrastructure tier: one synthesis per test module.

Synthesis needs the Lambda layers that ``scripts/build_layers.py`` builds into
``build/layers``. The first infrastructure test of a session builds them when
they are missing or stale (a pip download, then cached); later sessions reuse them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPOSITORY_ROOT / "cdk.json"
BUILD_LAYERS_SCRIPT = REPOSITORY_ROOT / "scripts" / "build_layers.py"

# The jsii runtime (a Node.js child process) inherits the environment, so this
# must be set before aws_cdk is first imported. It only silences a banner about
# the Node.js version; it changes nothing that is synthesised.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Environment  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from stacks.application import build_application  # noqa: E402
from stacks.data_platform_stack import DataPlatformStack  # noqa: E402
from stacks.managed_layers import POWERTOOLS  # noqa: E402

TEST_ACCOUNT = "123456789012"
TEST_REGION = "eu-west-2"

#: Product settings the tests pin, whatever an operator has put in cdk.json.
FIXED_PRODUCT_CONTEXT: Mapping[str, Any] = {
    "stack_name": "TotesDataPlatform",
    "alarm_email": "data-alerts@example.com",
    "schedule_rate_minutes": 5,
    "source_secret_name": "totesys_db_credentials",
    "warehouse_secret_name": "postgres_db_credentials",
    "raw_retention_days": 90,
    "access_log_retention_days": 365,
    "processed_version_retention_days": 30,
    "schedule_enabled": True,
    "ingest_max_concurrency": 3,
    "log_retention_days": 30,
    "powertools_version": POWERTOOLS.version,
}


@pytest.fixture(scope="session", autouse=True)
def built_layers() -> Path:
    """Build the Lambda layers once, if missing or stale, as ``make build`` does.

    Returns the folder holding the layer zips and their size reports.
    """
    completed = subprocess.run(  # noqa: S603 (this interpreter running a script of the repository)
        [sys.executable, str(BUILD_LAYERS_SCRIPT)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if completed.returncode != 0:
        pytest.fail(
            "could not build the Lambda layers (needs network access to PyPI the first time):\n"
            + completed.stdout
            + completed.stderr
        )
    return REPOSITORY_ROOT / "build" / "layers"


def _cdk_json_context() -> dict[str, Any]:
    """The context block of cdk.json: feature flags and product settings."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


@dataclass(frozen=True)
class SynthesisedPlatform:
    """A stack built the way ``app.py`` builds it, and its template."""

    stack: DataPlatformStack
    template: Template


def _synthesise(outdir: Path, **context_overrides: Any) -> SynthesisedPlatform:
    """Build the application as ``cdk synth`` would, with the fixed test context.

    The feature flags come from cdk.json, so the tests see the template the CLI
    produces; the product settings are pinned so the tests do not change when
    an operator edits cdk.json.
    """
    context = {**_cdk_json_context(), **FIXED_PRODUCT_CONTEXT, **context_overrides}
    app = App(context=context, outdir=str(outdir))
    stack = build_application(app, env=Environment(account=TEST_ACCOUNT, region=TEST_REGION))
    try:
        template = Template.from_stack(stack)
    except RuntimeError as error:
        # A failed cdk-nag check surfaces as a terse "ValidationFailed"; the
        # report next to the assembly says which rule fired on which resource.
        report = outdir / "validation-report.json"
        if "ValidationFailed" in str(error) and report.exists():
            pytest.fail(f"synthesis failed validation:\n{report.read_text(encoding='utf-8')}")
        raise
    return SynthesisedPlatform(stack=stack, template=template)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SynthesisedPlatform:
    """The data platform synthesised once for the whole test module."""
    return _synthesise(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="module")
def template(platform: SynthesisedPlatform) -> Template:
    """The CloudFormation template of the data platform stack."""
    return platform.template


_ASSET_HASH = re.compile(r"[0-9a-f]{64}")
ASSET_HASH_PLACEHOLDER = "<asset-hash>"
#: A function version's logical id ends with a digest of the function's properties.
_VERSION_DIGEST = re.compile(r"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}")


def _mask_machine_dependent(value: Any) -> Any:
    """Return ``value`` (parsed template JSON) with asset hashes replaced by a placeholder.

    Asset hashes depend on the bytes of bundled code and layers, which differ
    between machines and change with every code edit; a snapshot of the
    infrastructure must not. They appear inside values (``S3Key``) and keys
    (asset parameters, ``cdk-hnb659fds-assets-...`` object names), so both are
    masked, and so is the digest in a function version's logical id, which covers them.
    """
    if isinstance(value, dict):
        return {_mask_text(key): _mask_machine_dependent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_machine_dependent(item) for item in value]
    if isinstance(value, str):
        return _mask_text(value)
    return value


def _mask_text(text: str) -> str:
    return _VERSION_DIGEST.sub(r"\1<version-digest>", _ASSET_HASH.sub(ASSET_HASH_PLACEHOLDER, text))


@pytest.fixture
def synthesise_platform(tmp_path: Path) -> Callable[..., SynthesisedPlatform]:
    """Synthesise a fresh copy of the platform with some context changed.

    Costs a second or two per call: use it only for tests about context.
    """

    def synthesise_with(**context_overrides: Any) -> SynthesisedPlatform:
        return _synthesise(tmp_path / "cdk.out", **context_overrides)

    return synthesise_with


@pytest.fixture(scope="session")
def cdk_json_context() -> dict[str, Any]:
    """The context block of cdk.json, as the CDK CLI passes it to app.py."""
    return _cdk_json_context()


@pytest.fixture(scope="session")
def mask_machine_dependent() -> Callable[[Any], Any]:
    """The function that makes template JSON comparable across machines."""
    return _mask_machine_dependent
