"""Arrow schemas of the star (gold) zone: one per warehouse table, column for column.

Transform writes Parquet files with exactly these schemas under
``<warehouse_table>/seq=<sequence>/run=<run_id>/<sequence>-<digest>.parquet`` in the
processed bucket (:func:`gold_key`: keys sort in commit order); load copies them into
the warehouse table of the same name. The surrogate keys of the facts
(``sales_record_id`` and friends) are the warehouse's own and are not in the files.

Money is ``decimal128(10, 2)``, never float; times keep milliseconds.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

MONEY: Final = pa.decimal128(10, 2)
TIME_MS: Final = pa.time32("ms")


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, kind, nullable=nullable) for name, kind, nullable in fields])


def _required(name: str, kind: pa.DataType) -> tuple[str, pa.DataType, bool]:
    return (name, kind, False)


def _optional(name: str, kind: pa.DataType) -> tuple[str, pa.DataType, bool]:
    return (name, kind, True)


_VERSION_STAMPS = (
    _required("created_date", pa.date32()),
    _required("created_time", TIME_MS),
    _required("last_updated_date", pa.date32()),
    _required("last_updated_time", TIME_MS),
)

STAR_SCHEMAS: Final[dict[str, pa.Schema]] = {
    "dim_date": _schema(
        _required("date_id", pa.date32()),
        _required("year", pa.int32()),
        _required("month", pa.int32()),
        _required("day", pa.int32()),
        _required("day_of_week", pa.int32()),
        _required("day_name", pa.string()),
        _required("month_name", pa.string()),
        _required("quarter", pa.int32()),
    ),
    "dim_staff": _schema(
        _required("staff_id", pa.int32()),
        _required("first_name", pa.string()),
        _required("last_name", pa.string()),
        _required("department_name", pa.string()),
        _required("location", pa.string()),
        _required("email_address", pa.string()),
    ),
    "dim_location": _schema(
        _required("location_id", pa.int32()),
        _required("address_line_1", pa.string()),
        _optional("address_line_2", pa.string()),
        _optional("district", pa.string()),
        _required("city", pa.string()),
        _required("postal_code", pa.string()),
        _required("country", pa.string()),
        _required("phone", pa.string()),
    ),
    "dim_currency": _schema(
        _required("currency_id", pa.int32()),
        _required("currency_code", pa.string()),
        _required("currency_name", pa.string()),
    ),
    "dim_design": _schema(
        _required("design_id", pa.int32()),
        _required("design_name", pa.string()),
        _required("file_location", pa.string()),
        _required("file_name", pa.string()),
    ),
    "dim_counterparty": _schema(
        _required("counterparty_id", pa.int32()),
        _required("counterparty_legal_name", pa.string()),
        _required("counterparty_legal_address_line_1", pa.string()),
        _optional("counterparty_legal_address_line_2", pa.string()),
        _optional("counterparty_legal_district", pa.string()),
        _required("counterparty_legal_city", pa.string()),
        _required("counterparty_legal_postal_code", pa.string()),
        _required("counterparty_legal_country", pa.string()),
        _required("counterparty_legal_phone_number", pa.string()),
    ),
    "dim_payment_type": _schema(
        _required("payment_type_id", pa.int32()),
        _required("payment_type_name", pa.string()),
    ),
    "dim_transaction": _schema(
        _required("transaction_id", pa.int32()),
        _required("transaction_type", pa.string()),
        _optional("sales_order_id", pa.int32()),
        _optional("purchase_order_id", pa.int32()),
    ),
    "fact_sales_order": _schema(
        _required("sales_order_id", pa.int32()),
        *_VERSION_STAMPS,
        _required("sales_staff_id", pa.int32()),
        _required("counterparty_id", pa.int32()),
        _required("units_sold", pa.int32()),
        _required("unit_price", MONEY),
        _required("currency_id", pa.int32()),
        _required("design_id", pa.int32()),
        _required("agreed_payment_date", pa.date32()),
        _required("agreed_delivery_date", pa.date32()),
        _required("agreed_delivery_location_id", pa.int32()),
    ),
    "fact_purchase_order": _schema(
        _required("purchase_order_id", pa.int32()),
        *_VERSION_STAMPS,
        _required("staff_id", pa.int32()),
        _required("counterparty_id", pa.int32()),
        _required("item_code", pa.string()),
        _required("item_quantity", pa.int32()),
        _required("item_unit_price", MONEY),
        _required("currency_id", pa.int32()),
        _required("agreed_delivery_date", pa.date32()),
        _required("agreed_payment_date", pa.date32()),
        _required("agreed_delivery_location_id", pa.int32()),
    ),
    "fact_payment": _schema(
        _required("payment_id", pa.int32()),
        *_VERSION_STAMPS,
        _required("transaction_id", pa.int32()),
        _required("counterparty_id", pa.int32()),
        _required("payment_amount", MONEY),
        _required("currency_id", pa.int32()),
        _required("payment_type_id", pa.int32()),
        _required("paid", pa.bool_()),
        _required("payment_date", pa.date32()),
    ),
}

#: Primary key of each dimension (the upsert key).
DIMENSION_KEYS: Final[dict[str, str]] = {
    "dim_date": "date_id",
    "dim_staff": "staff_id",
    "dim_location": "location_id",
    "dim_currency": "currency_id",
    "dim_design": "design_id",
    "dim_counterparty": "counterparty_id",
    "dim_payment_type": "payment_type_id",
    "dim_transaction": "transaction_id",
}

#: Natural key of each fact: one row per version of a source row.
FACT_VERSION_KEYS: Final[dict[str, tuple[str, str, str]]] = {
    "fact_sales_order": ("sales_order_id", "last_updated_date", "last_updated_time"),
    "fact_purchase_order": ("purchase_order_id", "last_updated_date", "last_updated_time"),
    "fact_payment": ("payment_id", "last_updated_date", "last_updated_time"),
}

#: Fact column -> the dimension (table, key) it references; dates reference dim_date.
FACT_REFERENCES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "fact_sales_order": {
        "sales_staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "design_id": ("dim_design", "design_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
    },
    "fact_purchase_order": {
        "staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
    },
    "fact_payment": {
        "transaction_id": ("dim_transaction", "transaction_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "payment_type_id": ("dim_payment_type", "payment_type_id"),
    },
}

#: Date columns of each fact; every value must exist in dim_date before the fact row.
FACT_DATE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "fact_sales_order": (
        "created_date",
        "last_updated_date",
        "agreed_payment_date",
        "agreed_delivery_date",
    ),
    "fact_purchase_order": (
        "created_date",
        "last_updated_date",
        "agreed_delivery_date",
        "agreed_payment_date",
    ),
    "fact_payment": ("created_date", "last_updated_date", "payment_date"),
}


def gold_key(warehouse_table: str, sequence: int, run_id: str, digest: str) -> str:
    """Key of the gold file transform commits as the table's ``sequence``-th.

    The sequence leads the key, so a table's keys sort in the order they were committed
    (a commit published late by a later run included): load lists only the keys after
    the last one it has loaded every predecessor of.

    Examples
    --------
    >>> gold_key("dim_staff", 42, "2026-12-06T10:00:00.000Z-exec", "9f2c")
    'dim_staff/seq=0000000042/run=2026-12-06T10:00:00.000Z-exec/0000000042-9f2c.parquet'
    """
    return f"{warehouse_table}/seq={sequence:010d}/run={run_id}/{sequence:010d}-{digest}.parquet"


def star_prefix(warehouse_table: str, run_id: str) -> str:
    """Folder of one run's files of a warehouse table without a sequence (files of
    releases before :func:`gold_key`, and files put by hand).

    Examples
    --------
    >>> star_prefix("dim_staff", "exec-1")
    'dim_staff/run=exec-1/'
    """
    return f"{warehouse_table}/run={run_id}/"
