"""How the raw zone splits one batch's CSV into gzip parts, and its manifest document."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totes.errors import ManifestFormatError, RawObjectExistsError
from totes.ingest.columns import SourceColumn
from totes.ingest.raw_zone import Manifest, RawZoneWriter

EXTRACTED = datetime(2024, 11, 14, 9, 30, tzinfo=UTC)
HEADER = b'"staff_id","first_name"\r\n'
MIB = 1 << 20


class RecordingS3:
    """Keeps what is put; refuses a second put of a key, as If-None-Match does.

    Answers with the object's ETag, as S3 does: its MD5 in quotes.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803
        if Key in self.objects:
            from botocore.exceptions import ClientError  # noqa: PLC0415

            raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
        self.objects[Key] = Body
        return {"ETag": f'"{hashlib.md5(Body, usedforsecurity=False).hexdigest()}"'}


def _rows(count: int, width: int) -> list[bytes]:
    return [f'"{n}","{"x" * width}"\r\n'.encode() for n in range(count)]


def _write(rows: list[bytes], part_bytes: int) -> tuple[RecordingS3, list[Any]]:
    s3 = RecordingS3()
    writer = RawZoneWriter(s3, "raw", "staff", "exec-1", EXTRACTED, part_bytes=part_bytes)
    return s3, writer.write_csv([HEADER, *rows])


@settings(max_examples=15, deadline=None)
@given(count=st.integers(0, 3000), width=st.sampled_from([10, 400, 2000]))
def test_parts_hold_every_row_once_in_order_each_behind_the_header(count: int, width: int) -> None:
    # Given rows worth up to several MiB of CSV, and parts closed after 1 MiB
    rows = _rows(count, width)

    # When the batch is written
    s3, parts = _write(rows, part_bytes=MIB)

    # Then the parts, decompressed, give back every row once, in order, each part
    # starting with the header, with the row counts, sizes and digests the manifest keeps
    bodies = [s3.objects[part.key] for part in parts]
    texts = [gzip.decompress(body) for body in bodies]
    assert all(text.startswith(HEADER) for text in texts)
    assert b"".join(text[len(HEADER) :] for text in texts) == b"".join(rows)
    assert [part.rows for part in parts] == [text.count(b"\r\n") - 1 for text in texts]
    assert [part.bytes for part in parts] == [len(body) for body in bodies]
    assert [part.sha256 for part in parts] == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert len(parts) == len({part.key for part in parts})


def test_a_large_batch_is_split_into_parts_of_about_the_part_size() -> None:
    rows = _rows(12_000, 400)  # about 4.8 MB of CSV

    _, parts = _write(rows, part_bytes=MIB)

    assert len(parts) >= 4
    assert sum(part.rows for part in parts) == len(rows)


def test_a_batch_with_no_rows_writes_no_part() -> None:
    s3, parts = _write([], part_bytes=MIB)
    assert (parts, s3.objects) == ([], {})


def test_a_part_key_that_exists_is_never_overwritten() -> None:
    s3 = RecordingS3()
    writer = RawZoneWriter(s3, "raw", "staff", "exec-1", EXTRACTED)
    writer.write_csv([HEADER, *_rows(3, 5)])
    with pytest.raises(RawObjectExistsError, match="the raw zone is never overwritten"):
        writer.write_csv([HEADER, *_rows(3, 5)])


def _manifest() -> Manifest:
    return Manifest(
        table="staff",
        run_id="exec-1",
        batch_id="093000000000-exec-1",
        extracted_at=EXTRACTED.isoformat(),
        columns=[SourceColumn("staff_id", "integer"), SourceColumn("price", "numeric", 10, 2)],
        rows=3,
        cursor_from=None,
        cursor_to=["2024-11-14 09:30:00", 3],
        rereads_window=False,
    )


def test_a_manifest_round_trips_through_its_json_document() -> None:
    manifest = _manifest()
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert b'"format": "totes-raw-batch/1"' in manifest.to_json()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((b'"totes-raw-batch/1"', b'"totes-raw-batch/2"'), "format"),
        ((b'"rows": 3', b'"rows": -1'), "rows"),
        ((b'"table": "staff",', b""), "table"),
    ],
)
def test_a_manifest_of_another_format_or_shape_is_refused_by_field(
    edit: tuple[bytes, bytes], message: str
) -> None:
    body = _manifest().to_json().replace(*edit)
    with pytest.raises(ManifestFormatError, match=f"not a totes-raw-batch/1 manifest: {message}"):
        Manifest.from_json(body)
