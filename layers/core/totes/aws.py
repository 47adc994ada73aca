"""AWS clients shared by the handlers, created once per Lambda container.

Database credentials are in :mod:`totes.credentials`: transform, which uses no
database, does not import psycopg (0.15-0.2 s of every cold start).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3


@cache
def client(service: str) -> Any:
    """A boto3 client for ``service``, reused across invocations of a warm container."""
    return boto3.client(service)
