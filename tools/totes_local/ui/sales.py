"""The client's sales questions, as SQL over the lake (the path ``totes lake query`` takes).

Each question is one statement of plain SQL that DuckDB (the lake on one machine),
Athena and PostgreSQL (the warehouse) all run alike, so a chart's SQL can be copied
into any of them. Facts keep every version of a source row: each question reads the
current version of each order or payment (the newest ``last_updated``). Filters
become literals in the SQL, after checking that they are a date and a currency code,
so the statement shown is the statement run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from string import Template
from typing import Any

from totes.errors import TotesError
from totes_local.lake import query_each
from totes_local.stacks import StackOutputs
from totes_local.ui.charts import bar_chart, line_chart

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
#: Rankings show this many rows.
TOP = 15


class SalesFilterError(TotesError):
    """A filter that is not a date or a currency code."""


@dataclass(frozen=True)
class SalesFilters:
    """What the sales page narrows every question to."""

    first_day: date | None = None
    last_day: date | None = None
    currency: str | None = None

    @classmethod
    def parse(cls, values: dict[str, str]) -> SalesFilters:
        """Filters from a query string's ``from``, ``to`` and ``currency``.

        Raises
        ------
        SalesFilterError
            A date that is not ``YYYY-MM-DD`` or a currency that is not three capitals.

        Examples
        --------
        >>> SalesFilters.parse({"from": "2024-01-01", "currency": "GBP"}).currency
        'GBP'
        """

        def day(key: str) -> date | None:
            text = values.get(key, "").strip()
            if not text:
                return None
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise SalesFilterError(f"{key} must be a date, YYYY-MM-DD: {text!r}") from None

        currency = values.get("currency", "").strip().upper() or None
        if currency is not None and not _CURRENCY_CODE.fullmatch(currency):
            raise SalesFilterError(f"currency must be a three-letter code: {currency!r}")
        return cls(day("from"), day("to"), currency)

    def conditions(self, day_column: str) -> str:
        """The filters as a ``WHERE`` clause on a date column and ``c.currency_code``.

        Examples
        --------
        >>> SalesFilters(date(2024, 1, 1), None, "GBP").conditions("o.created_date")
        "WHERE o.created_date >= DATE '2024-01-01' AND c.currency_code = 'GBP'"
        """
        found = []
        if self.first_day:
            found.append(f"{day_column} >= DATE '{self.first_day.isoformat()}'")
        if self.last_day:
            found.append(f"{day_column} <= DATE '{self.last_day.isoformat()}'")
        if self.currency:
            found.append(f"c.currency_code = '{self.currency}'")
        return ("WHERE " + " AND ".join(found)) if found else ""


#: The newest version of each row of a fact table, as a ``WITH`` entry.
_CURRENT_VERSIONS = Template(
    "$name AS (SELECT * FROM (SELECT f.*, row_number() OVER (PARTITION BY $key "
    "ORDER BY f.last_updated_date DESC, f.last_updated_time DESC) AS version_rank "
    "FROM $table f) AS ranked WHERE version_rank = 1)"
)
_ORDERS = _CURRENT_VERSIONS.substitute(
    name="current_orders", table="fact_sales_order", key="sales_order_id"
)
_PURCHASES = _CURRENT_VERSIONS.substitute(
    name="current_purchases", table="fact_purchase_order", key="purchase_order_id"
)
_PAYMENTS = _CURRENT_VERSIONS.substitute(
    name="current_payments", table="fact_payment", key="payment_id"
)
# The statements are templates: ``$where`` takes SalesFilters.conditions, which holds
# nothing but a checked date and a checked currency code.
_REVENUE_BY_MONTH = Template("""WITH $orders
SELECT d.year, d.month, c.currency_code, count(*) AS orders,
       sum(o.units_sold * o.unit_price) AS revenue
