"""Source values into star types: exact, or rejected with a reason (never another value)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from totes.transform.values import exact_cast, parse_iso_dates

#: Text shaped like YYYY-MM-DD with any numbers in it, most of them no calendar day.
_DATE_SHAPED = st.builds(
    "{:04d}-{:02d}-{:02d}".format,
    st.integers(0, 9999),
    st.integers(0, 99),
    st.integers(0, 99),
)
#: Anything at all, and ISO dates with a character changed, added or in another script.
_ANY_TEXT = st.one_of(
    st.text(max_size=12),
    _DATE_SHAPED,
    st.dates().map(date.isoformat),
    st.dates().map(lambda day: day.isoformat().replace("0", "\u0660")),
    st.dates().map(lambda day: f"{day.isoformat()}\n"),
    st.none(),
)


@given(st.lists(_ANY_TEXT, max_size=40))
@example(["2024-02-30", "2024-02-29", "2023-02-29", "0000-01-01", "2024-04-31"])
def test_a_text_date_is_parsed_to_the_day_it_spells_or_rejected_never_another_day(
    texts: list[str | None],
) -> None:
    # Given any texts, repeated or not, in one batch
    # When they are parsed
    dates, problems = parse_iso_dates(pa.chunked_array([texts], pa.string()))

    # Then each is either the date whose ISO text it is, or rejected with a problem
    for text, day, problem in zip(texts, dates.to_pylist(), problems.to_pylist(), strict=True):
        if day is None:
            assert problem, text
        else:
            assert (day.isoformat(), problem) == (text, None)


@given(st.lists(st.dates(), min_size=1, max_size=40))
def test_every_calendar_day_written_in_iso_is_accepted(days: list[date]) -> None:
    # Given real days of the calendar (year 1 to 9999) written as YYYY-MM-DD
    # When they are parsed
    dates, problems = parse_iso_dates(pa.array([day.isoformat() for day in days]))

    # Then every one is read as itself
    assert dates.to_pylist() == days
    assert problems.null_count == len(days)


@given(
    st.lists(
        st.decimals(min_value=-(10**12), max_value=10**12, places=3, allow_nan=False),
        min_size=1,
        max_size=30,
    )
)
def test_a_number_cast_into_the_star_type_keeps_its_value_or_is_marked_lost(
    amounts: list[Decimal],
) -> None:
    # Given amounts of a wider numeric than the warehouse's numeric(10,2)
    values = pa.array(amounts, pa.decimal128(16, 3))

    # When they are cast
    cast, lost = exact_cast(values, pa.decimal128(10, 2))

    # Then every value kept equals its source, and every value changed is marked lost
    marks = lost.to_pylist() if lost is not None else [False] * len(amounts)
    for amount, kept, is_lost in zip(amounts, cast.to_pylist(), marks, strict=True):
        fits = amount == amount.quantize(Decimal("0.01")) and abs(amount) < 10**8
        assert (kept == amount, is_lost) == (fits, not fits)
