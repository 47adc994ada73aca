"""Fixtures shared by the integration tests of moto as the local service uses it."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws


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
