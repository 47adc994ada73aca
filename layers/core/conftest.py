"""What the examples in the docstrings of ``totes`` run against (``make test`` runs them).

This file sits next to the package, not in it: the Lambda layer copies
``layers/core/totes`` alone (``scripts/build_layers.py``).

An example is given only the names it uses, among:

``conn``
    A connection to a warehouse that :func:`~totes.warehouse.schema.init_warehouse`
    made, holding a few dimension rows (:data:`EXAMPLE_DIMENSIONS`, and the day
    2024-11-14 in ``dim_date``) and no fact, inside a transaction that is rolled back
    after the example (a ``conn.transaction()`` block in it is a savepoint).
``payments``
    Three gold rows of ``fact_payment`` that reference those dimension rows: two
    versions of payment 1 and one of payment 2 (:func:`example_payments`).
``warehouse``, ``source``
    Connections to an empty warehouse and to a totesys source with its tables and
    constraints and no rows, likewise rolled back.
``dsn``
    The DSN of a database that is empty as far as the example can see: its
    connections see only a schema made for the example and dropped after it.
``s3``, ``dynamodb``, ``secretsmanager``
    Clients of moto's in-process AWS, where the buckets ``ingested`` and
    ``processed`` and the DynamoDB table ``watermarks`` exist, as the stack deploys
    them, and nothing else: every example starts from that.
``lake``, ``glue``
    A lake of Iceberg tables (Glue database ``totes_lake``, bucket ``processed``) on
    moto served over HTTP, as pyarrow's S3 file system needs, empty for each example.

PostgreSQL is the server the tests use (``TOTES_TEST_PG_DSN``, else 127.0.0.1:5432,
else an embedded one), found or started by the tests' own helpers. The server, one
database (a schema in it for each of the above) and moto's HTTP server are started
once, by the first example that needs them, and stopped or dropped when the run ends.
No example can reach a real AWS account: the credentials are fake and every client
is moto's.
"""

from __future__ import annotations

import ast
import doctest
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pyarrow as pa
import pytest
from _pytest.doctest import DoctestItem
from moto import mock_aws
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# The buckets and table of the deployed stack, as the integration tests make them.
from tests.integration.pipeline_harness import (
    LAKE_DATABASE,
    PROCESSED,
    REGION,
    create_resources,
)
from totes import db
from totes.credentials import forget_cached_secrets
from totes.db import connect, create_database, drop_database, with_database
from totes.load import warehouse_sql
from totes.source.schema import add_source_constraints, create_source_tables
from totes.warehouse.schema import init_warehouse
from totes.warehouse.star import STAR_SCHEMAS
from totes_local.runtime.postgres import PostgresServer, find_or_start_server
from totes_local.runtime.service import HttpServer, free_port

#: Fake credentials: nothing an example does can reach a real account.
_FAKE_AWS_ENVIRONMENT = {
    **dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "testing"),
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
#: Variables that would steer an example away from what it shows (a DSN replacing a secret).
_CLEARED_ENVIRONMENT = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "TOTES_SOURCE_DSN",
    "TOTES_WAREHOUSE_DSN",
    "SOURCE_SECRET_NAME",
    "WAREHOUSE_SECRET_NAME",
)


