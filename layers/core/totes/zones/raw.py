"""The raw zone's keys: each batch of a source table, as parts and a manifest.

Layout in the ingested bucket::

    <table>/<yyyy>/<mm>/<dd>/<batch_id>-<part>.csv.gz
    _manifests/<table>/<yyyy>/<mm>/<dd>/<batch_id>.json

``batch_id`` starts with the extraction time (``HHMMSSffffff``) followed by the run
id, so a table's manifests sort in extraction order.

Examples
--------
>>> extracted_at = datetime(2024, 11, 14, 9, 5, 1, 20)
>>> batch = batch_id_for(extracted_at, "exec-1")
>>> batch
'090501000020-exec-1'
>>> part_key("staff", extracted_at, batch, 0)
'staff/2024/11/14/090501000020-exec-1-00000.csv.gz'
>>> manifest_key("staff", extracted_at, batch)
'_manifests/staff/2024/11/14/090501000020-exec-1.json'
>>> batch_id_for(extracted_at, "exec/1")
Traceback (most recent call last):
...
ValueError: run_id 'exec/1' must be 1-128 of A-Z a-z 0-9 . _ : -
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from totes.names import RAW_MANIFEST_PREFIX

_RUN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MANIFEST: Final = re.compile(
    rf"{RAW_MANIFEST_PREFIX}/(?P<table>[a-z_]+)/(?P<day>\d{{4}}/\d{{2}}/\d{{2}})/"
    r"(?P<batch_id>[^/]+)\.json"
)


def batch_id_for(extracted_at: datetime, run_id: str) -> str:
    """A batch id that sorts by extraction time within its day folder."""
    if not _RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"run_id {run_id!r} must be 1-128 of A-Z a-z 0-9 . _ : -")
    return f"{extracted_at:%H%M%S%f}-{run_id}"


def part_key(table: str, extracted_at: datetime, batch_id: str, number: int) -> str:
    """Key of part ``number`` of a batch."""
    return f"{table}/{extracted_at:%Y/%m/%d}/{batch_id}-{number:05d}.csv.gz"


def manifest_prefix(table: str) -> str:
    """The folder of a table's manifests."""
    return f"{RAW_MANIFEST_PREFIX}/{table}/"


def manifest_key(table: str, extracted_at: datetime, batch_id: str) -> str:
    """Key of a batch's manifest."""
    return f"{manifest_prefix(table)}{extracted_at:%Y/%m/%d}/{batch_id}.json"


@dataclass(frozen=True)
class ManifestKey:
    """A manifest's key, split into its parts.

    Examples
    --------
    >>> key = ManifestKey.parse("_manifests/staff/2024/11/14/090500000000-exec-1.json")
    >>> (key.table, key.batch_id, key.extracted_at)
    ('staff', '090500000000-exec-1', datetime.datetime(2024, 11, 14, 9, 5))
    >>> key.order
    '2024/11/14/090500000000-exec-1'
    >>> ManifestKey.parse("staff/2024/11/14/090500000000-exec-1-00000.csv.gz") is None
    True
    """

    key: str
    table: str
    day: str
    batch_id: str

    @classmethod
    def parse(cls, key: str) -> ManifestKey | None:
        """Split ``key``, or return None when it is not a manifest's key."""
        match = _MANIFEST.fullmatch(key)
        return cls(key=key, **match.groupdict()) if match else None

    @property
    def order(self) -> str:
        """Extraction order across tables: ``<yyyy>/<mm>/<dd>/<HHMMSSffffff>-<run id>``."""
        return f"{self.day}/{self.batch_id}"

    @property
    def extracted_at(self) -> datetime | None:
        """When the batch was extracted, if ingest named it (a key put by hand may not say)."""
        try:
            return datetime.strptime(self.order[:17], "%Y/%m/%d/%H%M%S")
        except ValueError:
            return None


def listing_start(table: str, consumed: list[str], remembered: timedelta) -> str:
    """Where to list a table's manifests from: ``remembered`` before the newest consumed.

    Examples
    --------
    >>> listing_start("staff", ["_manifests/staff/2026/12/06/000501000020-exec-1.json"],
    ...               timedelta(minutes=15))
    '_manifests/staff/2026/12/05/235001'
    >>> listing_start("staff", ["_manifests/staff/2026/12/06/999999999999-by-hand.json"],
    ...               timedelta(minutes=15))
    '_manifests/staff/2026/12/05/234500'
    >>> listing_start("staff", [], timedelta(minutes=15))
    '_manifests/staff/'
    """
    prefix = manifest_prefix(table)
    newest = ManifestKey.parse(max(consumed)) if consumed else None
    if newest is None:
        return prefix
    # A key not named by ingest: from the start of its day, to be safe.
    extracted = newest.extracted_at or datetime.strptime(newest.day, "%Y/%m/%d")
    return f"{prefix}{extracted - remembered:%Y/%m/%d/%H%M%S}"
