"""Nothing sensitive leaves: a password given in a DSN is used, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from totes_local.cli import main
from totes_local.runtime.assembly import CloudAssembly

pytestmark = pytest.mark.slow

PASSWORD = "pw-7Hq2-never-shown"


def test_totes_run_never_prints_the_password_of_a_dsn(
    seeded_source_dsn: str,
    warehouse_dsn: str,
    cloud_assembly: CloudAssembly,
    service_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given DSNs that carry a password (the test server trusts the login, so it is unused)
    source, warehouse = (f"{dsn} password={PASSWORD}" for dsn in (seeded_source_dsn, warehouse_dsn))

    # When the product runs, both as a person reads it and as JSON
    for output in ((), ("--json",)):
        status = main(
            [
                "run",
                *("--source-dsn", source, "--warehouse-dsn", warehouse),
                *("--data-dir", str(service_dir), "--cdk-out", str(cloud_assembly.directory)),
                *output,
            ]
        )
        printed = capsys.readouterr()

        # Then it works, and the password appears nowhere in what it printed
        assert status == 0, printed.err
        assert PASSWORD not in printed.out + printed.err
    # And the way to open the warehouse is given without it
    assert main(["status", "--data-dir", str(service_dir)]) == 0
    assert PASSWORD not in capsys.readouterr().out
