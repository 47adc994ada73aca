"""Fixtures of the workflow tier: the synthesised cloud assembly, one local AWS service for
the session (for each pytest-xdist worker: each has its own), and local workflows over it.

The assembly is what ``app.py`` synthesises (the layers it needs are built first when
missing, as in the infrastructure tier). It is kept in pytest's cache folder with a
fingerprint of its inputs, so a session synthesises only when the CDK app or the
handlers changed since the last one.

The tests of a session share one source and one warehouse database, recreated for each
test, so their workflows are one deployment in the shared service (which keeps one per
source and warehouse pair), and its Lambda workers stay warm from test to test, as a
deployed stack's do between runs. Each test starts with none of that deployment's state, as
``totes run --fresh`` would. The service, and every Lambda worker it started, is
stopped when the session ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from totes.db import connect, create_database, drop_database, with_database
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.assembly import CloudAssembly, synthesise
from totes_local.runtime.call_trail import CALL_TRAIL_VARIABLE
from totes_local.runtime.deployment import LocalDeployment
from totes_local.runtime.platform import LOCAL_REGION, LocalPlatform
from totes_local.runtime.postgres import PostgresServer
from totes_local.runtime.service import (
    LOCAL_CREDENTIALS,
    find_service,
    handler_log_path,
    stop_service,
)
from totes_local.runtime.workflow import LocalWorkflow, pair_id

from .support import REPO_ROOT, WorkflowFactory, mark_log_start

LAYERS = REPO_ROOT / "build" / "layers"
#: The pytest-xdist worker running this session (``gw0``, ``gw1``; ``main`` without xdist):
#: each has its own databases, assembly folder and local service.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


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
        cache.mkdir(f"totes-workflow-{_WORKER}") / "cdk.out"
        if cache is not None
        else tmp_path_factory.mktemp("workflow") / "cdk.out"
    )
    return synthesise(REPO_ROOT, outdir)


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The data folder of the session's local AWS service; the service stops at the end.

    The service records every call the functions make (``call-trail.jsonl`` there), which
    ``test_least_privilege`` evaluates against their roles.
    """
    data_dir = tmp_path_factory.mktemp("local-aws")
    os.environ[CALL_TRAIL_VARIABLE] = str(data_dir / CALL_TRAIL_FILE)
    yield data_dir
    stop_service(data_dir)
    os.environ.pop(CALL_TRAIL_VARIABLE, None)


#: Where the session's service records the functions' calls, in its data folder.
CALL_TRAIL_FILE = "call-trail.jsonl"

#: The databases of the tier's one source and warehouse pair.
SOURCE_DATABASE = f"totes_workflow_{_WORKER}_source"
WAREHOUSE_DATABASE = f"totes_workflow_{_WORKER}_warehouse"


@pytest.fixture
def seeded_source_dsn(pg_server: PostgresServer, small_source_template: str) -> Iterator[str]:
    """The pair's source, seeded at scale 0.01 with seed 42 (a copy of the session's seed)."""
    drop_database(pg_server.admin_dsn, SOURCE_DATABASE)
    create_database(pg_server.admin_dsn, SOURCE_DATABASE, template=small_source_template)
    yield with_database(pg_server.admin_dsn, SOURCE_DATABASE)
    drop_database(pg_server.admin_dsn, SOURCE_DATABASE)


@pytest.fixture
def warehouse_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """The pair's warehouse: the star schema, no rows."""
    drop_database(pg_server.admin_dsn, WAREHOUSE_DATABASE)
    create_database(pg_server.admin_dsn, WAREHOUSE_DATABASE)
    dsn = with_database(pg_server.admin_dsn, WAREHOUSE_DATABASE)
    with connect(dsn) as conn:
        init_warehouse(conn)
    yield dsn
    drop_database(pg_server.admin_dsn, WAREHOUSE_DATABASE)


@pytest.fixture(autouse=True)
def no_local_state_of_earlier_tests(
    cloud_assembly: CloudAssembly, service_dir: Path, pg_server: PostgresServer
) -> None:
    """Discard what an earlier test left in the pair's deployment (``--fresh`` would too).

    Its functions are deleted with the rest; recreated with the same code and settings,
    they find their warm workers again.
    """
    mark_log_start(handler_log_path(service_dir))
    service = find_service(service_dir)
    if service is None:
        return
    source, warehouse = (
        with_database(pg_server.admin_dsn, name) for name in (SOURCE_DATABASE, WAREHOUSE_DATABASE)
    )
    platform = LocalPlatform.from_assembly(
        cloud_assembly,
        region=LOCAL_REGION,
        instance_name=f"{cloud_assembly.stack_name}-{pair_id(source, warehouse)}",
    )

    def client(name: str) -> Any:
        return boto3.client(
            name,
            region_name=LOCAL_REGION,
            endpoint_url=service.endpoint,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    LocalDeployment(platform, client, {}).destroy()


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
