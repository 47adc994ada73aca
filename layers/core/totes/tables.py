"""The table registry: every source and warehouse table, described once.

Each warehouse table is one :class:`WarehouseTable` entry: whether it is a dimension
or a fact, the source tables it is shaped from (in the order its shape function takes
them), its key, its columns, whether a change to a lookup source reaches every row,
the dimensions a fact references, how the lake partitions it, and the SQL that rebuilds
it from the source for reconciliation. The stages, the lake, reconciliation and the
CDK application read what they need from here; nothing else lists the tables.

This module must stay free of third-party imports, like :mod:`totes.names`: the CDK
application imports it to build the workflow's Map items.

Examples
--------
>>> WAREHOUSE["dim_staff"].sources
('staff', 'department')
>>> [table.name for table in FACTS]
['fact_sales_order', 'fact_purchase_order', 'fact_payment']
>>> largest_first(["dim_currency", "dim_transaction", "dim_staff"])
['dim_transaction', 'dim_staff', 'dim_currency']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Kind(StrEnum):
    """What a warehouse table holds."""

    #: The current version of each thing (type 1): upserted on its key.
    DIMENSION = "dimension"
    #: Every version of each source row (history): appended.
    FACT = "fact"


class ColumnType(StrEnum):
    """The types of the star schema (PostgreSQL's in the warehouse, Arrow's in files)."""

    INT = "int"
    TEXT = "text"
    DATE = "date"
    #: A time of day with milliseconds.
    TIME = "time"
    #: ``numeric(10, 2)``: never a float.
    MONEY = "money"
    BOOL = "bool"


@dataclass(frozen=True)
class Column:
    """One column of a warehouse table, in the order of the table."""

    name: str
    type: ColumnType
    nullable: bool = False


def _required(name: str, kind: ColumnType) -> Column:
    return Column(name, kind)


def _optional(name: str, kind: ColumnType) -> Column:
    return Column(name, kind, nullable=True)


@dataclass(frozen=True)
class SourceTable:
    """One table of the totesys database that the pipeline extracts."""

    name: str
    #: 1 for the table that usually holds the most rows (scheduling: largest first).
    size_rank: int

    @property
    def key(self) -> str:
        """The primary key column (totesys names every key ``<table>_id``)."""
        return f"{self.name}_id"


@dataclass(frozen=True)
class WarehouseTable:
    """One table of the star schema, and everything the pipeline needs to know of it."""

    name: str
    kind: Kind
    #: Source tables shaped into it, in the order its shape function takes them; none:
    #: load derives it (``dim_date``, from the dates the fact rows reference).
    sources: tuple[str, ...]
    #: A dimension's primary key; a fact's source row id (one row per version of it).
    key: str
    columns: tuple[Column, ...]
    #: 1 for the table that usually holds the most rows (scheduling: largest first).
    size_rank: int
    #: A dimension that joins lookup tables re-emits every row when any input changes,
    #: so a department move reaches every staff row.
    cascades: bool = False
    #: A fact's surrogate key, the warehouse's own (numbered in commit order).
    record_key: str | None = None
    #: A fact column -> the dimension it references (by that dimension's key).
    references: Mapping[str, str] = field(default_factory=dict)
    #: The partition column of the table in the lake (a fact: the month of its
    #: ``last_updated``, ``YYYY-MM``).
    lake_partition: str | None = None
    #: The table's rows rebuilt in SQL straight from the current source, in the order of
    #: :attr:`columns` (a fact: each source row's current version); ``%(name)s``
    #: placeholders are filled by reconciliation.
    rebuild_sql: str = ""

    @property
    def has_gold_files(self) -> bool:
        """Whether transform shapes it into gold files (every table not derived by load)."""
        return bool(self.sources)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The names of :attr:`columns`, in order."""
        return tuple(column.name for column in self.columns)

    @property
    def version_key(self) -> tuple[str, ...]:
        """A fact's natural key: one row per version of a source row."""
        return (self.key, "last_updated_date", "last_updated_time")

    @property
    def date_columns(self) -> tuple[str, ...]:
        """Columns holding a date: a fact's must each be a row of ``dim_date`` first."""
        return tuple(column.name for column in self.columns if column.type is ColumnType.DATE)

    @property
    def lake_key(self) -> str:
        """The column that identifies a row of the table in the lake."""
        return self.record_key or self.key


#: The 11 totesys tables the pipeline extracts, in foreign-key order (every table
#: appears after the tables it references). Ranks: the client's data, where transactions
#: and payments grow with every sale and purchase and currencies hardly change.
_SOURCES: Final = (
    SourceTable("address", size_rank=6),
    SourceTable("counterparty", size_rank=7),
    SourceTable("currency", size_rank=11),
    SourceTable("department", size_rank=9),
    SourceTable("design", size_rank=5),
    SourceTable("payment_type", size_rank=10),
    SourceTable("staff", size_rank=8),
    SourceTable("sales_order", size_rank=3),
    SourceTable("purchase_order", size_rank=4),
    SourceTable("transaction", size_rank=1),
    SourceTable("payment", size_rank=2),
)

