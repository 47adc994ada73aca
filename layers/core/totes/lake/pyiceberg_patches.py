"""Every change the lake makes to pyiceberg's behaviour beyond its public API.

All made here and nowhere else, and only to the pyiceberg release they were written
for (:data:`SUPPORTED_PYICEBERG`): another release is left as it is (correct, only
slower), and a unit test fails until these are checked against it or deleted.

Both keep a commit's cost independent of the snapshots a table keeps. In pyiceberg
0.12, reading a transaction's metadata replays its staged updates on the table's
metadata and deep-copies the result, snapshot list included, and an append reads it
about twenty times: with the 300 snapshots a table loaded every five minutes keeps
in a day, an append to a table of the lake took 0.44 s where it took 0.16 s with
ten (apache/iceberg-python#2673 and #3302 describe the same).

``transaction-metadata-once``
    ``Transaction.table_metadata`` is computed once per staged state and reused
    until an update is staged or the table's metadata changes (the change proposed
    upstream in apache/iceberg-python#3302). Both inputs are replaced, never
    changed in place, so their identity says whether the result still holds.
``snapshots-shared-by-copies``
    A deep copy of table metadata shares its snapshots and its snapshot and
    metadata log entries instead of copying each: they are frozen models that
    pyiceberg never changes once they are part of a table's metadata, and a table
    keeps one of each per commit of the last day. The metadata's own lists, maps and
    every other model are still copied.

Examples
--------
>>> from pyiceberg.table.snapshots import Snapshot
>>> import copy
>>> apply()
True
>>> snapshot = Snapshot(snapshot_id=1, manifest_list="s3://bucket/list.avro")
>>> copy.deepcopy([snapshot])[0] is snapshot
True
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pyiceberg.table import Transaction
    from pyiceberg.table.metadata import TableMetadata

#: The pyiceberg release (major, minor) these changes were written for.
SUPPORTED_PYICEBERG: Final = (0, 12)

_CACHE: Final = "_totes_staged_metadata"
_applied = False


def pyiceberg_version() -> tuple[int, int]:
    """The installed pyiceberg release as ``(major, minor)``.

    Examples
    --------
    >>> pyiceberg_version() >= (0, 12)
    True
    """
    major, minor, *_ = metadata.version("pyiceberg").split(".")
    return int(major), int(minor)


def apply() -> bool:
    """Make the changes, once per process; whether they are in effect.

    Returns False, changing nothing, under a pyiceberg release other than
    :data:`SUPPORTED_PYICEBERG`.
    """
    global _applied  # noqa: PLW0603 - once per process, whoever opens the lake first
    if _applied:
        return True
    if pyiceberg_version() != SUPPORTED_PYICEBERG:
        return False
    from pyiceberg.table import Transaction  # noqa: PLC0415
    from pyiceberg.table.snapshots import (  # noqa: PLC0415
        MetadataLogEntry,
        Snapshot,
        SnapshotLogEntry,
    )

    if not isinstance(Transaction.__dict__.get("table_metadata"), property):
        return False
    Transaction.table_metadata = property(_staged_metadata)  # type: ignore[method-assign,assignment]
    for frozen in (Snapshot, SnapshotLogEntry, MetadataLogEntry):
        frozen.__deepcopy__ = _shared  # type: ignore[method-assign]
    _applied = True
    return True


def _staged_metadata(transaction: Transaction) -> TableMetadata:
    """The table's metadata with the transaction's staged updates applied, computed once
    for each pair of (table metadata, staged updates)."""
    from pyiceberg.table.update import update_table_metadata  # noqa: PLC0415

    base = transaction._table.metadata
    updates = transaction._updates
    cached = transaction.__dict__.get(_CACHE)
    if cached is not None and cached[0] is base and cached[1] is updates:
        staged: TableMetadata = cached[2]
        return staged
    staged = update_table_metadata(base, updates)
    transaction.__dict__[_CACHE] = (base, updates, staged)
    return staged


def _shared(self: Any, memo: dict[int, Any] | None = None) -> Any:
    return self
