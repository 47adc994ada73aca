"""Fixtures of the workflow tier: the synthesised cloud assembly, one local AWS service for
the session, and local workflows over it.

The assembly is what ``app.py`` synthesises (the layers it needs are built first when
missing, as in the infrastructure tier). It is kept in pytest's cache folder with a
fingerprint of its inputs, so a session synthesises only when the CDK app or the
handlers changed since the last one.

Every test gets its own source and warehouse databases, so its workflow is a deployment
of its own in the shared service (the service keeps one per source and warehouse pair).
The service, and every Lambda worker it started, is stopped when the session ends.
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
from totes_local.runtime.service import stop_service
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
    cache = getattr(request.config, "cache", None)
    outdir = (
        cache.mkdir("totes-workflow") / "cdk.out"
        if cache is not None
        else tmp_path_factory.mktemp("workflow") / "cdk.out"
    )
    return synthesise(REPO_ROOT, outdir)


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The data folder of the session's local AWS service; the service stops at the end."""
    data_dir = tmp_path_factory.mktemp("local-aws")
    yield data_dir
    stop_service(data_dir)


@pytest.fixture
def local_workflow(cloud_assembly: CloudAssembly, service_dir: Path) -> WorkflowFactory:
    """A started :class:`LocalWorkflow` over the given databases, in the session's service.

    Use as ``with local_workflow(source_dsn, warehouse_dsn, **options) as workflow: ...``;
    ``assembly=`` deploys another cloud assembly (a faulty one) for the same pair.
    """

    @contextmanager
    def start(source_dsn: str, warehouse_dsn: str, **options: Any) -> Iterator[LocalWorkflow]:
        assembly = options.pop("assembly", cloud_assembly)
        with LocalWorkflow(
            assembly,
            source_dsn=source_dsn,
            warehouse_dsn=warehouse_dsn,
            data_dir=service_dir,
            **options,
        ) as workflow:
            yield workflow

    return start
