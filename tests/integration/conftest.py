"""Fixtures shared by the integration tests of moto as the local service uses it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.integration.pipeline_harness import Pipeline, create_resources
from totes.db import connect
from totes.warehouse.schema import init_warehouse


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
