"""A boto3 session for awswrangler that makes each client once (the catalog step's)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from totes.aws import RETRYING


class ReusingSession(boto3.Session):  # type: ignore[misc]  # boto3 ships no types
    """A boto3 session that makes each client once and hands it out again.

    awswrangler asks the session it is given for a new client on every call (about
    14 ms each: the catalog step of a backfill made 38); through this session it
    gets the client made for the same arguments before. Clients are thread-safe;
    a :class:`botocore.config.Config` argument counts by its options. Every client
    retries as the handlers' do (:data:`totes.aws.RETRYING`), whatever config
    awswrangler passes.

    Examples
    --------
    >>> session = ReusingSession(region_name="eu-west-2")
    >>> session.client("s3") is session.client("s3")
    True
    >>> session.client("s3") is session.client("s3", endpoint_url="http://127.0.0.1:9")
    False
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        """The client ``boto3.Session.client`` makes for these arguments, made once."""
        kwargs["config"] = (kwargs.get("config") or Config()).merge(RETRYING)
        key = repr((args, sorted((name, _comparable(value)) for name, value in kwargs.items())))
        with self._clients_lock:
            if key not in self._clients:
                made = super().client(*args, **kwargs)
                # botocore builds a client's exception classes on first use, unlocked: two
                # threads could each build their own, and one thread's error would then
                # escape another's ``except client.exceptions.X`` (awswrangler catches
                # EntityNotFoundException that way). Built here, once, before sharing.
                made.exceptions  # noqa: B018
                self._clients[key] = made
            return self._clients[key]


def _comparable(value: Any) -> Any:
    """A botocore ``Config`` by its options (it has no equality of its own)."""
    return sorted(vars(value).items()) if isinstance(value, Config) else value
