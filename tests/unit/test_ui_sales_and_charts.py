"""The console's sales filters and SVG charts, without a browser or a deployment."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from xml.etree import ElementTree

import pytest

from totes_local.ui.charts import bar_chart, column_chart, format_number, line_chart
from totes_local.ui.sales import QUESTIONS, SalesFilterError, SalesFilters


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"currency": "GBP' OR '1'='1"}, "currency must be a three-letter code"),
        ({"from": "2024-02-30"}, "from must be a date"),
        ({"to": "yesterday"}, "to must be a date"),
    ],
)
def test_a_filter_that_is_not_a_date_or_a_currency_code_is_refused(
    values: dict[str, str], problem: str
) -> None:
    # Given a query string a person (or anyone) typed
    # When it is read as the sales page's filters
    # Then it is refused, saying which filter is wrong, before any SQL is made
    with pytest.raises(SalesFilterError, match=problem):
        SalesFilters.parse(values)


def test_filters_narrow_every_question_to_the_period_and_currency() -> None:
    # Given a period and a currency, typed in lower case with spaces
    filters = SalesFilters.parse({"from": " 2024-01-01 ", "to": "2024-03-31", "currency": "gbp"})

    # When each question's SQL is made
    statements = [question.sql(filters) for question in QUESTIONS]

    # Then each reads only that period and that currency, as literals a reader can copy
    assert filters == SalesFilters(date(2024, 1, 1), date(2024, 3, 31), "GBP")
    for statement in statements:
        assert ">= DATE '2024-01-01'" in statement
        assert "<= DATE '2024-03-31'" in statement
        assert "c.currency_code = 'GBP'" in statement
        # And each order or payment counts once, in its current version
        assert "row_number() OVER (PARTITION BY" in statement


def test_no_filter_reads_the_whole_history() -> None:
    # Given no filter
    # When the questions' SQL is made
    # Then none of it narrows anything
    for question in QUESTIONS:
        assert "WHERE" not in question.sql(SalesFilters()).split("AS ranked WHERE")[-1]


def test_charts_are_well_formed_svg_whatever_their_labels_hold() -> None:
    # Given labels holding characters that mean something in XML
    label = "O'Keefe & <Sons>"

    # When each kind of chart is drawn
    drawn = [
        line_chart(["2024-01", "2024-02"], {label: [Decimal("1.50"), None]}, label=label),
        column_chart([label], {"a": [1], "b": [2]}, label=label, stacked=True),
        bar_chart([label], {"revenue": [Decimal("12345.60")]}, label=label),
    ]

    # Then each parses as XML and says the label and the exact value in its text
    for svg in drawn:
        text = "".join(ElementTree.fromstring(svg).itertext())  # noqa: S314 (drawn just above)
        assert label in text
    assert "12,345.60" in drawn[2]
    assert format_number(3) == "3"
