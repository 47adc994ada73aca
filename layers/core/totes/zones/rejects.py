"""The rejects zone's keys: rows a stage kept aside, each object with its reasons.

Layout in the processed bucket::

    rejects/<warehouse_table>/run=<run_id>/<digest>.parquet       rows transform could not shape
    rejects/<warehouse_table>/run=<run_id>/<stem>.load.parquet    fact rows load could not apply

A load rejects object is named after the gold file its rows came from (the run is the
file's, not the loading run's), so a retried load of that file rewrites the same object
instead of adding another.

Examples
--------
>>> transform_rejects_key("fact_payment", "exec-1", "3f2a")
'rejects/fact_payment/run=exec-1/3f2a.parquet'
>>> load_rejects_key(GoldFileKey.parse("fact_payment/run=exec-1/3f2a.parquet"))
'rejects/fact_payment/run=exec-1/3f2a.load.parquet'
>>> rejects_prefix("fact_payment"), rejects_prefix()
('rejects/fact_payment/', 'rejects/')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from totes.names import REJECTS_PREFIX
from totes.zones.gold import GoldFileKey

#: What ends the stem of a load rejects object: the rows load held back from a gold file.
_LOAD_SUFFIX: Final = ".load"
_REJECTS: Final = re.compile(
    rf"{REJECTS_PREFIX}/(?P<table>[a-z_]+)/run=(?P<run_id>[^/]+)/(?P<name>[^/]+?)"
    rf"(?P<load>{re.escape(_LOAD_SUFFIX)})?\.parquet"
)


class RejectingStage(StrEnum):
    """The stage that kept rows aside."""

    #: Could not shape them (a bad value): a new version of the source row brings them back.
    TRANSFORM = "transform"
    #: Could not apply them yet (a dimension row missing): replayed when it arrives.
    LOAD = "load"


def rejects_prefix(table: str | None = None) -> str:
    """The folder of a table's rejects, or of every table's."""
    return f"{REJECTS_PREFIX}/{table}/" if table else f"{REJECTS_PREFIX}/"


def transform_rejects_key(table: str, run_id: str, digest: str) -> str:
    """Where transform keeps the rows of one commit it could not shape."""
    return f"{rejects_prefix(table)}run={run_id}/{digest}.parquet"


def load_rejects_key(gold: GoldFileKey) -> str:
    """Where load keeps the rows of a gold file it could not apply."""
    return f"{rejects_prefix(gold.table)}run={gold.run_id}/{gold.stem}{_LOAD_SUFFIX}.parquet"


@dataclass(frozen=True)
class RejectsKey:
    """A rejects object's key, split into its parts.

    Examples
    --------
    >>> key = RejectsKey.parse("rejects/fact_payment/run=exec-1/3f2a.load.parquet")
    >>> (key.table, key.run_id, key.name, key.stage)
    ('fact_payment', 'exec-1', '3f2a', <RejectingStage.LOAD: 'load'>)
    >>> RejectsKey.parse("rejects/fact_payment/run=exec-1/3f2a.parquet").stage
    <RejectingStage.TRANSFORM: 'transform'>
    >>> RejectsKey.parse("fact_payment/run=exec-1/3f2a.parquet") is None
    True
    """

    key: str
    table: str
    run_id: str
    #: The digest (transform) or the gold file's stem (load).
    name: str
    stage: RejectingStage

    @classmethod
    def parse(cls, key: str) -> RejectsKey | None:
        """Split ``key``, or return None when it is not a rejects object's key."""
        match = _REJECTS.fullmatch(key)
        if match is None:
            return None
        stage = RejectingStage.LOAD if match["load"] else RejectingStage.TRANSFORM
        return cls(key, match["table"], match["run_id"], match["name"], stage)
