"""Database credentials from AWS Secrets Manager, cached per Lambda container.

A secret is JSON with ``host``, ``port``, ``user`` (or ``username``), ``password``
and ``database`` (or ``dbname``), the shape of the secrets the client already
keeps. For local runs and tests, an explicit DSN replaces the secret.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError
from psycopg.conninfo import make_conninfo

from totes.aws import RETRYING
from totes.errors import AuthenticationFailedError, SecretFormatError, SecretNotFoundError
from totes.transient import aws_transient_fault

#: Seconds a fetched secret is reused. A refused login drops it at once
#: (:func:`forgetting_secrets_on_refused_login`), so a rotation does not wait for this; at
#: five-minute ticks, a shorter cache would read the secret again on every execution
#: (Secrets Manager bills each read: ADR 20).
SECRET_CACHE_SECONDS = 3600

#: Amazon RDS's root authorities for every Region (``make rds-ca-bundle`` refreshes it; the
#: SHA-256 next to it records what was fetched): what a secret without ``sslmode`` is
#: verified against.
RDS_CA_BUNDLE = Path(__file__).with_name("rds-global-bundle.pem")

_ALIASES = {"user": ("user", "username"), "database": ("database", "dbname")}
_REQUIRED = ("host", "user", "password", "database")
#: The TLS modes libpq knows, weakest first.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def dsn_from_secret(secret: dict[str, Any], *, name: str = "secret") -> str:
    """Build a libpq DSN from a credentials secret.

    The connection is verified TLS unless the secret says otherwise: ``sslmode=verify-full``
    against Amazon RDS's authorities (:data:`RDS_CA_BUNDLE`). A secret may carry
    ``sslrootcert_pem``, the certificate authority of a server outside RDS (PEM text, written
    to a file of this container), and ``sslmode`` (one of :data:`SSL_MODES`): a weaker mode
    is the explicit setting that :func:`totes.db.unverified_tls` names in every run.

    Raises
    ------
    SecretFormatError
        A required field is missing or empty, or ``sslmode`` is not a libpq mode.

    Examples
    --------
    >>> dsn = dsn_from_secret({"host": "db", "port": 5432, "user": "etl", "password": "pw",
    ...                        "database": "totesys"})
    >>> dsn.split(" sslrootcert=")[0]
    'host=db port=5432 user=etl password=pw dbname=totesys connect_timeout=10'
    >>> dsn.endswith("/rds-global-bundle.pem sslmode=verify-full")
    True
    >>> dsn_from_secret({"host": "db", "user": "etl", "password": "pw", "database": "d",
    ...                  "sslmode": "require"}).endswith("sslmode=require")
    True
    """
    values: dict[str, Any] = {}
    for field_name in _REQUIRED:
        for alias in _ALIASES.get(field_name, (field_name,)):
            if secret.get(alias) not in (None, ""):
                values[field_name] = secret[alias]
                break
    missing = [field_name for field_name in _REQUIRED if field_name not in values]
    if missing:
        raise SecretFormatError(f"{name} lacks {', '.join(missing)}")
    tls = _tls_settings(secret, name)
    return make_conninfo(
        host=str(values["host"]),
        port=str(secret.get("port") or 5432),
        user=str(values["user"]),
        password=str(values["password"]),
        dbname=str(values["database"]),
        connect_timeout="10",
        **tls,
    )


def _tls_settings(secret: dict[str, Any], name: str) -> dict[str, str]:
    mode, pem = secret.get("sslmode") or "verify-full", secret.get("sslrootcert_pem")
    if mode not in SSL_MODES:
        raise SecretFormatError(
            f"{name} has sslmode {mode!r}: one of {', '.join(SSL_MODES)} is needed"
        )
    verifies = SSL_MODES.index(mode) >= SSL_MODES.index("verify-ca")
    if not pem:
        # Without an authority of its own, a verifying mode trusts Amazon RDS's; a weaker
        # mode is used as the secret states it (and every run names it).
        return (
            {"sslrootcert": str(RDS_CA_BUNDLE), "sslmode": mode} if verifies else {"sslmode": mode}
        )
    text = str(pem)
    if not text.isascii() or "-----BEGIN CERTIFICATE-----" not in text:
        raise SecretFormatError(f"{name}'s sslrootcert_pem is not a PEM certificate")
    if not verifies:
        raise SecretFormatError(
            f"{name} gives an authority to verify with but sslmode {mode!r}, which "
            "does not verify: verify-ca or verify-full"
        )
    path = _private_folder() / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        path.write_text(text, encoding="ascii")
    return {"sslrootcert": str(path), "sslmode": mode}


@cache
def _private_folder() -> Path:
    """A folder only this process writes (0700), for the CA files that secrets carry."""
    return Path(tempfile.mkdtemp(prefix="totes-ca-"))


@cache
def _secrets() -> parameters.SecretsProvider:
    """Powertools' secrets provider, cached per container, retrying as every client does."""
    return parameters.SecretsProvider(boto_config=RETRYING)