class _Session:
    """The servers, databases and mocks of a doctest run, each started when first needed."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._stack = ExitStack()
        self._server: PostgresServer | None = None
        self._database: str | None = None
        self._schemas: dict[str, str] = {}
        self._moto_url: str | None = None

    def close(self) -> None:
        self._stack.close()

    # -- PostgreSQL ---------------------------------------------------------------------------

    @property
    def server(self) -> PostgresServer:
        if self._server is None:
            self._server = find_or_start_server(
                self._base / "postgres", environment_variable="TOTES_TEST_PG_DSN"
            )
            self._stack.callback(self._server.stop)
        return self._server

    @property
    def database(self) -> str:
        """The run's database, dropped when the run ends; examples get schemas of it."""
        if self._database is None:
            name = f"totes_doctest_{uuid.uuid4().hex[:10]}"
            admin = self.server.admin_dsn
            create_database(admin, name)
            self._stack.callback(drop_database, admin, name)
            self._database = with_database(admin, name)
        return self._database

    def new_schema(self, purpose: str) -> str:
        """A new empty schema, the only one a connection to the DSN returned sees.

        A schema rather than a database: dropping a database waits for a checkpoint.
        """
        name = f"{purpose}_{uuid.uuid4().hex[:10]}"
        with connect(self.database, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return make_conninfo(self.database, options=f"-c search_path={name}")

    def drop(self, dsn: str) -> None:
        """Drop a schema :meth:`new_schema` made, closing any connection kept to it."""
        for key in [key for key in db._kept if key[0] == dsn]:
            db._kept.pop(key)[0].close()
        name = str(conninfo_to_dict(dsn)["options"]).split("=", 1)[1]
        with connect(self.database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    def shared_schema(self, purpose: str, prepare: Callable[[psycopg.Connection[Any]], Any]) -> str:
        """A schema made and prepared once per run, which examples never commit to."""
        if purpose not in self._schemas:
            dsn = self.new_schema(purpose)
            with connect(dsn) as conn:
                prepare(conn)
            self._schemas[purpose] = dsn
        return self._schemas[purpose]

    # -- AWS ----------------------------------------------------------------------------------

    @property
    def moto_url(self) -> str:
        """moto served over HTTP from this process (pyarrow's S3 file system talks HTTP)."""
        if self._moto_url is None:
            from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
                DomainDispatcherApplication,
                create_backend_app,
            )

            port = free_port()
            server = HttpServer(DomainDispatcherApplication(create_backend_app), port)
            server.start()
            self._stack.callback(server.stop)
            self._moto_url = f"http://127.0.0.1:{port}"
        return self._moto_url


def _reset_moto(url: str) -> None:
    """Forget every resource of moto (in process and served alike: they share one state)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (a local URL)  # nosec B310
        answer.read()


def _prepare_source(conn: psycopg.Connection[Any]) -> None:
    create_source_tables(conn)
    add_source_constraints(conn)


#: The dimension rows of the example warehouse (``conn``), by table, in column order.
EXAMPLE_DIMENSIONS: dict[str, list[tuple[Any, ...]]] = {
    "dim_currency": [(1, "GBP", "Pound Sterling"), (2, "USD", "US Dollar"), (3, "EUR", "Euro")],
    "dim_payment_type": [
        (1, "SALES_RECEIPT"),
        (2, "SALES_REFUND"),
        (3, "PURCHASE_PAYMENT"),
        (4, "PURCHASE_REFUND"),
    ],
    "dim_counterparty": [
        (
            1,
            "Fahey and Sons",
            "605 Haskell Trafficway",
            None,
            None,
            "East Bobbie",
            "88253-4257",
            "Austria",
            "9687 937447",
        ),
    ],
    "dim_transaction": [(1, "SALE", 1, None)],
    "dim_staff": [(1, "Jeremie", "Franey", "Purchasing", "Manchester", "jeremie@example.com")],
}
#: The day every example row falls on.
EXAMPLE_DAY = date(2024, 11, 14)


def _prepare_example_warehouse(conn: psycopg.Connection[Any]) -> None:
    init_warehouse(conn)
    warehouse_sql.extend_dim_date(conn, [EXAMPLE_DAY])
    for table, rows in EXAMPLE_DIMENSIONS.items():
        statement = sql.SQL("INSERT INTO {} VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join([sql.Placeholder()] * len(rows[0]))
        )
        conn.cursor().executemany(statement, rows)


def example_payments() -> pa.Table:
    """Gold rows of fact_payment: payment 1 made at 09:00 and paid at 09:30, payment 2 at 10:00."""
    versions = [(1, time(9), False), (1, time(9, 30), True), (2, time(10), False)]
    return pa.Table.from_pylist(
        [
            {
                "payment_id": payment_id,
                "created_date": EXAMPLE_DAY,
                "created_time": time(9) if payment_id == 1 else time(10),
                "last_updated_date": EXAMPLE_DAY,
                "last_updated_time": updated,
                "transaction_id": 1,
                "counterparty_id": 1,
                "payment_amount": Decimal("125.50"),
                "currency_id": 1,
                "payment_type_id": 1,
                "paid": paid,
                "payment_date": EXAMPLE_DAY,
            }
            for payment_id, updated, paid in versions
        ],
        schema=STAR_SCHEMAS["fact_payment"],
    )


class _Example:
    """What one example is given; everything it was given is put back when it ends."""

    def __init__(self, session: _Session, stack: ExitStack) -> None:
        self._session = session
        self._stack = stack
        self._made: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = self._stack.enter_context(_PROVIDERS[name](self))
        return self._made[name]

    @contextmanager
    def rolled_back(self, dsn: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a transaction begun already, so that the example commits nothing."""
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def example_warehouse(self) -> Iterator[psycopg.Connection[Any]]:
        dsn = self._session.shared_schema("example_warehouse", _prepare_example_warehouse)
        with self.rolled_back(dsn) as conn:
            yield conn

    @contextmanager
    def warehouse(self) -> Iterator[psycopg.Connection[Any]]:
        with self.rolled_back(self._session.shared_schema("warehouse", init_warehouse)) as conn:
            yield conn

    @contextmanager
    def payments(self) -> Iterator[pa.Table]:
        yield example_payments()

    @contextmanager
    def source(self) -> Iterator[psycopg.Connection[Any]]:
        with self.rolled_back(self._session.shared_schema("source", _prepare_source)) as conn:
            yield conn

    @contextmanager
    def dsn(self) -> Iterator[str]:
        dsn = self._session.new_schema("example")
        try:
            yield dsn
        finally:
            self._session.drop(dsn)

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Fake credentials, and none of the variables that would steer an example elsewhere."""
        with pytest.MonkeyPatch.context() as environment:
            for name in _CLEARED_ENVIRONMENT:
                environment.delenv(name, raising=False)
            for name, value in _FAKE_AWS_ENVIRONMENT.items():
                environment.setenv(name, value)
            yield

    @contextmanager
    def aws(self) -> Iterator[None]:
        """moto with the stack's resources only; secrets are read afresh, as in a new container."""
        self.get("environment")
        forget_cached_secrets()
        try:
            with mock_aws():
                create_resources(_client("s3"), _client("dynamodb"))
                yield
        finally:
            forget_cached_secrets()

    def client(self, service: str) -> AbstractContextManager[Any]:
        @contextmanager
        def made() -> Iterator[Any]:
            self.get("aws")
            yield _client(service)

        return made()

    @contextmanager
    def lake(self) -> Iterator[Any]:
        """A lake of its own: moto's state is reset before and after."""
        from totes.lake.iceberg import Lake, LakeSettings  # noqa: PLC0415

        self.get("environment")
        url = self._session.moto_url
        _reset_moto(url)
        s3, glue = _client("s3", url), self.get("glue")
        s3.create_bucket(Bucket=PROCESSED, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_versioning(Bucket=PROCESSED, VersioningConfiguration={"Status": "Enabled"})
        glue.create_database(DatabaseInput={"Name": LAKE_DATABASE})
        try:
            yield Lake(
                LakeSettings(bucket=PROCESSED, database=LAKE_DATABASE),
                glue=glue,
                s3=s3,
                file_io={"s3.endpoint": url, "s3.region": REGION},
            )
        finally:
            _reset_moto(url)

    @contextmanager
    def glue(self) -> Iterator[Any]:
        self.get("environment")
        yield _client("glue", self._session.moto_url)


def _client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint_url)


_PROVIDERS: dict[str, Callable[[_Example], AbstractContextManager[Any]]] = {
    "conn": _Example.example_warehouse,
    "payments": _Example.payments,
    "warehouse": _Example.warehouse,
    "source": _Example.source,
    "dsn": _Example.dsn,
    "environment": _Example.environment,
    "aws": _Example.aws,
    "s3": lambda example: example.client("s3"),
    "dynamodb": lambda example: example.client("dynamodb"),
    "secretsmanager": lambda example: example.client("secretsmanager"),
    "lake": _Example.lake,
    "glue": _Example.glue,
}


def _free_names(examples: list[doctest.Example]) -> set[str]:
    """The names a docstring's examples use but do not bind (skipped examples aside)."""
    used: set[str] = set()
    bound: set[str] = set()
    for example in examples:
        if example.options.get(doctest.SKIP):
            continue
        try:
            tree = ast.parse(example.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
    return used - bound


@pytest.fixture(scope="session")
def _doctest_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Session]:
    session = _Session(tmp_path_factory.mktemp("doctest"))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(autouse=True)
def _doctest_resources(
    request: pytest.FixtureRequest, doctest_namespace: dict[str, Any]
) -> Iterator[None]:
    """Give a docstring's examples the resources they name, and take them back afterwards."""
    if not isinstance(request.node, DoctestItem) or request.node.dtest is None:
        yield
        return
    named = {
        name
        for name in _free_names(request.node.dtest.examples)
        if name in _PROVIDERS and name not in ("aws", "environment")
    }
    if not named:
        yield
        return
    session: _Session = request.getfixturevalue("_doctest_session")
    with ExitStack() as stack:
        example = _Example(session, stack)
        for name in sorted(named):
            doctest_namespace[name] = example.get(name)
        try:
            yield
        finally:
            for name in named:
                doctest_namespace.pop(name, None)
