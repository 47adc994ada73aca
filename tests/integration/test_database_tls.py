"""TLS to the databases, against a server the test starts with a certificate authority of its
own: a verified connection works, and each way verification can fail is refused with
DatabaseTlsError saying which, never a generic login error and never plain text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlled_postgres import ControlledServer, controlled_server
from tests.tls import CertificateFiles, make_certificates
from totes.credentials import dsn_from_secret
from totes.db import connect, unverified_tls
from totes.errors import DatabaseTlsError
from totes.names import TRANSIENT_ERRORS


@pytest.fixture
def certificates(tmp_path: Path) -> CertificateFiles:
    """A certificate for ``localhost`` only, signed by the test's own authority."""
    return make_certificates(tmp_path / "ca", ("localhost",), loopback_address=False)


@pytest.fixture
def server(certificates: CertificateFiles) -> Iterator[ControlledServer]:
    with controlled_server() as running:
        running.stop()
        running.start(tls=certificates)
        yield running


def _dsn(server: ControlledServer, host: str, authority: Path, mode: str = "verify-full") -> str:
    return (
        f"host={host} port={server.port} user=postgres dbname=postgres "
        f"sslmode={mode} sslrootcert={authority}"
    )


def test_a_secret_with_its_authority_connects_verified_over_tls(
    server: ControlledServer, certificates: CertificateFiles
) -> None:
    # Given a secret that carries the authority that signed the server's certificate
    secret = json.loads(
        json.dumps(
            {
                "host": "localhost",
                "port": server.port,
                "user": "postgres",
                "password": "unused",
                "database": "postgres",
                "sslrootcert_pem": certificates.authority.read_text(encoding="ascii"),
            }
        )
    )

    # When a stage connects with the DSN built from it
    with connect(dsn_from_secret(secret)) as conn:
        (encrypted,) = conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone() or (False,)

    # Then the session is encrypted, its certificate verified for the host name
    assert encrypted is True
    assert "sslmode=verify-full" in dsn_from_secret(secret)


def _login(server: ControlledServer, **tls: str) -> dict[str, object]:
    """A credentials secret for the test's server, with the TLS settings given."""
    return {
        "host": "localhost",
        "port": server.port,
        "user": "postgres",
        "password": "unused",
        "database": "postgres",
        **tls,
    }


def test_a_secret_without_tls_settings_trusts_amazon_rds_alone(
    server: ControlledServer,
) -> None:
    # Given a secret with a login and nothing about TLS, for a server whose certificate an
    # authority other than Amazon RDS signed
    secret = _login(server)

    # When a stage connects, then it is refused: verify-full against the RDS bundle is the
    # default, never an unverified session
    with pytest.raises(DatabaseTlsError, match="not signed by a trusted authority"):
        connect(dsn_from_secret(secret))


def test_a_secret_that_weakens_verification_still_encrypts_and_is_named(
    server: ControlledServer,
) -> None:
    # Given a secret that sets sslmode=require explicitly
    secret = _login(server, sslmode="require")

    # When a stage connects with it
    dsn = dsn_from_secret(secret)
    with connect(dsn) as conn:
        (encrypted,) = conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone() or (False,)

    # Then the session is encrypted, and what it does not verify is said
    assert encrypted is True
    assert unverified_tls(dsn) == (
        "sslmode=require: the connection to localhost is encrypted, but the server's "
        "certificate is not verified"
    )


def test_a_certificate_for_another_host_name_is_refused_saying_so(
    server: ControlledServer, certificates: CertificateFiles
) -> None:
    # Given a connection to 127.0.0.1, which the certificate (for localhost) does not name
    with pytest.raises(DatabaseTlsError, match=r"not for the host name '127\.0\.0\.1'"):
        connect(_dsn(server, "127.0.0.1", certificates.authority))


def test_a_certificate_of_an_unknown_authority_is_refused_saying_so(
    server: ControlledServer, tmp_path: Path
) -> None:
    # Given a client that trusts another authority than the one that signed the server's
    stranger = make_certificates(tmp_path / "stranger", ("localhost",))
    with pytest.raises(DatabaseTlsError, match="not signed by a trusted authority"):
        connect(_dsn(server, "localhost", stranger.authority))


def test_a_server_without_tls_is_refused_not_used_in_plain_text(
    server: ControlledServer, certificates: CertificateFiles
) -> None:
    # Given the server restarted without TLS, and a client that requires it
    server.stop()
    server.start()

    # When it connects, then it is refused, and the error is not one a retry would help
    with pytest.raises(DatabaseTlsError, match="the server offers no TLS") as raised:
        connect(_dsn(server, "localhost", certificates.authority))
    assert type(raised.value).__name__ not in TRANSIENT_ERRORS


def test_require_with_an_authority_verifies_it_as_libpq_does(
    server: ControlledServer, tmp_path: Path
) -> None:
    # Given sslmode=require and an authority that did not sign the server's certificate
    # (libpq then verifies the authority, not the host name)
    stranger = make_certificates(tmp_path / "stranger", ("localhost",))

    # When a stage connects, then the refusal is named, not taken for a bad password
    with pytest.raises(DatabaseTlsError, match="not signed by a trusted authority"):
        connect(_dsn(server, "127.0.0.1", stranger.authority, mode="require"))