Handler = TypeVar("Handler", bound=Callable[..., object])


def forgetting_secrets_on_refused_login(handler: Handler) -> Handler:
    """Drop the cached secrets when a database refuses the login, so that the next attempt
    reads the secret again: after a rotation, the first failure is the last.

    Examples
    --------
    >>> @forgetting_secrets_on_refused_login
    ... def handler(event, context):
    ...     raise AuthenticationFailedError("refused")
    >>> handler({}, None)
    Traceback (most recent call last):
    totes.errors.AuthenticationFailedError: refused
    """

    @functools.wraps(handler)
    def handle(*args: object, **kwargs: object) -> object:
        try:
            return handler(*args, **kwargs)
        except AuthenticationFailedError:
            forget_cached_secrets()
            raise

    return handle  # type: ignore[return-value]


def forget_cached_secrets() -> None:
    """Drop every cached secret: the next read fetches it again (a new container does)."""
    if _secrets.cache_info().currsize:  # nothing to forget before the first read
        _secrets().clear_cache()  # type: ignore[no-untyped-call]  # Powertools leaves it untyped


def dsn_from_secrets_manager(secret_name: str) -> str:
    """Fetch a credentials secret (cached per container) and turn it into a DSN.

    Raises
    ------
    SecretNotFoundError
        No secret of that name exists (or it may not be read).
    SecretFormatError
        The secret is not a JSON object with the needed fields.
    AwsTransientError
        Secrets Manager throttled or failed the call on every attempt.
    """
    try:
        raw = _secrets().get(secret_name, max_age=SECRET_CACHE_SECONDS)
    except GetParameterError as exc:
        # Powertools wraps the SDK error without `from`, so it is the implicit context.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ClientError) and cause.response["Error"]["Code"] in (
            "ResourceNotFoundException",
            "AccessDeniedException",
        ):
            raise SecretNotFoundError(
                f"secret {secret_name!r} does not exist or may not be read"
            ) from exc
        transient = aws_transient_fault(cause) if isinstance(cause, Exception) else None
        if transient is not None:
            raise transient from exc
        raise
    try:
        secret = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SecretFormatError(f"secret {secret_name!r} is not JSON") from exc
    if not isinstance(secret, dict):
        raise SecretFormatError(f"secret {secret_name!r} is not a JSON object")
    return dsn_from_secret(secret, name=f"secret {secret_name!r}")


def database_dsn(override_variable: str, secret_variable: str, default_secret: str) -> str:
    """The DSN from ``override_variable`` if set (local runs), else from Secrets Manager.

    The secret is the one ``secret_variable`` names, else ``default_secret``.

    Examples
    --------
    Neither ``TOTES_SOURCE_DSN`` nor ``SOURCE_SECRET_NAME`` is set here: the source's
    credentials are read from the secret of the default name.

    >>> from totes.names import SOURCE_SECRET_NAME
    >>> _ = secretsmanager.create_secret(Name=SOURCE_SECRET_NAME, SecretString=json.dumps(
    ...     {"host": "db", "user": "etl", "password": "pw", "database": "totesys",
    ...      "sslmode": "require"}))
    >>> database_dsn("TOTES_SOURCE_DSN", "SOURCE_SECRET_NAME", SOURCE_SECRET_NAME)
    'host=db port=5432 user=etl password=pw dbname=totesys connect_timeout=10 sslmode=require'
    """
    override = os.environ.get(override_variable)
    if override:
        return override
    return dsn_from_secrets_manager(os.environ.get(secret_variable) or default_secret)
