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


def _columns(declared: str) -> tuple[Column, ...]:
    """Columns declared as ``"name type[ null], ..."``: a table's columns read like its SQL.

    Examples
    --------
    >>> [(c.name, c.nullable) for c in _columns("location_id int, district text null")]
    [('location_id', False), ('district', True)]
    """
    columns = []
    for column in declared.split(","):
        name, kind, *null = column.split()
        columns.append(Column(name, ColumnType(kind), nullable=null == ["null"]))
    return tuple(columns)


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


def _dimension(
    name: str,
    *,
    sources: tuple[str, ...],
    columns: tuple[Column, ...],
    size_rank: int,
    cascades: bool = False,
    rebuild_sql: str = "",
) -> WarehouseTable:
    """A dimension, keyed by its first column."""
    return WarehouseTable(
        name,
        Kind.DIMENSION,
        sources=sources,
        key=columns[0].name,
        columns=columns,
        size_rank=size_rank,
        cascades=cascades,
        rebuild_sql=rebuild_sql,
    )


def _fact(
    name: str,
    *,
    source: str,
    record_key: str,
    columns: tuple[Column, ...],
    size_rank: int,
    references: Mapping[str, str],
    rebuild_columns: str,
) -> WarehouseTable:
    """A fact of one source table: one row per version of a source row, so its columns start
    with the source row's id and version stamps; partitioned in the lake by the month of
    ``last_updated``."""
    key = f"{source}_id"
    return WarehouseTable(
        name,
        Kind.FACT,
        sources=(source,),
        key=key,
        columns=(Column(key, ColumnType.INT), *_VERSION_STAMPS, *columns),
        size_rank=size_rank,
        record_key=record_key,
        references=references,
        lake_partition="last_updated_month",
        # Names from this registry, never input.
        rebuild_sql=f"SELECT {key}, {_SOURCE_STAMPS}, {rebuild_columns} FROM {source}",  # noqa: S608  # nosec B608
    )


_VERSION_STAMPS: Final = _columns(
    "created_date date, created_time time, last_updated_date date, last_updated_time time"
)
#: The version stamps as the source holds them (timestamps), for a fact's rebuild.
_SOURCE_STAMPS: Final = (
    "created_at::date, created_at::time(3), last_updated::date, last_updated::time(3)"
)

_WAREHOUSE: Final = (
    _dimension(
        "dim_date",
        sources=(),
        columns=_columns(
            "date_id date, year int, month int, day int, day_of_week int, day_name text, "
            "month_name text, quarter int"
        ),
        size_rank=9,
    ),
    _dimension(
        "dim_staff",
        sources=("staff", "department"),
        columns=_columns(
            "staff_id int, first_name text, last_name text, department_name text, "
            "location text, email_address text"
        ),
        size_rank=8,
        cascades=True,
        rebuild_sql=(
            "SELECT s.staff_id, s.first_name, s.last_name, coalesce(d.department_name, "
            "%(unknown_department)s), coalesce(d.location, %(unknown_location)s), "
            "s.email_address FROM staff s LEFT JOIN department d USING (department_id)"
        ),
    ),
    _dimension(
        "dim_location",
        sources=("address",),
        columns=_columns(
            "location_id int, address_line_1 text, address_line_2 text null, "
            "district text null, city text, postal_code text, country text, phone text"
        ),
        size_rank=7,
        rebuild_sql=(
            "SELECT address_id, address_line_1, address_line_2, district, city, "
            "postal_code, country, phone FROM address"
        ),
    ),
    _dimension(
        "dim_currency",
        sources=("currency",),
        columns=_columns("currency_id int, currency_code text, currency_name text"),
        size_rank=11,
        # The name comes from ISO 4217, not the source: reconciliation adds it.
        rebuild_sql=("SELECT currency_id, currency_code::text FROM currency"),
    ),
    _dimension(
        "dim_design",
        sources=("design",),
        columns=_columns("design_id int, design_name text, file_location text, file_name text"),
        size_rank=5,
        rebuild_sql=("SELECT design_id, design_name, file_location, file_name FROM design"),
    ),
    _dimension(
        "dim_counterparty",
        sources=("counterparty", "address"),
        columns=_columns(
            "counterparty_id int, counterparty_legal_name text, "
            "counterparty_legal_address_line_1 text, "
            "counterparty_legal_address_line_2 text null, "
            "counterparty_legal_district text null, counterparty_legal_city text, "
            "counterparty_legal_postal_code text, counterparty_legal_country text, "
            "counterparty_legal_phone_number text"
        ),
        size_rank=6,
        cascades=True,
        rebuild_sql=(
            "SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1, "
            "a.address_line_2, a.district, a.city, a.postal_code, a.country, a.phone FROM "
            "counterparty c JOIN address a ON a.address_id = c.legal_address_id"
        ),
    ),
    _dimension(
        "dim_payment_type",
        sources=("payment_type",),
        columns=_columns("payment_type_id int, payment_type_name text"),
        size_rank=10,
        rebuild_sql=("SELECT payment_type_id, payment_type_name::text FROM payment_type"),
    ),
    _dimension(
        "dim_transaction",
        sources=("transaction",),
        columns=_columns(
            "transaction_id int, transaction_type text, sales_order_id int null, "
            "purchase_order_id int null"
        ),
        size_rank=1,
        rebuild_sql=(
            "SELECT transaction_id, transaction_type::text, sales_order_id, "
            "purchase_order_id FROM transaction"
        ),
    ),
    _fact(
        "fact_sales_order",
        source="sales_order",
        record_key="sales_record_id",
        columns=_columns(
            "sales_staff_id int, counterparty_id int, units_sold int, unit_price money, "
            "currency_id int, design_id int, agreed_payment_date date, "
            "agreed_delivery_date date, agreed_delivery_location_id int"
        ),
        size_rank=3,
        references={
            "sales_staff_id": "dim_staff",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "design_id": "dim_design",
            "agreed_delivery_location_id": "dim_location",
        },
        rebuild_columns=(
            "staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id, "
            "agreed_payment_date::date, agreed_delivery_date::date, "
            "agreed_delivery_location_id"
        ),
    ),
    _fact(
        "fact_purchase_order",
        source="purchase_order",
        record_key="purchase_record_id",
        columns=_columns(
            "staff_id int, counterparty_id int, item_code text, item_quantity int, "
            "item_unit_price money, currency_id int, agreed_delivery_date date, "
            "agreed_payment_date date, agreed_delivery_location_id int"
        ),
        size_rank=4,
        references={
            "staff_id": "dim_staff",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "agreed_delivery_location_id": "dim_location",
        },
        rebuild_columns=(
            "staff_id, counterparty_id, item_code, item_quantity, item_unit_price, "
            "currency_id, agreed_delivery_date::date, agreed_payment_date::date, "
            "agreed_delivery_location_id"
        ),
    ),
    _fact(
        "fact_payment",
        source="payment",
        record_key="payment_record_id",
        columns=_columns(
            "transaction_id int, counterparty_id int, payment_amount money, "
            "currency_id int, payment_type_id int, paid bool, payment_date date"
        ),
        size_rank=2,
        references={
            "transaction_id": "dim_transaction",
            "counterparty_id": "dim_counterparty",
            "currency_id": "dim_currency",
            "payment_type_id": "dim_payment_type",
        },
        rebuild_columns=(
            "transaction_id, counterparty_id, payment_amount, currency_id, "
            "payment_type_id, paid, payment_date::date"
        ),
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
