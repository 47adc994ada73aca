"""AWS clients and credentials shared by the handlers, created once per Lambda container."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3

from totes.credentials import dsn_from_secrets_manager


@cache
def client(service: str) -> Any:
    """A boto3 client for ``service``, reused across invocations of a warm container."""
    return boto3.client(service)


def database_dsn(override_variable: str, secret_variable: str, default_secret: str) -> str:
    """The DSN from ``override_variable`` if set (local runs), else from Secrets Manager.

    Examples
    --------
    >>> database_dsn("TOTES_SOURCE_DSN", "SOURCE_SECRET_NAME", SOURCE_SECRET_NAME)  # doctest: +SKIP
    'host=... dbname=totesys ...'
    """
    override = os.environ.get(override_variable)
    if override:
        return override
    return dsn_from_secrets_manager(os.environ.get(secret_variable) or default_secret)