FROM current_orders o
JOIN dim_date d ON d.date_id = o.created_date
JOIN dim_currency c ON c.currency_id = o.currency_id
$where
GROUP BY d.year, d.month, c.currency_code
ORDER BY d.year, d.month, c.currency_code""")
_BY_DESIGN = Template("""WITH $orders
SELECT g.design_name, c.currency_code, CAST(sum(o.units_sold) AS bigint) AS units,
       sum(o.units_sold * o.unit_price) AS revenue
FROM current_orders o
JOIN dim_design g ON g.design_id = o.design_id
JOIN dim_currency c ON c.currency_id = o.currency_id
$where
GROUP BY g.design_id, g.design_name, c.currency_code
ORDER BY revenue DESC, g.design_name, c.currency_code
LIMIT $top""")
_BY_PLACE = Template("""WITH $orders
SELECT p.counterparty_legal_country AS country, p.counterparty_legal_city AS city,
       c.currency_code, count(*) AS orders, sum(o.units_sold * o.unit_price) AS revenue
FROM current_orders o
JOIN dim_counterparty p ON p.counterparty_id = o.counterparty_id
JOIN dim_currency c ON c.currency_id = o.currency_id
$where
GROUP BY p.counterparty_legal_country, p.counterparty_legal_city, c.currency_code
ORDER BY revenue DESC, country, city, c.currency_code
LIMIT $top""")
_BY_STAFF = Template("""WITH $orders
SELECT s.first_name || ' ' || s.last_name AS staff, s.department_name, c.currency_code,
       count(*) AS orders, sum(o.units_sold * o.unit_price) AS revenue
FROM current_orders o
JOIN dim_staff s ON s.staff_id = o.sales_staff_id
JOIN dim_currency c ON c.currency_id = o.currency_id
$where
GROUP BY s.staff_id, s.first_name, s.last_name, s.department_name, c.currency_code
ORDER BY revenue DESC, staff, c.currency_code
LIMIT $top""")
_PURCHASES_AND_PAYMENTS = Template("""WITH $purchases,
$payments
SELECT d.year, d.month, 'purchase orders' AS kind, count(*) AS records,
       sum(u.item_quantity * u.item_unit_price) AS amount
FROM current_purchases u
JOIN dim_date d ON d.date_id = u.created_date
JOIN dim_currency c ON c.currency_id = u.currency_id
$purchases_where
GROUP BY d.year, d.month
UNION ALL
SELECT d.year, d.month, 'payments' AS kind, count(*) AS records,
       sum(y.payment_amount) AS amount
