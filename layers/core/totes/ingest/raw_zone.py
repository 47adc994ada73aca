"""The raw zone: immutable gzip CSV parts plus one JSON manifest per batch.

Keys are :mod:`totes.zones.raw`'s: they sort by extraction time, and a retried run
never collides with its first attempt. Objects are written with ``If-None-Match: *``:
the zone is never overwritten. The manifest is written last; a batch without a manifest
is an incomplete attempt that nothing downstream reads.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    ValidationError,
    field_serializer,
    field_validator,
)

from totes.conditional_writes import put_if
from totes.errors import ManifestFormatError, RawObjectExistsError
from totes.ingest.columns import SourceColumn
from totes.zones import raw as raw_keys

#: A part is closed once this much CSV went into it; bounds memory whatever the table size.
DEFAULT_PART_BYTES = 64 * 1024 * 1024
_GZIP_LEVEL = 1  # 3x faster than level 6 for 30 % more bytes: ingest is CPU-bound
#: The manifest format this pipeline writes and reads.
MANIFEST_FORMAT: Final = "totes-raw-batch/1"


@dataclass(frozen=True)
class RawPart:
    """One written part."""

    key: str
    rows: int
    bytes: int
    sha256: str


class CsvDialect(BaseModel):
    """How the parts' CSV is written: what a reader with standard tools needs to know."""

    header: bool = True
    null: str = "empty unquoted field"
    encoding: str = "UTF-8"


class Manifest(BaseModel):
    """Everything a reader needs to trust and decode a batch, stored next to its parts.

    Examples
    --------
    >>> manifest = Manifest(table="staff", run_id="r", batch_id="b",
    ...     extracted_at="2025-01-01T00:00:00+00:00", rows=0, cursor_from=None,
    ...     cursor_to=None, rereads_window=False,
    ...     columns=[SourceColumn("staff_id", "integer")])
    >>> import json
    >>> document = json.loads(manifest.to_json())
    >>> document["format"], document["columns"][0]["type"], document["csv"]["header"]
    ('totes-raw-batch/1', 'integer', True)
    >>> Manifest.from_json(manifest.to_json()) == manifest
    True
    >>> Manifest.from_json(b'{"format": "totes-raw-batch/1"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.ManifestFormatError: not a totes-raw-batch/1 manifest: table: Field required; ...
    """

    format: Literal["totes-raw-batch/1"] = MANIFEST_FORMAT
    table: str
    run_id: str
    batch_id: str
    extracted_at: str
    columns: list[SourceColumn]
    unexpected_columns: list[str] = Field(default_factory=list)
    rows: NonNegativeInt
    cursor_from: list[str | int] | None
    cursor_to: list[str | int] | None
    rereads_window: bool
    csv: CsvDialect = Field(default_factory=CsvDialect)
    parts: list[RawPart] = Field(default_factory=list)

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_as_stored(cls, columns: Any) -> Any:
        return [SourceColumn.from_dict(c) if isinstance(c, dict) else c for c in columns]

    @field_serializer("columns")
    def _columns_to_store(self, columns: list[SourceColumn]) -> list[dict[str, Any]]:
        return [column.as_dict() for column in columns]

    def to_json(self) -> bytes:
        """The manifest as UTF-8 JSON."""
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Manifest:
        """Parse a manifest written by :meth:`to_json`.

        Raises
        ------
        ManifestFormatError
            The body is not a manifest of this format (which field, and why).
        """
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'document'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ManifestFormatError(f"not a {MANIFEST_FORMAT} manifest: {problems}") from exc


