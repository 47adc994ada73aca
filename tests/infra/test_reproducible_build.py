"""A fresh clone builds what was tested: locked Python packages, a CDK CLI that reads what
the CDK library writes, and AWS-managed layers pinned to the releases the lock names."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from aws_cdk import cloud_assembly_schema
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from stacks.managed_layers import POWERTOOLS

from .conftest import REPOSITORY_ROOT, SynthesisedPlatform

pytestmark = pytest.mark.infra

LOCK = REPOSITORY_ROOT / "requirements.txt"
CDK_CLI = REPOSITORY_ROOT / "node_modules" / ".bin" / "cdk"


def _locked() -> dict[str, set[str]]:
    """Every version the lock pins for each package (two where markers split a package)."""
    pins: dict[str, set[str]] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line and line[0].isalnum() and "==" in line:
            requirement = Requirement(line.split(";")[0].rstrip(" \\"))
            (specifier,) = requirement.specifier
            pins.setdefault(canonicalize_name(requirement.name), set()).add(specifier.version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        listed.extend(extra)
    return [Requirement(text) for text in listed if not text.startswith("totes[")]


def test_the_lock_pins_every_declared_dependency_within_its_range():
    # Given pyproject.toml's ranges and the lock every installation reads
    pins = _locked()

    # Then each declared package is locked, at a version its range allows (a range edited
    # without `make lock` fails here, not on a fresh clone next month)
    for requirement in _declared():
        versions = pins.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements.txt: run `make lock`"
        assert all(requirement.specifier.contains(v) for v in versions), (
            f"requirements.txt pins {requirement.name} {sorted(versions)}, outside "
            f"{requirement.specifier}: run `make lock`"
        )


def test_every_locked_package_carries_its_hashes():
    # Given the lock, as `pip install --require-hashes` reads it
    text = LOCK.read_text(encoding="utf-8")
    entries = [entry for entry in text.split("\n") if entry and entry[0].isalnum()]

    # Then every pinned package is followed by the SHA-256 of its files
    for entry in entries:
        block = text.split(entry, 1)[1].split("\n    # via", 1)[0]
        assert "--hash=sha256:" in block, entry


def test_the_aws_managed_layer_is_the_release_the_lock_installs_locally(cdk_json_context):
    # Given the lock and the release of the AWS-published Powertools layer
    pins = _locked()

    # Then the functions on AWS import the Powertools that the tests ran with here, and
    # cdk.json deploys that release
    assert pins[POWERTOOLS.package] == {POWERTOOLS.version}
    assert cdk_json_context["powertools_version"] == POWERTOOLS.version


def test_the_cdk_cli_is_pinned_and_the_library_asks_for_no_newer_one():
    # Given the CLI package.json pins and the CDK library the lock installs
    package = json.loads((REPOSITORY_ROOT / "package.json").read_text(encoding="utf-8"))
    pinned_cli = package["devDependencies"]["aws-cdk"]
    lock = json.loads((REPOSITORY_ROOT / "package-lock.json").read_text(encoding="utf-8"))

    # Then the CLI is one exact release, the same in the npm lock
    assert Version(pinned_cli).base_version == pinned_cli
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned_cli
    # And the library's cloud assembly needs no CLI newer than that one
    assert Version(cloud_assembly_schema.Manifest.cli_version()) <= Version(pinned_cli)
    # And Node.js 22 LTS or newer runs it
    assert package["engines"]["node"] == ">=22"


def _cdk_list(assembly: Path) -> subprocess.CompletedProcess[str]:
    if not CDK_CLI.exists():
        pytest.fail("the CDK CLI is not installed: run `make install` (npm ci)")
    return subprocess.run(  # noqa: S603 (the pinned CLI of this repository, fixed arguments)
        [str(CDK_CLI), "ls", "--app", str(assembly)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPOSITORY_ROOT,
    )


@pytest.fixture(scope="module")
def assembly(platform: SynthesisedPlatform) -> Path:
    """The cloud assembly the test synthesis wrote, as `cdk deploy` would read it."""
    outdir = Path(platform.stack.node.root.outdir)
    assert (outdir / "manifest.json").exists()
    return outdir


def test_the_pinned_cdk_cli_reads_the_assembly_the_locked_library_writes(assembly):
    # When the pinned CLI lists the stacks of the synthesised assembly (no AWS account)
    listed = _cdk_list(assembly)

    # Then it reads it: `cdk deploy` would not stop at "This CDK CLI is not compatible"
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["TotesDataPlatform"]


def test_an_assembly_newer_than_the_cli_reads_is_refused_by_name(assembly, tmp_path):
    # Given the same assembly claiming a schema version no CLI reads yet (a library
    # upgraded without the CLI)
    newer = tmp_path / "assembly"
    shutil.copytree(assembly, newer)
    manifest = json.loads((newer / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = f"{Version(manifest['version']).major + 40}.0.0"
    (newer / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    # When the pinned CLI reads it
    listed = _cdk_list(newer)

    # Then it refuses, which is what the test above would report after such an upgrade
    assert listed.returncode != 0
    assert "This CDK CLI is not compatible with the CDK library" in listed.stdout + listed.stderr