FROM current_payments y
JOIN dim_date d ON d.date_id = y.payment_date
JOIN dim_currency c ON c.currency_id = y.currency_id
$payments_where
GROUP BY d.year, d.month
ORDER BY 1, 2, 3""")


def _orders_statement(template: Template) -> Callable[[SalesFilters], str]:
    """A question over the current sales orders, filtered on the day they were created."""

    def statement(filters: SalesFilters) -> str:
        return template.substitute(
            orders=_ORDERS, where=filters.conditions("o.created_date"), top=TOP
        )

    return statement


def _purchases_and_payments(filters: SalesFilters) -> str:
    return _PURCHASES_AND_PAYMENTS.substitute(
        purchases=_PURCHASES,
        payments=_PAYMENTS,
        purchases_where=filters.conditions("u.created_date"),
        payments_where=filters.conditions("y.payment_date"),
    )


Rows = list[dict[str, Any]]


def _month(row: dict[str, Any]) -> str:
    return f"{int(row['year']):04d}-{int(row['month']):02d}"


def _over_months(rows: Rows, series_column: str, value_column: str, label: str) -> str:
    months = sorted({_month(row) for row in rows})
    series: dict[str, list[Decimal | None]] = {}
    for row in rows:
        points = series.setdefault(str(row[series_column]), [None] * len(months))
        points[months.index(_month(row))] = row[value_column]
    return line_chart(months, series, label=label)


def _ranking(rows: Rows, name: Callable[[dict[str, Any]], str], measures: Sequence[str]) -> str:
    labels = [f"{name(row)} ({row['currency_code']})" for row in rows]
    return bar_chart(
        labels, {measure: [row[measure] for row in rows] for measure in measures}, label="ranking"
    )


@dataclass(frozen=True)
class Question:
    """One chart of the sales page: what it shows, its SQL, and how it is drawn."""

    key: str
    title: str
    shows: str
    sql: Callable[[SalesFilters], str]
    draw: Callable[[Rows], str]


QUESTIONS: tuple[Question, ...] = (
    Question(
        "revenue-by-month",
        "Revenue by month and currency",
        "Units sold times unit price of each sales order's current version, by the month "
        "the order was created, one line per currency.",
        _orders_statement(_REVENUE_BY_MONTH),
        lambda rows: _over_months(rows, "currency_code", "revenue", "revenue by month"),
    ),
    Question(
        "by-design",
        "Units and revenue by design",
        f"The {TOP} designs (and currencies) with the most revenue: units sold and revenue.",
        _orders_statement(_BY_DESIGN),
        lambda rows: _ranking(rows, lambda row: str(row["design_name"]), ("units", "revenue")),
    ),
    Question(
        "by-place",
        "Sales by counterparty country and city",
        f"Orders and revenue by the city and country of the counterparty's legal address "
        f"(the top {TOP}).",
        _orders_statement(_BY_PLACE),
        lambda rows: _ranking(
            rows, lambda row: f"{row['city']}, {row['country']}", ("orders", "revenue")
        ),
    ),
    Question(
        "by-staff",
        "Sales staff by revenue",
        f"The {TOP} members of staff whose orders brought the most revenue, with their orders.",
        _orders_statement(_BY_STAFF),
        lambda rows: _ranking(rows, lambda row: str(row["staff"]), ("revenue", "orders")),
    ),
    Question(
        "purchases-and-payments",
        "Purchase orders and payments over time",
        "Per month: the value of purchase orders created (quantity times unit price, current "
        "versions) and the amount of payments due that month (every payment type).",
        _purchases_and_payments,
        lambda rows: _over_months(rows, "kind", "amount", "purchase orders and payments"),
    ),
)

_BOUNDS_SQL = (
    "SELECT min(created_date) AS first_day, max(created_date) AS last_day FROM fact_sales_order"
)
_CURRENCIES_SQL = "SELECT currency_code FROM dim_currency ORDER BY currency_code"


def _cell(value: Any) -> Any:
    """A result's value as JSON: exact decimals and dates as text, numbers as they are."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def answer(stack: StackOutputs, filters: SalesFilters) -> dict[str, Any]:
    """Every question answered from the lake under the filters, with its SQL and chart.

    Examples
    --------
    >>> [chart["key"] for chart in answer(stack, SalesFilters())["charts"]]  # doctest: +SKIP
    ['revenue-by-month', 'by-design', 'by-place', 'by-staff', 'purchases-and-payments']
    """
    statements = [question.sql(filters) for question in QUESTIONS]
    *results, bounds, currencies = query_each(stack, [*statements, _BOUNDS_SQL, _CURRENCIES_SQL])
    charts = []
    for question, statement, result in zip(QUESTIONS, statements, results, strict=True):
        rows = result.to_pylist()
        charts.append(
            {
                "key": question.key,
                "title": question.title,
                "shows": question.shows,
                "sql": statement,
                "columns": result.column_names,
                "rows": [[_cell(row[column]) for column in result.column_names] for row in rows],
                "svg": question.draw(rows) if rows else "",
            }
        )
    (bound,) = bounds.to_pylist() or [{"first_day": None, "last_day": None}]
    return {
        "filters": {
            "from": filters.first_day.isoformat() if filters.first_day else "",
            "to": filters.last_day.isoformat() if filters.last_day else "",
            "currency": filters.currency or "",
        },
        "first_day": _cell(bound["first_day"]),
        "last_day": _cell(bound["last_day"]),
        "currencies": [row["currency_code"] for row in currencies.to_pylist()],
        "charts": charts,
    }
