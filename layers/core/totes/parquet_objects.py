"""Parquet objects in S3: what every zone of the processed bucket is made of."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(rows: pa.Table) -> bytes:
    """A table as one Parquet object, zstd-compressed, text dictionary-encoded.

    Only text columns are dictionary-encoded: keys, dates and amounts take longer to
    encode as dictionaries than their plain values take to compress, and come out
    larger (ADR 28 has the figures).

    Examples
    --------
    >>> parquet_bytes(pa.table({"k": [1]}))[:4]
    b'PAR1'
    """
    text = [field.name for field in rows.schema if _is_text(field.type)]
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd", use_dictionary=text)
    return sink.getvalue()


def _is_text(kind: pa.DataType) -> bool:
    """Tell whether a column holds text, plain, as views or as a dictionary."""
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def parquet_table(body: bytes) -> pa.Table:
    """The rows of one Parquet object's bytes.

    Read as one file: ``pq.read_table`` would import ``pyarrow.dataset`` for it, which
    costs each new Lambda environment as much as reading a million rows.

    Raises
    ------
    pyarrow.ArrowInvalid
        ``body`` is not Parquet.

    Examples
    --------
    >>> parquet_table(parquet_bytes(pa.table({"k": [1, 2]}))).column("k").to_pylist()
    [1, 2]
    """
    return pq.ParquetFile(pa.BufferReader(body)).read()


def read_parquet(s3: Any, bucket: str, key: str) -> pa.Table:
    """One Parquet object, whole."""
    return parquet_table(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
