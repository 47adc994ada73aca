"""Parquet objects as the zones store them: the same rows back, text as dictionaries."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from totes.parquet_objects import parquet_bytes, parquet_table


def _dictionary_encoded(body: bytes) -> dict[str, bool]:
    metadata = pq.ParquetFile(pa.BufferReader(body)).metadata
    group = metadata.row_group(0)
    return {
        group.column(i).path_in_schema: group.column(i).has_dictionary_page
        for i in range(group.num_columns)
    }


def test_text_is_dictionary_encoded_and_keys_dates_and_amounts_are_stored_plain() -> None:
    # Given a fact-like table: unique keys, a few repeated currencies, dates and amounts
    rows = pa.table(
        {
            "sales_order_id": pa.array(range(5_000), pa.int32()),
            "currency_code": pa.array(["GBP", "USD", "EUR", "GBP"] * 1_250),
            "agreed_payment_date": pa.array([date(2024, 2, 29)] * 5_000, pa.date32()),
            "unit_price": pa.array([Decimal("3.94")] * 5_000, pa.decimal128(10, 2)),
        }
    )
    # When it becomes a Parquet object
    body = parquet_bytes(rows)
    # Then only the text column carries a dictionary, and every row reads back the same
    assert _dictionary_encoded(body) == {
        "sales_order_id": False,
        "currency_code": True,
        "agreed_payment_date": False,
        "unit_price": False,
    }
    assert parquet_table(body).equals(rows)
