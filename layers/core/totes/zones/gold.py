"""The gold zone's keys: the star-shaped files transform commits for each warehouse table.

Layout in the processed bucket::

    <warehouse_table>/seq=<n>/run=<run_id>/<n>-<digest>.parquet   gold files (sequence n)
    <warehouse_table>/run=<run_id>/<name>.parquet                 gold files of earlier releases

The sequence leads the key, so a table's keys sort in the order they were committed
(a commit published late by a later run included): load lists only the keys after the
last one it has loaded every predecessor of.

Examples
--------
>>> gold_key("dim_staff", 42, "2026-12-06T10:00:00.000Z-exec", "9f2c")
'dim_staff/seq=0000000042/run=2026-12-06T10:00:00.000Z-exec/0000000042-9f2c.parquet'
>>> table_prefix("dim_staff"), unsequenced_prefix("dim_staff", "exec-1")
('dim_staff/', 'dim_staff/run=exec-1/')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

_GOLD: Final = re.compile(
    r"(?P<table>[a-z_]+)/(?:seq=\d{10}/)?run=(?P<run_id>[^/]+)/(?P<stem>[^/]+)\.parquet"
)
_SEQUENCED_STEM: Final = re.compile(r"(?P<sequence>\d{10})-[0-9a-f]+")


def gold_key(table: str, sequence: int, run_id: str, digest: str) -> str:
    """Key of the gold file transform commits as the table's ``sequence``-th."""
    return f"{table}/seq={sequence:010d}/run={run_id}/{sequence:010d}-{digest}.parquet"


def unsequenced_prefix(table: str, run_id: str) -> str:
    """Folder of one run's files of a table without a sequence (files of releases before
    :func:`gold_key`, and files put by hand).
    """
    return f"{table}/run={run_id}/"


def table_prefix(table: str) -> str:
    """The folder of a table's gold files."""
    return f"{table}/"


@dataclass(frozen=True, order=True)
class GoldFileKey:
    """The key of one gold file, split into its parts.

    Examples
    --------
    >>> file = GoldFileKey.parse("dim_staff/seq=0000000007/run=exec-1/0000000007-9f2c.parquet")
    >>> (file.table, file.run_id, file.stem, file.sequence)
    ('dim_staff', 'exec-1', '0000000007-9f2c', 7)
    >>> GoldFileKey.parse("dim_staff/run=exec-1/part-0.parquet").sequence is None
    True
    >>> GoldFileKey.parse("dim_staff/run=exec-1/notes.txt") is None
    True
    """

    key: str
    table: str
    run_id: str
    stem: str
    #: When S3 received the file (from the listing); decides how long it may wait.
    written_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, key: str) -> GoldFileKey | None:
        """Split ``key``, or return None when it is not a gold file's key."""
        match = _GOLD.fullmatch(key)
        return cls(key, match["table"], match["run_id"], match["stem"]) if match else None

    @property
    def sequence(self) -> int | None:
        """Which of its table's commits the file is (transform counts them from 1), if known."""
        match = _SEQUENCED_STEM.fullmatch(self.stem)
        return int(match["sequence"]) if match else None
