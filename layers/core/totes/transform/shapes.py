"""Pure functions from source-shaped Arrow tables to star-shaped ones.

Each warehouse table with gold files has one function here, named after the table, that
takes its source tables in the order :mod:`totes.tables` lists them
(:func:`shape_of`). No I/O here: :mod:`totes.transform.stage` reads the raw zone and the mirrors,
calls these, and writes the results. Inputs are Arrow tables typed like the
source (see :func:`totes.ingest.raw_rows.read_part`); outputs have exactly the
schemas of :data:`totes.warehouse.star.STAR_SCHEMAS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import pyarrow as pa
import pyarrow.compute as pc

from totes.findings import Finding, FindingKind, Stage, examples_of
from totes.key_runs import first_of_each_key, last_of_each_key
from totes.tables import WAREHOUSE
from totes.transform.currencies import currency_name
from totes.transform.values import exact_cast, parse_iso_dates, quoted, type_name
from totes.warehouse.star import STAR_SCHEMAS, TIME_MS

#: dim_staff.location when the department has none (the source allows NULL, the star does not).
UNKNOWN_LOCATION = "Unknown location"
#: dim_staff.department_name when the staff row's department is not known.
UNKNOWN_DEPARTMENT = "Unknown department"


def unknown_currency_name(code: str) -> str:
    """The placeholder name of a code ISO 4217 does not list.

    Examples
    --------
    >>> unknown_currency_name("XYZ")
    'Unknown currency (XYZ)'
    """
    return f"Unknown currency ({code})"


@dataclass
class Shaped:
    """A star table, the source rows that could not be shaped (with their reasons), and
    what a person should know about the rest (rejected rows by cause, placeholders used)."""

    table: pa.Table
    rejects: pa.Table | None = None
    findings: tuple[Finding, ...] = ()


def _finding(
    kind: FindingKind, target: str, detail: str, count: int, examples: Iterable[str] = ()
) -> Finding:
    return Finding(
        kind=kind,
        table=target,
        stage=Stage.TRANSFORM,
        detail=detail,
        count=count,
        examples=list(examples),
    )


def latest_versions(table: pa.Table, key: str) -> pa.Table:
    """Keep the newest version (by ``last_updated``) of each ``key``, ordered by key.

    Examples
    --------
    >>> rows = pa.table({"k": [1, 1, 2], "last_updated": [2, 3, 1], "v": ["a", "b", "c"]})
    >>> latest_versions(rows, "k").column("v").to_pylist()
    ['b', 'c']
    """
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([(key, "ascending"), ("last_updated", "ascending")])
    return ordered.filter(last_of_each_key(ordered, [key]))


def distinct_versions(table: pa.Table, key: str) -> pa.Table:
    """Drop repeated ``(key, last_updated)`` versions (a look-back re-read brings some).

    The first of equal versions is kept (the sort is stable).

    Examples
    --------
    >>> rows = pa.table({"k": [1, 1, 1], "last_updated": [2, 2, 3]})
    >>> distinct_versions(rows, "k").num_rows
    2
    """
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([(key, "ascending"), ("last_updated", "ascending")])
    return ordered.filter(first_of_each_key(ordered, [key, "last_updated"]))


#: The star's date and time columns, each the date or the time of day of a source timestamp.
_STAMP_PARTS: Final = {
    "created_date": "created_at",
    "created_time": "created_at",
    "last_updated_date": "last_updated",
    "last_updated_time": "last_updated",
}


@dataclass
class _Rejections:
    """The reasons a fact's rows cannot be shaped, gathered column by column."""

    target: str
    reasons: list[pa.Array] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def add(
        self, name: str, detail: str, problems: pa.Array, values: pa.ChunkedArray | pa.Array
    ) -> None:
        """Reject the rows whose ``problems`` entry is set: ``<name> '<value>' <problem>``."""
        bad = pc.is_valid(problems)
        count = pc.sum(bad).as_py() or 0
        if not count:
            return
        examples = examples_of(pc.filter(values, bad).to_pylist())
        self.findings.append(
            _finding(FindingKind.ROWS_REJECTED, self.target, detail, count, examples)
        )
        self.reasons.append(pc.binary_join_element_wise(quoted(name, values), problems, " "))

    def reason(self) -> pa.Array | None:
        """Each row's first reason (null for a row with none), or None when no row has one."""
        if not self.reasons:
            return None
        return pc.coalesce(*self.reasons)


