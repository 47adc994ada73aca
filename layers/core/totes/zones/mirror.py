"""The mirror zone's keys: each dimension's copy of the latest version of its sources' rows.

Layout in the processed bucket::

    mirror/<warehouse_table>/<source_table>/<digest>.parquet

Every object is immutable; transform's state names the current one of each source.

Examples
--------
>>> mirror_key("dim_staff", "department", "9f2c")
'mirror/dim_staff/department/9f2c.parquet'
>>> mirror_of("mirror/dim_staff/department/9f2c.parquet")
('dim_staff', 'department', '9f2c')
>>> mirror_of("mirror/dim_staff/9f2c.parquet") is None
True
"""

from __future__ import annotations

import re
from typing import Final

from totes.names import MIRROR_PREFIX

_MIRROR: Final = re.compile(
    rf"{MIRROR_PREFIX}/(?P<table>[a-z_]+)/(?P<source>[a-z_]+)/(?P<digest>[^/]+)\.parquet"
)


def mirror_key(table: str, source: str, digest: str) -> str:
    """Key of a mirror of ``source`` kept for ``table``."""
    return f"{MIRROR_PREFIX}/{table}/{source}/{digest}.parquet"


def mirror_of(key: str) -> tuple[str, str, str] | None:
    """The table, source and digest of a mirror's key, or None when ``key`` is not one."""
    match = _MIRROR.fullmatch(key)
    return (match["table"], match["source"], match["digest"]) if match else None
