"""The state zone's keys: transform's state per warehouse table, and its staged files.

Layout in the processed bucket::

    _state/transform/<warehouse_table>.json               what the table has consumed
    _staging/transform/<warehouse_table>/<name>.parquet   files waiting for the state write

Load never reads the staging folder; the bucket expires what a lost race left there.

Examples
--------
>>> state_key("dim_staff"), table_of_state("_state/transform/dim_staff.json")
('_state/transform/dim_staff.json', 'dim_staff')
>>> staging_key("dim_staff", "0000000001-9f2c")
'_staging/transform/dim_staff/0000000001-9f2c.parquet'
>>> staged_file("_staging/transform/dim_staff/0000000001-9f2c.parquet")
('dim_staff', '0000000001-9f2c')
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import NonNegativeInt

from totes.conditional_writes import VersionedDocument, get_if_present
from totes.names import TRANSFORM_STAGING_PREFIX, TRANSFORM_STATE_PREFIX

_STATE: Final = re.compile(rf"{TRANSFORM_STATE_PREFIX}/(?P<table>[a-z_]+)\.json")
_STAGED: Final = re.compile(
    rf"{TRANSFORM_STAGING_PREFIX}/(?P<table>[a-z_]+)/(?P<name>[^/]+)\.parquet"
)


def state_key(table: str) -> str:
    """Key of transform's state of ``table``."""
    return f"{TRANSFORM_STATE_PREFIX}/{table}.json"


def table_of_state(key: str) -> str | None:
    """The table a state key belongs to, or None when ``key`` is not a state key."""
    match = _STATE.fullmatch(key)
    return None if match is None else match["table"]


def staging_key(table: str, name: str) -> str:
    """Where transform stages a file of ``table`` until its state write commits it."""
    return f"{TRANSFORM_STAGING_PREFIX}/{table}/{name}.parquet"


def staged_file(key: str) -> tuple[str, str] | None:
    """The table and name of a staged file's key, or None when ``key`` is not one."""
    match = _STAGED.fullmatch(key)
    return None if match is None else (match["table"], match["name"])


class CommittedFiles(VersionedDocument):
    """What every reader of a transform state may rely on: the gold files it committed.

    Examples
    --------
    >>> CommittedFiles.model_validate_json('{"sequence": 3, "consumed": {}}').sequence
    3
    """

    #: Number of gold files committed; the next file's name starts with it + 1, so load
    #: applies a target's files in the order transform committed them.
    sequence: NonNegativeInt = 0


def committed_sequence(s3: Any, bucket: str, table: str) -> int | None:
    """How many gold files transform has committed for ``table`` (None: it keeps no state).

    Examples
    --------
    >>> committed_sequence(s3, "processed", "dim_staff") is None
    True
    >>> _ = s3.put_object(Bucket="processed", Key=state_key("dim_staff"), Body=b'{"sequence": 7}')
    >>> committed_sequence(s3, "processed", "dim_staff")
    7
    """
    found = get_if_present(s3, bucket, state_key(table))
    return None if found is None else CommittedFiles.model_validate_json(found[0]).sequence