def _problem_where(mask: pa.Array, problem: str) -> pa.Array:
    return pc.if_else(mask, pa.scalar(problem), pa.scalar(None, pa.string()))


def _fact(
    versions: pa.Table,
    target: str,
    renames: Mapping[str, str],
    text_dates: Iterable[str],
) -> Shaped:
    """Shape fact rows: split stamps, parse text dates, and convert every other column to
    the star's type; a row any of whose values does not convert exactly is rejected."""
    schema = STAR_SCHEMAS[target]
    if versions.num_rows == 0:
        return Shaped(schema.empty_table())
    rejections = _Rejections(target)
    columns: dict[str, pa.Array] = {}
    checked_for_null: set[str] = set()
    for star in schema:
        if star.name in text_dates:
            texts = versions.column(star.name)
            columns[star.name], problems = parse_iso_dates(texts)
            rejections.add(star.name, f"{star.name} is not a YYYY-MM-DD date", problems, texts)
            continue
        name = _STAMP_PARTS.get(star.name) or renames.get(star.name, star.name)
        values = versions.column(name)
        if star.name in _STAMP_PARTS:
            # The date part never loses anything; the time of day may (microseconds).
            to_convert = pc.cast(values, pa.time64("us") if star.type == TIME_MS else pa.date32())
        else:
            to_convert = values
        columns[star.name], lost = exact_cast(to_convert, star.type)
        unfit = f"does not fit the warehouse's {type_name(star.type)}"
        if lost is not None:
            rejections.add(name, f"{name} {unfit}", _problem_where(lost, unfit), values)
        # A timestamp feeds two star columns (its date and its time): checked once.
        if not star.nullable and name not in checked_for_null:
            checked_for_null.add(name)
            missing = pc.is_null(values)
            rejections.add(
                name,
                f"{name} is NULL: the warehouse needs a value",
                _problem_where(missing, "where the warehouse needs a value"),
                values,
            )
    reason = rejections.reason()
    shaped = pa.table(columns)
    if reason is None:
        return Shaped(shaped.cast(schema))
    bad = pc.is_valid(reason)
    rejects = versions.filter(bad).append_column("reject_reason", pc.filter(reason, bad))
    return Shaped(shaped.filter(pc.invert(bad)).cast(schema), rejects, tuple(rejections.findings))


def fact_sales_order(sales_orders: pa.Table) -> Shaped:
    """One fact row per version of a sales order; ``staff_id`` becomes ``sales_staff_id``."""
    return _fact(
        distinct_versions(sales_orders, "sales_order_id"),
        "fact_sales_order",
        {"sales_staff_id": "staff_id"},
        ("agreed_payment_date", "agreed_delivery_date"),
    )


def fact_purchase_order(purchase_orders: pa.Table) -> Shaped:
    """One fact row per version of a purchase order."""
    return _fact(
        distinct_versions(purchase_orders, "purchase_order_id"),
        "fact_purchase_order",
        {},
        ("agreed_delivery_date", "agreed_payment_date"),
    )


def fact_payment(payments: pa.Table) -> Shaped:
    """One fact row per version of a payment."""
    return _fact(
        distinct_versions(payments, "payment_id"),
        "fact_payment",
        {},
        ("payment_date",),
    )


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return [] if table is None else table.to_pylist()


def _star(target: str, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=STAR_SCHEMAS[target])


def _or_placeholder(value: str | None, placeholder: str) -> str:
    # Only NULL is unknown: an empty string is a value the source chose to store.
    return placeholder if value is None else value


def dim_staff(staff: pa.Table, departments: pa.Table) -> Shaped:
    """Every staff member with their department's name and location (type 1)."""
    by_id = {
        row["department_id"]: row for row in _rows(latest_versions(departments, "department_id"))
    }
    rows, orphans = [], []
    for person in _rows(latest_versions(staff, "staff_id")):
        department = by_id.get(person["department_id"], {})
        if not department:
            orphans.append(person["department_id"])
        rows.append(
            {
                "staff_id": person["staff_id"],
                "first_name": person["first_name"],
                "last_name": person["last_name"],
                "department_name": _or_placeholder(
                    department.get("department_name"), UNKNOWN_DEPARTMENT
                ),
                "location": _or_placeholder(department.get("location"), UNKNOWN_LOCATION),
                "email_address": person["email_address"],
            }
        )
    findings: tuple[Finding, ...] = ()
    if orphans:
        findings = (
            _finding(
                FindingKind.UNKNOWN_REFERENCE,
                "dim_staff",
                f"staff whose department is not in department: named {UNKNOWN_DEPARTMENT!r} "
                "until it arrives",
                len(orphans),
                (f"department_id {department_id}" for department_id in orphans),
            ),
        )
    return Shaped(_star("dim_staff", rows), findings=findings)