#: Source tables that Prisma creates and the pipeline must never read.
IGNORED_SOURCE_TABLES: Final = ("_prisma_migrations",)

_INT, _TEXT, _DATE, _TIME, _MONEY, _BOOL = ColumnType

_VERSION_STAMPS: Final = (
    _required("created_date", _DATE),
    _required("created_time", _TIME),
    _required("last_updated_date", _DATE),
    _required("last_updated_time", _TIME),
)
_LAKE_MONTH: Final = "last_updated_month"

_WAREHOUSE: Final = (
    WarehouseTable(
        "dim_date",
        Kind.DIMENSION,
        sources=(),
        key="date_id",
        columns=(
            _required("date_id", _DATE),
            _required("year", _INT),
            _required("month", _INT),
            _required("day", _INT),
            _required("day_of_week", _INT),
            _required("day_name", _TEXT),
            _required("month_name", _TEXT),
            _required("quarter", _INT),
        ),
        size_rank=9,
    ),
    WarehouseTable(
        "dim_staff",
        Kind.DIMENSION,
        sources=("staff", "department"),
        key="staff_id",
        columns=(
            _required("staff_id", _INT),
            _required("first_name", _TEXT),
            _required("last_name", _TEXT),
            _required("department_name", _TEXT),
            _required("location", _TEXT),
            _required("email_address", _TEXT),
        ),
        size_rank=8,
        cascades=True,
        rebuild_sql="SELECT s.staff_id, s.first_name, s.last_name, "
        "coalesce(d.department_name, %(unknown_department)s), "
        "coalesce(d.location, %(unknown_location)s), s.email_address "
        "FROM staff s LEFT JOIN department d USING (department_id)",
    ),
    WarehouseTable(
        "dim_location",
        Kind.DIMENSION,
        sources=("address",),
        key="location_id",
        columns=(
            _required("location_id", _INT),
            _required("address_line_1", _TEXT),
            _optional("address_line_2", _TEXT),
            _optional("district", _TEXT),
            _required("city", _TEXT),
            _required("postal_code", _TEXT),
            _required("country", _TEXT),
            _required("phone", _TEXT),
        ),
        size_rank=7,
        rebuild_sql="SELECT address_id, address_line_1, address_line_2, district, city, "
        "postal_code, country, phone FROM address",
    ),
    WarehouseTable(
        "dim_currency",
        Kind.DIMENSION,
        sources=("currency",),
        key="currency_id",
        columns=(
            _required("currency_id", _INT),
            _required("currency_code", _TEXT),
            _required("currency_name", _TEXT),
        ),
        size_rank=11,
        # The name comes from ISO 4217, not the source: reconciliation adds it.
        rebuild_sql="SELECT currency_id, currency_code::text FROM currency",
    ),
    WarehouseTable(
        "dim_design",
        Kind.DIMENSION,
        sources=("design",),
        key="design_id",
        columns=(
            _required("design_id", _INT),
            _required("design_name", _TEXT),
            _required("file_location", _TEXT),
            _required("file_name", _TEXT),
        ),
        size_rank=5,
        rebuild_sql="SELECT design_id, design_name, file_location, file_name FROM design",
    ),
    WarehouseTable(
        "dim_counterparty",
        Kind.DIMENSION,
        sources=("counterparty", "address"),
        key="counterparty_id",
        columns=(
            _required("counterparty_id", _INT),
            _required("counterparty_legal_name", _TEXT),
            _required("counterparty_legal_address_line_1", _TEXT),
            _optional("counterparty_legal_address_line_2", _TEXT),
            _optional("counterparty_legal_district", _TEXT),
            _required("counterparty_legal_city", _TEXT),
            _required("counterparty_legal_postal_code", _TEXT),
            _required("counterparty_legal_country", _TEXT),
            _required("counterparty_legal_phone_number", _TEXT),
        ),
        size_rank=6,
        cascades=True,
        rebuild_sql="SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1, "
        "a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone "
        "FROM counterparty c JOIN address a ON a.address_id = c.legal_address_id",
    ),
    WarehouseTable(
        "dim_payment_type",
        Kind.DIMENSION,
        sources=("payment_type",),
        key="payment_type_id",
        columns=(
            _required("payment_type_id", _INT),
            _required("payment_type_name", _TEXT),
        ),
        size_rank=10,
        rebuild_sql="SELECT payment_type_id, payment_type_name::text FROM payment_type",
    ),
    WarehouseTable(
        "dim_transaction",
        Kind.DIMENSION,
        sources=("transaction",),
        key="transaction_id",
        columns=(
            _required("transaction_id", _INT),
            _required("transaction_type", _TEXT),
            _optional("sales_order_id", _INT),
            _optional("purchase_order_id", _INT),
        ),
        size_rank=1,
        rebuild_sql="SELECT transaction_id, transaction_type::text, sales_order_id, "
        "purchase_order_id FROM transaction",
    ),
    WarehouseTable(
        "fact_sales_order",
        Kind.FACT,
        sources=("sales_order",),
        key="sales_order_id",
        columns=(
            _required("sales_order_id", _INT),
            *_VERSION_STAMPS,
            _required("sales_staff_id", _INT),
            _required("counterparty_id", _INT),
            _required("units_sold", _INT),
            _required("unit_price", _MONEY),
            _required("currency_id", _INT),
            _required("design_id", _INT),
            _required("agreed_payment_date", _DATE),
            _required("agreed_delivery_date", _DATE),
            _required("agreed_delivery_location_id", _INT),
        ),
        size_rank=3,
        record_key="sales_record_id",
        references={
            "sales_staff_id": "dim_staff",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "design_id": "dim_design",
            "agreed_delivery_location_id": "dim_location",
        },
        lake_partition=_LAKE_MONTH,
        rebuild_sql="SELECT sales_order_id, created_at::date, created_at::time(3), "
        "last_updated::date, last_updated::time(3), staff_id, counterparty_id, "
        "units_sold, unit_price, currency_id, design_id, agreed_payment_date::date, "
        "agreed_delivery_date::date, agreed_delivery_location_id FROM sales_order",
    ),
    WarehouseTable(
        "fact_purchase_order",
        Kind.FACT,
        sources=("purchase_order",),
        key="purchase_order_id",
        columns=(
            _required("purchase_order_id", _INT),
            *_VERSION_STAMPS,
            _required("staff_id", _INT),
            _required("counterparty_id", _INT),
            _required("item_code", _TEXT),
            _required("item_quantity", _INT),
            _required("item_unit_price", _MONEY),
            _required("currency_id", _INT),
            _required("agreed_delivery_date", _DATE),
            _required("agreed_payment_date", _DATE),
            _required("agreed_delivery_location_id", _INT),
        ),
        size_rank=4,
        record_key="purchase_record_id",
        references={
            "staff_id": "dim_staff",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "agreed_delivery_location_id": "dim_location",
        },
        lake_partition=_LAKE_MONTH,
        rebuild_sql="SELECT purchase_order_id, created_at::date, created_at::time(3), "
        "last_updated::date, last_updated::time(3), staff_id, counterparty_id, "
        "item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date::date, "
        "agreed_payment_date::date, agreed_delivery_location_id FROM purchase_order",
    ),
    WarehouseTable(
        "fact_payment",
        Kind.FACT,
        sources=("payment",),
        key="payment_id",
        columns=(
            _required("payment_id", _INT),
            *_VERSION_STAMPS,
            _required("transaction_id", _INT),
            _required("counterparty_id", _INT),
            _required("payment_amount", _MONEY),
            _required("currency_id", _INT),
            _required("payment_type_id", _INT),
            _required("paid", _BOOL),
            _required("payment_date", _DATE),
        ),
        size_rank=2,
        record_key="payment_record_id",
        references={
            "transaction_id": "dim_transaction",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "payment_type_id": "dim_payment_type",
        },
        lake_partition=_LAKE_MONTH,
        rebuild_sql="SELECT payment_id, created_at::date, created_at::time(3), "
        "last_updated::date, last_updated::time(3), transaction_id, counterparty_id, "
        "payment_amount, currency_id, payment_type_id, paid, payment_date::date FROM payment",
    ),
)

