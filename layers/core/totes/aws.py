"""AWS clients shared by the handlers, created once per Lambda container.

The clients are botocore's: boto3 adds resources and S3 transfer helpers that the
handlers do not use, and its session and imports cost 60-100 ms of the first
invocation of a transform or load environment (pyiceberg's Glue catalog is given the
Glue client made here). Database
credentials are in :mod:`totes.credentials`: transform, which uses no database, does
not import psycopg (0.15-0.2 s of every cold start).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config

from totes.names import AWS_CALL_ATTEMPTS

#: Every client retries a throttled or failed call itself first: botocore's ``standard``
#: mode (exponential backoff with jitter, throttling and 5xx and connection errors), at
#: most :data:`~totes.names.AWS_CALL_ATTEMPTS` attempts a call; what outlasts them becomes
#: :class:`~totes.errors.AwsTransientError`, which the state machine retries.
RETRYING = Config(retries={"mode": "standard", "total_max_attempts": AWS_CALL_ATTEMPTS})


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
    return _session().create_client(service, config=RETRYING)


@cache
def _session() -> botocore.session.Session:
    """One session for every client: its loader reads the endpoints and models once."""
    return botocore.session.get_session()
