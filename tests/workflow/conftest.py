"""Fixtures of the workflow tier: the synthesised cloud assembly and local workflows over it.

The assembly is what ``app.py`` synthesises (the layers it needs are built first when
missing, as in the infrastructure tier). It is kept in pytest's cache folder with a
fingerprint of its inputs, so a session synthesises only when the CDK app or the
handlers changed since the last one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from totes_local.runtime.assembly import CloudAssembly, synthesise
from totes_local.runtime.workflow import LocalWorkflow

from .support import REPO_ROOT, WorkflowFactory

LAYERS = REPO_ROOT / "build" / "layers"


@pytest.fixture(scope="session")
def cloud_assembly(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CloudAssembly:
    """The data platform as ``app.py`` synthesises it."""
    if not ((LAYERS / "dependencies.zip").is_file() and (LAYERS / "core.zip").is_file()):
        completed = subprocess.run(  # noqa: S603 (this interpreter running a script of the repository)
            [sys.executable, str(REPO_ROOT / "scripts" / "build_layers.py")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if completed.returncode != 0:
            pytest.fail(
                "could not build the Lambda layers that synthesis needs (network access to "
                "PyPI is needed the first time):\n" + completed.stdout + completed.stderr
            )
    cache = request.config.cache
    outdir = (
        cache.mkdir("totes-workflow") / "cdk.out"
        if cache is not None
        else tmp_path_factory.mktemp("workflow") / "cdk.out"
    )
    return synthesise(REPO_ROOT, outdir)


@pytest.fixture
def local_workflow(
    cloud_assembly: CloudAssembly, tmp_path: Path, aws_credentials: None
) -> WorkflowFactory:
    """Start the synthesised state machine in moto over the given databases.

    Use as ``with local_workflow(source_dsn, warehouse_dsn) as workflow: ...``; every
    workflow of a test appends to the same log file, ``tmp_path / "pipeline.jsonl"``.
    """

    @contextmanager
    def start(source_dsn: str, warehouse_dsn: str, **options: Any) -> Iterator[LocalWorkflow]:
        with LocalWorkflow(
            cloud_assembly,
            source_dsn=source_dsn,
            warehouse_dsn=warehouse_dsn,
            log_path=tmp_path / "pipeline.jsonl",
            **options,
        ) as workflow:
            yield workflow

    return start
