"""The rows of raw-zone batches as Arrow tables, typed like the source: what transform reads.

Apart from :mod:`totes.ingest.raw_zone` so that ingest, which only writes the raw
zone, does not import pyarrow.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from typing import Any

import pyarrow as pa
from pyarrow import csv as pa_csv

from totes.errors import RawPartCorruptError
from totes.ingest.columns import SourceColumn
from totes.ingest.raw_zone import Manifest, read_manifest

_ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


def _arrow_type(column: SourceColumn) -> pa.DataType:
    # Numerics stay the source's text: Arrow's CSV reader turns 'NaN' (which a numeric
    # column may hold) into NULL, so transform converts them, checked, to the star's type.
    # Text, varchar, enums and anything unforeseen stay strings too: nothing is lost.
    return _ARROW_TYPES.get(column.data_type, pa.string())


def read_part(body: bytes, columns: list[SourceColumn]) -> pa.Table:
    """Decode one gzip CSV part into an Arrow table typed like the source.

    Quoted empty fields are empty strings; unquoted empty fields are NULL. Integers,
    booleans and timestamps are typed; numerics keep their text (see :func:`_arrow_type`).

    Examples
    --------
    >>> import gzip
    >>> body = gzip.compress(b'"sales_order_id","unit_price","paid"\\n"7","3.94","t"\\n')
    >>> columns = [SourceColumn("sales_order_id", "integer"),
    ...            SourceColumn("unit_price", "numeric", 10, 2), SourceColumn("paid", "boolean")]
    >>> read_part(body, columns).to_pylist()
    [{'sales_order_id': 7, 'unit_price': '3.94', 'paid': True}]
    """
    data = zlib.decompress(body, 31)
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={column.name: _arrow_type(column) for column in columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["t"],
            false_values=["f"],
        ),
    )


def read_rows(s3: Any, bucket: str, manifest: Manifest) -> pa.Table:
    """Read the rows of a batch through its manifest, checking each part's SHA-256.

    Raises
    ------
    RawPartCorruptError
        A part's bytes do not match the checksum its manifest records.
    """
    tables = []
    for part in manifest.parts:
        body = s3.get_object(Bucket=bucket, Key=part.key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != part.sha256:
            raise RawPartCorruptError(
                f"s3://{bucket}/{part.key} does not match the SHA-256 in its manifest"
            )
        tables.append(read_part(body, manifest.columns))
    if not tables:
        schema = pa.schema([(c.name, _arrow_type(c)) for c in manifest.columns])
        return schema.empty_table()
    return pa.concat_tables(tables)


def read_batch(s3: Any, bucket: str, manifest_key: str) -> tuple[Manifest, pa.Table]:
    """Read a whole batch: its manifest, then its rows (:func:`read_rows`)."""
    manifest = read_manifest(s3, bucket, manifest_key)
    return manifest, read_rows(s3, bucket, manifest)
