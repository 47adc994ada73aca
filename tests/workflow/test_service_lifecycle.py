"""The local AWS service can never be lost: `totes run` killed hard while it starts the
service leaves at most one service of the data folder, which `totes status` reports and
`totes stop` stops, and the next run uses it rather than starting another beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from totes_local.runtime.assembly import CloudAssembly

from .support import REPO_ROOT

pytestmark = pytest.mark.slow

#: Seconds after its start at which each `totes run` is killed: spread over the CLI's own
#: start, the service's start and its first execution.
KILL_AFTER_S = (0.8, 1.3, 1.8, 2.4, 3.2, 4.5)


def _services(data_dir: Path) -> list[int]:
    """Processes that are a local AWS service of ``data_dir``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "totes_local.runtime.service" in words and str(data_dir) in words:
            found.append(int(cmdline.parent.name))
    return found


def _totes(*arguments: str, data_dir: Path) -> str:
    completed = subprocess.run(  # noqa: S603 (this interpreter running the project's CLI)
        [sys.executable, "-m", "totes_local.cli", *arguments, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    return completed.stdout


def test_a_run_killed_while_it_starts_the_service_never_leaves_two_or_an_unreported_one(
    seeded_source_dsn: str, warehouse_dsn: str, cloud_assembly: CloudAssembly, tmp_path: Path
) -> None:
    data_dir = (tmp_path / "data").resolve()
    run = [
        sys.executable, "-m", "totes_local.cli", "run", "--runs", "1",
        "--source-dsn", seeded_source_dsn, "--warehouse-dsn", warehouse_dsn,
        "--data-dir", str(data_dir), "--cdk-out", str(cloud_assembly.directory),
    ]  # fmt: skip
    try:
        for delay in KILL_AFTER_S:
            # Given a `totes run`, killed hard (its whole process group) after `delay`,
            # and the next one started at once, as a person would
            started = subprocess.Popen(  # noqa: S603 (this interpreter running the project's CLI)
                run,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
            time.sleep(delay)
            os.killpg(started.pid, signal.SIGKILL)
            started.wait(timeout=10)

            # Then at no point do two services of the data folder run
            assert len(_services(data_dir)) <= 1, delay

        # When things settle, then one service runs or none, and status reports it either way
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = _totes("status", data_dir=data_dir)
            if "running at" in status or "not running" in status:
                break
            time.sleep(0.5)
        running = _services(data_dir)
        assert len(running) <= 1
        if running:
            assert f"(pid {running[0]}," in status, status
        else:
            assert "local AWS service: not running" in status, status
    finally:
        stopped = _totes("stop", data_dir=data_dir)

    # And `totes stop` stops whatever runs, leaving no service of the data folder behind
    assert _services(data_dir) == []
    if running:
        assert f"Stopped the local AWS service of {data_dir} (pid {running[0]}" in stopped