def _put_new(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    if not put_if(s3, bucket, key, body, ContentType=content_type, ChecksumAlgorithm="SHA256"):
        raise RawObjectExistsError(
            f"s3://{bucket}/{key} already exists; the raw zone is never overwritten"
        )


class RawZoneWriter:
    """Writes one batch of one table into the ingested bucket.

    Examples
    --------
    >>> from datetime import UTC
    >>> writer = RawZoneWriter(s3, "ingested", "staff", "exec-1",
    ...                        datetime(2024, 11, 14, 9, 5, tzinfo=UTC))
    >>> lines = [b'"staff_id"\\n', b'"1"\\n', b'"2"\\n']
    >>> [(part.key, part.rows) for part in writer.write_csv(lines)]
    [('staff/2024/11/14/090500000000-exec-1-00000.csv.gz', 2)]
    >>> writer.write_csv(lines)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.RawObjectExistsError: s3://ingested/staff/.../090500000000-exec-1-00000.csv.gz ...
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        table: str,
        run_id: str,
        extracted_at: datetime,
        *,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.table = table
        self.run_id = run_id
        self.extracted_at = extracted_at
        self.batch_id = raw_keys.batch_id_for(extracted_at, run_id)
        self.part_bytes = part_bytes

    def part_key(self, number: int) -> str:
        """Key of part ``number`` of this batch."""
        return raw_keys.part_key(self.table, self.extracted_at, self.batch_id, number)

    @property
    def manifest_key(self) -> str:
        """Key of this batch's manifest."""
        return raw_keys.manifest_key(self.table, self.extracted_at, self.batch_id)

    def write_csv(self, lines: Iterable[bytes]) -> list[RawPart]:
        """Compress and upload a CSV stream (header first) as parts that each start with it."""
        parts: list[RawPart] = []
        iterator = iter(lines)
        header = next(iterator, None)
        if header is None:
            return parts
        for number, chunk in enumerate(self._split(iterator, header)):
            parts.append(self._upload(number, *chunk))
        return parts

    def _split(self, rows: Iterator[bytes], header: bytes) -> Iterator[tuple[bytes, int]]:
        """Gzip parts of at least ``part_bytes`` of CSV each (the last may be smaller), each
        starting with the header, with their row counts."""
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
        out = io.BytesIO()
        pending: list[bytes] = [header]
        pending_size = len(header)
        part_size = 0
        part_rows = 0
        for row in rows:
            pending.append(row)
            pending_size += len(row)
            part_rows += 1
            if pending_size >= 1 << 20:
                out.write(compressor.compress(b"".join(pending)))
                part_size += pending_size
                pending, pending_size = [], 0
                if part_size >= self.part_bytes:
                    out.write(compressor.flush())
                    yield out.getvalue(), part_rows
                    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
                    out = io.BytesIO()
                    pending, pending_size = [header], len(header)
                    part_size = part_rows = 0
        if part_rows:
            out.write(compressor.compress(b"".join(pending)))
            out.write(compressor.flush())
            yield out.getvalue(), part_rows

    def _upload(self, number: int, body: bytes, rows: int) -> RawPart:
        key = self.part_key(number)
        _put_new(self.s3, self.bucket, key, body, "application/gzip")
        return RawPart(key=key, rows=rows, bytes=len(body), sha256=hashlib.sha256(body).hexdigest())

    def write_manifest(self, manifest: Manifest) -> str:
        """Upload the manifest, last: its presence marks the batch complete."""
        _put_new(self.s3, self.bucket, self.manifest_key, manifest.to_json(), "application/json")
        return self.manifest_key


# -- reading --------------------------------------------------------------------------------


def read_manifest(s3: Any, bucket: str, manifest_key: str) -> Manifest:
    """Read one batch's manifest (its columns, row count and parts), not its rows.

    Raises
    ------
    ManifestFormatError
        The object is not a manifest of this format.
    """
    return Manifest.from_json(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())


def cursor_json(cursor: tuple[datetime, int] | None) -> list[str | int] | None:
    """A cursor as JSON (ISO timestamp with microseconds, key)."""
    if cursor is None:
        return None
    return [cursor[0].isoformat(timespec="microseconds"), cursor[1]]
