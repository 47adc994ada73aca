"""Parquet objects in S3: what every zone of the processed bucket is made of."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_bytes(rows: pa.Table) -> bytes:
    """A table as one Parquet object, zstd-compressed.

    Examples
    --------
    >>> parquet_bytes(pa.table({"k": [1]}))[:4]
    b'PAR1'
    """
    sink = io.BytesIO()
    pq.write_table(rows, sink, compression="zstd")
    return sink.getvalue()


def read_parquet(s3: Any, bucket: str, key: str) -> pa.Table:
    """One Parquet object, whole."""
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
