"""The mirror zone's keys: each dimension's copy of the latest version of its sources' rows.

Layout in the processed bucket::

    mirror/<warehouse_table>/<source_table>/<digest>.parquet

Every object is immutable; transform's state names the current one of each source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from totes.names import MIRROR_PREFIX

_MIRROR: Final = re.compile(
    rf"{MIRROR_PREFIX}/(?P<table>[a-z_]+)/(?P<source>[a-z_]+)/(?P<digest>[^/]+)\.parquet"
)


def mirror_key(table: str, source: str, digest: str) -> str:
    """Key of a mirror of ``source`` kept for ``table``.

    Examples
    --------
    >>> mirror_key("dim_staff", "department", "9f2c")
    'mirror/dim_staff/department/9f2c.parquet'
    """
    return f"{MIRROR_PREFIX}/{table}/{source}/{digest}.parquet"


@dataclass(frozen=True)
class MirrorKey:
    """A mirror's key, split into its parts.

    Examples
    --------
    >>> MirrorKey.parse("mirror/dim_staff/department/9f2c.parquet")
    MirrorKey(table='dim_staff', source='department', digest='9f2c')
    >>> MirrorKey.parse("mirror/dim_staff/9f2c.parquet") is None
    True
    """

    table: str
    source: str
    digest: str

    @classmethod
    def parse(cls, key: str) -> MirrorKey | None:
        """Split ``key``, or return None when it is not a mirror's key."""
        match = _MIRROR.fullmatch(key)
        return None if match is None else cls(match["table"], match["source"], match["digest"])
