"""Benchmark `totes seed`: wall time, rows per second and peak memory, per scale.

Runs the real command under ``/usr/bin/time -v`` against the local PostgreSQL
(or ``TOTES_BENCH_PG_DSN``, or an embedded server) and prints one line per scale.
Numbers, not pass/fail: compare them with the figures in the README.

    python bench/seed.py            # scales 1 and 100
    python bench/seed.py 0.1 1 10   # chosen scales
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from totes.db import create_database, drop_database, with_database
from totes_local.runtime.postgres import find_or_start_server
from totes_local.source.generator import Volumes

TIME = "/usr/bin/time"
DATABASE = "totes_bench_seed"


def _measure(dsn: str, scale: float) -> tuple[float, float]:
    totes = Path(sys.executable).with_name("totes")
    completed = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [TIME, "-v", str(totes), "seed", "--dsn", dsn, "--scale", str(scale), "--replace"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = re.search(
        r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", completed.stderr
    )
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    if not elapsed or not peak:
        raise RuntimeError(f"unexpected output from {TIME}:\n{completed.stderr}")
    hours, minutes, seconds = elapsed.groups()
    wall = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    return wall, int(peak.group(1)) / 1024


def main(scales: list[float]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        try:
            drop_database(server.admin_dsn, DATABASE)
            create_database(server.admin_dsn, DATABASE)
            dsn = with_database(server.admin_dsn, DATABASE)
            print(f"{'scale':>7} {'rows':>12} {'seconds':>9} {'rows/s':>10} {'peak RSS MB':>12}")
            for scale in scales:
                rows = sum(Volumes.at_scale(scale).as_dict().values())
                wall, peak_mb = _measure(dsn, scale)
                print(
                    f"{scale:>7g} {rows:>12,} {wall:>9.1f} {rows / wall:>10,.0f} {peak_mb:>12.0f}"
                )
            drop_database(server.admin_dsn, DATABASE)
        finally:
            server.stop()


if __name__ == "__main__":
    main([float(arg) for arg in sys.argv[1:]] or [1.0, 100.0])
