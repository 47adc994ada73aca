"""High-water marks of extraction, one per source table, with compare-and-set updates.

A watermark is the pair ``(last_updated, primary key)`` of the last row safely in
the raw zone, plus a fingerprint of the rows inside the look-back window behind
it (see :mod:`totes.ingest.extract`). It only ever moves forward, and only from
the value an execution read at its start: two overlapping executions cannot both
advance it, and a crash before the advance costs a re-read, never a skipped row.

Each advance also records the key of the manifest of the batch it follows: the newest
batch of the table. Transform reads those (one request for a target's sources) and
lists a source's manifests only when its newest batch is not one it has caught up with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Protocol

from botocore.exceptions import ClientError

from totes.errors import WatermarkConflictError
from totes.names import WATERMARK_PARTITION_KEY

#: The attribute naming the manifest of the batch an advance follows.
_MANIFEST: Final = "manifest"


@dataclass(frozen=True)
class Watermark:
    """Where extraction of one table has safely got.

    Attributes
    ----------
    last_updated, key
        The cursor: the last extracted row's ``last_updated`` and primary key.
        ``None`` for a table never extracted.
    window_rows, window_checksum
        Fingerprint of the rows whose ``last_updated`` falls in the look-back window
        ending at the cursor; a change means a late commit landed behind the cursor.
    version
        Incremented by every advance; the compare-and-set condition.
    manifest
        Key of the manifest of the batch this advance follows (``None`` before the first,
        and in an item a release before this one wrote).
    """

    last_updated: datetime | None = None
    key: int | None = None
    window_rows: int = 0
    window_checksum: int = 0
    version: int = 0
    manifest: str | None = None

    @property
    def cursor(self) -> tuple[datetime, int] | None:
        """``(last_updated, key)``, or ``None`` before the first extraction."""
        if self.last_updated is None or self.key is None:
            return None
        return (self.last_updated, self.key)

    def advanced_to(
        self, last_updated: datetime, key: int, window_rows: int, window_checksum: int
    ) -> Watermark:
        """The watermark after a batch ending at ``(last_updated, key)``, its manifest not
        named yet (see :meth:`with_manifest`)."""
        return replace(
            self,
            last_updated=last_updated,
            key=key,
            window_rows=window_rows,
            window_checksum=window_checksum,
            version=self.version + 1,
            manifest=None,
        )

    def with_manifest(self, manifest: str) -> Watermark:
        """The same watermark, naming the manifest of the batch it follows."""
        return replace(self, manifest=manifest)


class WatermarkStore(Protocol):
    """Reads watermarks and advances them atomically."""

    def read(self, table: str) -> Watermark:
        """The current watermark of ``table`` (the start value if it has none)."""
        ...

    def advance(self, table: str, expected: Watermark, new: Watermark) -> None:
        """Store ``new`` if the stored watermark is still ``expected``.

        Raises
        ------
        WatermarkConflictError
            The stored watermark changed since ``expected`` was read.
        ValueError
            ``new`` does not move the cursor forward.
        """
        ...


class NewestBatches(Protocol):
    """Names the newest batch of each source table: what transform needs of the watermarks."""

    def newest_manifests(self, tables: Sequence[str]) -> dict[str, str]:
        """The manifest each of ``tables``' last advance named (tables without one left out)."""
        ...


def _check_forward(expected: Watermark, new: Watermark) -> tuple[datetime, int]:
    cursor = new.cursor
    if cursor is None:
        raise ValueError("a watermark cannot move back to the start")
    if expected.cursor is not None and cursor < expected.cursor:
        raise ValueError(f"watermark would move backwards: {expected.cursor} -> {cursor}")
    if new.version != expected.version + 1:
        raise ValueError("a new watermark must be derived from the expected one")
    return cursor


class DynamoWatermarkStore:
    """Watermarks in a DynamoDB table keyed by :data:`WATERMARK_PARTITION_KEY`.

    Examples
    --------
    A table never extracted has the start value; each advance is a compare-and-set on
    the version read:

    >>> store = DynamoWatermarkStore(dynamodb, "watermarks")
    >>> start = store.read("sales_order")
    >>> start == Watermark()
    True
    >>> moved = start.advanced_to(datetime(2024, 11, 14, 9, 0), 42, 3, 7)
    >>> store.advance("sales_order", start, moved)
    >>> store.read("sales_order") == moved
    True
    >>> store.advance("sales_order", start, moved)
    Traceback (most recent call last):
    totes.errors.WatermarkConflictError: watermark of sales_order changed since this ...

    Each advance names the batch it follows; transform reads them for a target's sources:

    >>> again = moved.advanced_to(datetime(2024, 11, 14, 9, 5), 43, 3, 8)
    >>> store.advance("sales_order", moved, again.with_manifest("_manifests/sales_order/x.json"))
    >>> store.newest_manifests(["sales_order", "staff"])  # staff never extracted
    {'sales_order': '_manifests/sales_order/x.json'}
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    def read(self, table: str) -> Watermark:
        """The current watermark of ``table``, read with strong consistency."""
        response = self._client.get_item(
            TableName=self._table_name,
            Key={WATERMARK_PARTITION_KEY: {"S": table}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return Watermark()
        return Watermark(
            last_updated=datetime.fromisoformat(item["last_updated"]["S"]),
            key=int(item["key"]["N"]),
            window_rows=int(item["window_rows"]["N"]),
            window_checksum=int(item["window_checksum"]["N"]),
            version=int(item["version"]["N"]),
            manifest=item.get(_MANIFEST, {}).get("S"),
        )

    def newest_manifests(self, tables: Sequence[str]) -> dict[str, str]:
        """The manifest key each advance of ``tables`` last recorded, read with strong
        consistency in one request.

        Tables never advanced, advanced by a release that did not record it, or left
        unread by DynamoDB (``UnprocessedKeys``, under throttling) are left out: a caller
        lists those, so an answer never claims more than it read.
        """
        keys = [{WATERMARK_PARTITION_KEY: {"S": table}} for table in dict.fromkeys(tables)]
        response = self._client.batch_get_item(
            RequestItems={
                self._table_name: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "#table, #manifest",
                    "ExpressionAttributeNames": {
                        "#table": WATERMARK_PARTITION_KEY,
                        "#manifest": _MANIFEST,
                    },
                }
            }
        )
        return {
            item[WATERMARK_PARTITION_KEY]["S"]: item[_MANIFEST]["S"]
            for item in response.get("Responses", {}).get(self._table_name, [])
            if _MANIFEST in item
        }

    def advance(self, table: str, expected: Watermark, new: Watermark) -> None:
        """Compare-and-set: write ``new`` only if the stored version is ``expected``'s."""
        last_updated, key = _check_forward(expected, new)
        if expected.version == 0:
            condition = f"attribute_not_exists({WATERMARK_PARTITION_KEY})"
            values: dict[str, Any] = {}
        else:
            condition = "version = :expected_version"
            values = {":expected_version": {"N": str(expected.version)}}
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item={
                    WATERMARK_PARTITION_KEY: {"S": table},
                    "last_updated": {"S": last_updated.isoformat(timespec="microseconds")},
                    "key": {"N": str(key)},
                    "window_rows": {"N": str(new.window_rows)},
                    "window_checksum": {"N": str(new.window_checksum)},
                    "version": {"N": str(new.version)},
                    **({_MANIFEST: {"S": new.manifest}} if new.manifest else {}),
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise WatermarkConflictError(
                    f"watermark of {table} changed since this execution read it "
                    f"(expected version {expected.version}); another execution advanced it"
                ) from exc
            raise
