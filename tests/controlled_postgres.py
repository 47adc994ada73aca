"""A PostgreSQL server of a test's own, from the system's server binaries, that the test can
stop, start and whose sessions it can terminate: what a failover or a restart does.

Skips the test where the binaries are absent (``pg_config --bindir``). As root, the server
runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from tests.tls import CertificateFiles


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    completed = subprocess.run(  # noqa: S603 (the system's pg_config)
        [pg_config, "--bindir"], capture_output=True, text=True, check=False
    )
    folder = Path(completed.stdout.strip())
    return folder if (folder / "pg_ctl").exists() and (folder / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ControlledServer:
    """A stopped-or-running PostgreSQL cluster in a folder of its own, on 127.0.0.1."""

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir, self.folder = bindir, folder
        self.data = folder / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *arguments: str) -> None:
        command = [str(self.bindir / tool), *arguments]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)  # noqa: S603

    def start(self, *, max_connections: int = 40, tls: CertificateFiles | None = None) -> None:
        """Start (or restart) the server, waiting until it accepts sessions; with ``tls``,
        it offers TLS with that certificate (and sessions may still choose plain text)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            f"-c max_connections={max_connections} -c superuser_reserved_connections=0 "
            "-c fsync=off"
        )
        if tls is not None:
            certificate, key = self.folder / "server.pem", self.folder / "server.key"
            shutil.copyfile(tls.server_certificate, certificate)
            shutil.copyfile(tls.server_key, key)
            key.chmod(0o600)
            if self._as_postgres:
                owner = pwd.getpwnam("postgres")
                for path in (certificate, key):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            options += f" -c ssl=on -c ssl_cert_file={certificate} -c ssl_key_file={key}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.folder / "server.log"),
            "start",
        )

    def stop(self) -> None:
        """Stop the server at once (sessions are cut, as in a failover)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def require_password(self, password: str) -> None:
        """Make TCP logins need ``password`` (SCRAM), as a managed database's do."""
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(
                    psycopg.sql.Literal(password)
                )
            )
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
                encoding="utf-8",
            )
            admin.execute("SELECT pg_reload_conf()")

    def terminate_sessions(self, database: str) -> int:
        """End every session of ``database``, as ``pg_terminate_backend`` does in a failover."""
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return len(rows)


@contextmanager
def controlled_server() -> Iterator[ControlledServer]:
    """A running server that is stopped and removed afterwards, whatever the test did."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("the system's PostgreSQL server binaries are not installed (pg_config)")
    folder = Path(tempfile.mkdtemp(prefix="totes-controlled-pg-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    server: ControlledServer | None = None
    try:
        server = ControlledServer(bindir, folder)
        server.start()
        yield server
    finally:
        if server is not None and server.running():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
