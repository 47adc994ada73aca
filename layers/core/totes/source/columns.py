"""The columns of each totesys table as the pipeline expects them (DESIGN.md section 6).

Each column has a *kind*: the family of PostgreSQL types the transforms can read it
as (a ``varchar(3)`` and a ``text`` are both text; an ``integer`` and a ``bigint``
both integers). Ingest compares every batch's columns with this contract before it
writes anything (:func:`schema_drift`):

- a column the contract does not know is kept in the raw zone and reported;
- a column that is gone, or whose kind changed, stops the batch with
  :class:`~totes.errors.SourceSchemaDriftError` when a transform needs it, and is
  only reported when none does (:data:`OPTIONAL_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class ColumnKind(StrEnum):
    """Families of source types that read the same way in the pipeline."""

    INTEGER = "integer"
    TEXT = "text"
    NUMERIC = "numeric"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"


#: information_schema ``data_type`` (enums reported as ``enum``) -> kind.
_KIND_OF_TYPE: Final[dict[str, ColumnKind]] = {
    "smallint": ColumnKind.INTEGER,
    "integer": ColumnKind.INTEGER,
    "bigint": ColumnKind.INTEGER,
    "text": ColumnKind.TEXT,
    "character varying": ColumnKind.TEXT,
    "character": ColumnKind.TEXT,
    "enum": ColumnKind.TEXT,
    "numeric": ColumnKind.NUMERIC,
    "timestamp without time zone": ColumnKind.TIMESTAMP,
    "timestamp with time zone": ColumnKind.TIMESTAMP,
    "boolean": ColumnKind.BOOLEAN,
}

_I, _T, _N, _TS, _B = (
    ColumnKind.INTEGER,
    ColumnKind.TEXT,
    ColumnKind.NUMERIC,
    ColumnKind.TIMESTAMP,
    ColumnKind.BOOLEAN,
)
_AUDIT = {"created_at": _TS, "last_updated": _TS}

#: Every expected column of every source table, in table order, with its kind.
SOURCE_COLUMN_KINDS: Final[dict[str, dict[str, ColumnKind]]] = {
    "address": {
        "address_id": _I,
        "address_line_1": _T,
        "address_line_2": _T,
        "district": _T,
        "city": _T,
        "postal_code": _T,
        "country": _T,
        "phone": _T,
        **_AUDIT,
    },
    "counterparty": {
        "counterparty_id": _I,
        "counterparty_legal_name": _T,
        "legal_address_id": _I,
        "commercial_contact": _T,
        "delivery_contact": _T,
        **_AUDIT,
    },
    "currency": {"currency_id": _I, "currency_code": _T, **_AUDIT},
    "department": {
        "department_id": _I,
        "department_name": _T,
        "location": _T,
        "manager": _T,
        **_AUDIT,
    },
    "design": {
        "design_id": _I,
        "design_name": _T,
        "file_location": _T,
        "file_name": _T,
        **_AUDIT,
    },
    "payment_type": {"payment_type_id": _I, "payment_type_name": _T, **_AUDIT},
    "staff": {
        "staff_id": _I,
        "first_name": _T,
        "last_name": _T,
        "department_id": _I,
        "email_address": _T,
        **_AUDIT,
    },
    "sales_order": {
        "sales_order_id": _I,
        "design_id": _I,
        "staff_id": _I,
        "counterparty_id": _I,
        "units_sold": _I,
        "unit_price": _N,
        "currency_id": _I,
        "agreed_delivery_date": _T,
        "agreed_payment_date": _T,
        "agreed_delivery_location_id": _I,
        **_AUDIT,
    },
    "purchase_order": {
        "purchase_order_id": _I,
        "staff_id": _I,
        "counterparty_id": _I,
        "item_code": _T,
        "item_quantity": _I,
        "item_unit_price": _N,
        "currency_id": _I,
        "agreed_delivery_date": _T,
        "agreed_payment_date": _T,
        "agreed_delivery_location_id": _I,
        **_AUDIT,
    },
    "transaction": {
        "transaction_id": _I,
        "transaction_type": _T,
        "sales_order_id": _I,
        "purchase_order_id": _I,
        **_AUDIT,
    },
    "payment": {
        "payment_id": _I,
        "transaction_id": _I,
        "counterparty_id": _I,
        "payment_amount": _N,
        "currency_id": _I,
        "payment_type_id": _I,
        "paid": _B,
        "payment_date": _T,
        "company_ac_number": _I,
        "counterparty_ac_number": _I,
        **_AUDIT,
    },
}

#: The columns of each table, in order (the names of :data:`SOURCE_COLUMN_KINDS`).
SOURCE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    table: tuple(columns) for table, columns in SOURCE_COLUMN_KINDS.items()
}

#: Columns no transform reads: losing one is reported, not fatal. Dimensions never
#: read ``created_at``; the facts do (it becomes ``created_date`` and ``created_time``).
OPTIONAL_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "address": frozenset({"created_at"}),
    "counterparty": frozenset({"commercial_contact", "delivery_contact", "created_at"}),
    "currency": frozenset({"created_at"}),
    "department": frozenset({"manager", "created_at"}),
    "design": frozenset({"created_at"}),
    "payment_type": frozenset({"created_at"}),
    "staff": frozenset({"created_at"}),
    "transaction": frozenset({"created_at"}),
    "payment": frozenset({"company_ac_number", "counterparty_ac_number"}),
}


def kind_of(data_type: str) -> ColumnKind | None:
    """The kind of an information_schema type, or None for a type the pipeline cannot read.

    Examples
    --------
    >>> kind_of("character varying"), kind_of("jsonb")
    (<ColumnKind.TEXT: 'text'>, None)
    """
    return _KIND_OF_TYPE.get(data_type)


@dataclass(frozen=True)
class SchemaDrift:
    """How a source table's columns differ from the contract.

    ``missing`` and ``retyped`` list only the columns a transform needs (the batch must
    stop); ``missing_optional`` and ``retyped_optional`` the ones none reads.
    """

    table: str
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    retyped: dict[str, str] = field(default_factory=dict)
    missing_optional: list[str] = field(default_factory=list)
    retyped_optional: dict[str, str] = field(default_factory=dict)

    @property
    def broken(self) -> int:
        """How many columns a transform needs are gone or of another kind."""
        return len(self.missing) + len(self.retyped)

    @property
    def breaks_transforms(self) -> bool:
        """Whether a column a transform needs is gone or of another kind."""
        return bool(self.broken)

    def describe_breakage(self) -> str:
        """What breaks, for the error message: which columns, and what changed.

        Examples
        --------
        >>> SchemaDrift("sales_order", missing=["units_sold"],
        ...     retyped={"unit_price": "text instead of numeric"}).describe_breakage()
        'sales_order lacks units_sold; sales_order.unit_price is text instead of numeric'
        """
        problems = []
        if self.missing:
            problems.append(f"{self.table} lacks {', '.join(self.missing)}")
        problems.extend(
            f"{self.table}.{column} is {change}" for column, change in self.retyped.items()
        )
        return "; ".join(problems)


def schema_drift(table: str, columns: dict[str, str]) -> SchemaDrift:
    """Compare a table's columns (name -> information_schema type) with the contract.

    Examples
    --------
    >>> drift = schema_drift("currency", {"currency_id": "integer", "currency_code": "text",
    ...     "last_updated": "timestamp without time zone", "symbol": "text"})
    >>> drift.unexpected, drift.missing, drift.missing_optional, drift.breaks_transforms
    (['symbol'], [], ['created_at'], False)
    >>> schema_drift("currency", {"currency_id": "text"}).retyped
    {'currency_id': 'text instead of integer'}
    """
    expected = SOURCE_COLUMN_KINDS.get(table, {})
    optional = OPTIONAL_COLUMNS.get(table, frozenset())
    drift = SchemaDrift(table, unexpected=[name for name in columns if name not in expected])
    for name, kind in expected.items():
        missing, retyped = (
            (drift.missing_optional, drift.retyped_optional)
            if name in optional
            else (drift.missing, drift.retyped)
        )
        if name not in columns:
            missing.append(name)
            continue
        found = kind_of(columns[name])
        if found is not kind:
            retyped[name] = f"{found or columns[name]} instead of {kind}"
    return drift
