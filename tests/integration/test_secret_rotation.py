"""A rotated database password: the first refused login drops the cached secret, so the next
attempt logs in with the new one, not an hour later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.controlled_postgres import ControlledServer, controlled_server
from totes.credentials import dsn_from_secrets_manager, forgetting_secrets_on_refused_login
from totes.db import connect
from totes.errors import AuthenticationFailedError

SECRET = "postgres_db_credentials"


@pytest.fixture
def server() -> Iterator[ControlledServer]:
    with controlled_server() as running:
        running.require_password("new-password")
        yield running


def _credentials(server: ControlledServer, password: str) -> str:
    return json.dumps(
        {
            "host": "127.0.0.1",
            "port": server.port,
            "user": "postgres",
            "password": password,
            "database": "postgres",
            "sslmode": "disable",  # the test's server has no TLS (test_database_tls has)
        }
    )


def _log_in(event: object, context: object) -> int:
    """What a stage does first: read the secret (cached), open a session."""
    with connect(dsn_from_secrets_manager(SECRET)) as conn:
        return int(conn.info.backend_pid)


@pytest.mark.parametrize("drops_the_cache", [True, False])
def test_after_a_rotation_the_first_refused_login_is_the_last(
    server: ControlledServer, secretsmanager: Any, drops_the_cache: bool
) -> None:
    # Given a secret that still holds the old password, read (and cached) by a login
    secretsmanager.create_secret(Name=SECRET, SecretString=_credentials(server, "old-password"))
    handler = forgetting_secrets_on_refused_login(_log_in) if drops_the_cache else _log_in
    with pytest.raises(AuthenticationFailedError):
        handler({}, None)

    # When the secret is rotated to the password the database now wants
    secretsmanager.put_secret_value(
        SecretId=SECRET, SecretString=_credentials(server, "new-password")
    )

    # Then the next attempt logs in, because the refused login dropped the cached secret
    if drops_the_cache:
        assert handler({}, None) > 0
    else:
        # (without that, the container would keep the old password for an hour)
        with pytest.raises(AuthenticationFailedError):
            handler({}, None)