_LOCATION_FIELDS = (
    "address_line_1",
    "address_line_2",
    "district",
    "city",
    "postal_code",
    "country",
    "phone",
)


def dim_location(addresses: pa.Table) -> Shaped:
    """Addresses as locations (``address_id`` becomes ``location_id``)."""
    rows = [
        {"location_id": row["address_id"], **{k: row[k] for k in _LOCATION_FIELDS}}
        for row in _rows(latest_versions(addresses, "address_id"))
    ]
    return Shaped(_star("dim_location", rows))


def dim_counterparty(counterparties: pa.Table, addresses: pa.Table) -> Shaped:
    """Counterparties with their legal address spelled out (type 1)."""
    by_id = {row["address_id"]: row for row in _rows(latest_versions(addresses, "address_id"))}
    rows, orphans = [], []
    for party in _rows(latest_versions(counterparties, "counterparty_id")):
        address = by_id.get(party["legal_address_id"])
        if address is None:
            orphans.append(party["counterparty_id"])
            continue
        rows.append(
            {
                "counterparty_id": party["counterparty_id"],
                "counterparty_legal_name": party["counterparty_legal_name"],
                "counterparty_legal_address_line_1": address["address_line_1"],
                "counterparty_legal_address_line_2": address["address_line_2"],
                "counterparty_legal_district": address["district"],
                "counterparty_legal_city": address["city"],
                "counterparty_legal_postal_code": address["postal_code"],
                "counterparty_legal_country": address["country"],
                "counterparty_legal_phone_number": address["phone"],
            }
        )
    findings: tuple[Finding, ...] = ()
    if orphans:
        findings = (
            _finding(
                FindingKind.UNKNOWN_REFERENCE,
                "dim_counterparty",
                "counterparties whose legal address is not in address: left out until it arrives",
                len(orphans),
                (f"counterparty_id {counterparty_id}" for counterparty_id in orphans),
            ),
        )
    return Shaped(_star("dim_counterparty", rows), findings=findings)


def dim_currency(currencies: pa.Table) -> Shaped:
    """Currencies named from ISO 4217; a code ISO does not list gets a placeholder and a warning."""
    rows, findings = [], []
    for row in _rows(latest_versions(currencies, "currency_id")):
        code = row["currency_code"]
        name = currency_name(code)
        if name is None:
            name = unknown_currency_name(code)
            findings.append(
                _finding(
                    FindingKind.UNKNOWN_CODE,
                    "dim_currency",
                    f"currency code {code!r} is not in ISO 4217: named {name!r}",
                    1,
                )
            )
        rows.append(
            {"currency_id": row["currency_id"], "currency_code": code, "currency_name": name}
        )
    return Shaped(_star("dim_currency", rows), findings=tuple(findings))


def dim_design(designs: pa.Table) -> Shaped:
    """Designs, latest version of each."""
    latest = latest_versions(designs, "design_id")
    return Shaped(latest.select(STAR_SCHEMAS["dim_design"].names).cast(STAR_SCHEMAS["dim_design"]))


def dim_payment_type(payment_types: pa.Table) -> Shaped:
    """Payment types, latest version of each."""
    latest = latest_versions(payment_types, "payment_type_id")
    schema = STAR_SCHEMAS["dim_payment_type"]
    return Shaped(latest.select(schema.names).cast(schema))


def dim_transaction(transactions: pa.Table) -> Shaped:
    """Transactions, latest version of each."""
    latest = latest_versions(transactions, "transaction_id")
    schema = STAR_SCHEMAS["dim_transaction"]
    return Shaped(latest.select(schema.names).cast(schema))


def shape_of(table: str) -> Callable[..., Shaped]:
    """The shape function of a warehouse table: the function of this module named after it.

    Examples
    --------
    >>> shape_of("dim_design").__name__
    'dim_design'
    >>> shape_of("dim_date")
    Traceback (most recent call last):
    ...
    ValueError: dim_date has no shape function: load derives it
    """
    if not WAREHOUSE[table].has_gold_files:
        raise ValueError(f"{table} has no shape function: load derives it")
    shape = globals()[table]
    return cast("Callable[..., Shaped]", shape)
