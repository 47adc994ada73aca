"""Fixtures shared by the integration tests of moto as the local service uses it."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.integration.pipeline_harness import (
    LAKE_DATABASE,
    PROCESSED,
    REGION,
    Pipeline,
    create_resources,
)
from totes.db import connect
from totes.lake.iceberg import Lake, LakeSettings
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.service import HttpServer, free_port


@pytest.fixture
def moto(aws_credentials: None) -> Iterator[None]:
    """moto in process, configured as the local service configures it, with a role ``local``."""
    with mock_aws(
        config={
            "stepfunctions": {"execute_state_machine": True},
            "lambda": {"use_docker": False},
        }
    ):
        boto3.client("iam", region_name="eu-west-2").create_role(
            RoleName="local", AssumeRolePolicyDocument="{}"
        )
        yield


@pytest.fixture
def warehouse_pipeline(
    s3: Any, dynamodb: Any, seeded_source_dsn: str, warehouse_dsn: str
) -> Pipeline:
    """The stages in process over moto, from a seeded source into an empty star schema."""
    create_resources(s3, dynamodb)
    with connect(warehouse_dsn) as conn:
        init_warehouse(conn)
    return Pipeline(
        s3=s3, dynamodb=dynamodb, source_dsn=seeded_source_dsn, warehouse_dsn=warehouse_dsn
    )


@pytest.fixture
def moto_server(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto served over HTTP, as the local service serves it (waitress): pyarrow's S3 file
    system (pyiceberg's) talks HTTP, which moto's in-process mock does not intercept.
    boto3 and pyiceberg reach it through ``AWS_ENDPOINT_URL``, as the functions reach
    the local service."""
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        create_backend_app,
    )

    port = free_port()
    server = HttpServer(DomainDispatcherApplication(create_backend_app), port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # The server keeps moto's state in this process: start from none, leave none.
    _reset(url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_REGION", REGION)
    try:
        yield url
    finally:
        _reset(url)
        server.stop()


def _reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (a local URL)
        answer.read()


@pytest.fixture
def lake(moto_server: str, seeded_source_dsn: str, warehouse_dsn: str) -> Pipeline:
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_resources(s3, dynamodb)
    s3.put_bucket_versioning(Bucket=PROCESSED, VersioningConfiguration={"Status": "Enabled"})
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": LAKE_DATABASE})
    with connect(warehouse_dsn) as conn:
        init_warehouse(conn)
    return Pipeline(
        s3,
        dynamodb,
        seeded_source_dsn,
        warehouse_dsn,
        lake=Lake(LakeSettings(bucket=PROCESSED, database=LAKE_DATABASE), glue=glue, s3=s3),
    )