#: Every source table by name, in foreign-key order.
SOURCE: Final[Mapping[str, SourceTable]] = MappingProxyType({t.name: t for t in _SOURCES})
#: Every warehouse table by name: the dimensions, then the facts.
WAREHOUSE: Final[Mapping[str, WarehouseTable]] = MappingProxyType({t.name: t for t in _WAREHOUSE})
DIMENSIONS: Final = tuple(t for t in _WAREHOUSE if t.kind is Kind.DIMENSION)
FACTS: Final = tuple(t for t in _WAREHOUSE if t.kind is Kind.FACT)

SOURCE_TABLES: Final = tuple(SOURCE)
WAREHOUSE_TABLES: Final = tuple(WAREHOUSE)
DIMENSION_TABLES: Final = tuple(t.name for t in DIMENSIONS)
FACT_TABLES: Final = tuple(t.name for t in FACTS)
#: The warehouse tables transform shapes gold files for, and load applies them to.
GOLD_TABLES: Final = tuple(t.name for t in _WAREHOUSE if t.has_gold_files)
GOLD_DIMENSIONS: Final = tuple(t.name for t in DIMENSIONS if t.has_gold_files)


def largest_first(tables: Iterable[str]) -> list[str]:
    """The order a stage's Map takes ``tables`` in: the usually largest first.

    A Map runs a few items at once; started largest first, the stage ends soon after
    its longest item instead of long after it (longest-processing-time-first
    scheduling: with the client's data, ``dim_transaction`` last held the load of
    the dimensions for 6 s after the others were done). ``tables`` are all source
    tables or all warehouse tables.

    Examples
    --------
    >>> largest_first(["currency", "transaction", "staff"])
    ['transaction', 'staff', 'currency']
    """
    return sorted(tables, key=lambda name: (WAREHOUSE.get(name) or SOURCE[name]).size_rank)
