"""AWS clients shared by the handlers, created once per Lambda container.

The clients are botocore's: boto3 adds resources and S3 transfer helpers that the
handlers do not use, and importing it (with s3transfer) cost 80-90 ms of every cold
start. The catalog step, whose awswrangler needs a boto3 session, has its own
(:mod:`totes.lake.reusing_session`). Database credentials are in
:mod:`totes.credentials`: transform, which uses no database, does not import psycopg
(0.15-0.2 s of every cold start).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session


@cache
def client(service: str) -> Any:
    """A client for ``service``, reused across invocations of a warm container.

    Region, credentials and endpoint come from the environment, as for ``boto3.client``.

    Examples
    --------
    >>> from moto import mock_aws
    >>> with mock_aws():
    ...     client("s3").list_buckets()["Buckets"]
    []
    """
    return botocore.session.get_session().create_client(service)
