"""Source values turned into the star's types exactly, or not at all.

Every value that changes type on its way to the warehouse passes through here: agreed
dates from ``YYYY-MM-DD`` text, numbers into the star's integer and ``decimal(10,2)``
columns, timestamps into a date and a time with milliseconds. Each conversion either
gives back a value that round-trips to the source's exactly or says why it cannot, so
transform rejects that row with the reason instead of loading another value.

Arrow alone is not enough: ``pyarrow.compute.strptime`` turns ``2024-02-30`` into the
1st of March and accepts year 0, which no calendar (and no PostgreSQL date) has.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

#: Four digits, a dash, two digits, a dash, two digits: ASCII only (``\\d`` would take
#: other scripts' digits, which ``int`` reads but which are not ISO text).
_ISO_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def date_or_problem(text: str | None) -> tuple[date | None, str | None]:
    """The calendar day ``text`` names in ``YYYY-MM-DD``, or why it names none.

    The problem completes a sentence that starts with the quoted value.

    Examples
    --------
    >>> date_or_problem("2024-02-29")
    (datetime.date(2024, 2, 29), None)
    >>> date_or_problem("2024-02-30")
    (None, 'is not a date: February 2024 has 29 days')
    >>> date_or_problem("2024-13-01")
    (None, 'is not a date: there is no month 13')
    >>> date_or_problem("31/12/2024")
    (None, 'is not a YYYY-MM-DD date')
    """
    match = _ISO_DATE.fullmatch(text) if text is not None else None
    if match is None:
        return None, "is not a YYYY-MM-DD date"
    year, month, day = (int(part) for part in match.groups())
    if year == 0:
        return None, "is not a date: there is no year 0"
    if not 1 <= month <= 12:
        return None, f"is not a date: there is no month {month}"
    days = calendar.monthrange(year, month)[1]
    if day == 0:
        return None, "is not a date: there is no day 0"
    if day > days:
        return None, f"is not a date: {_MONTHS[month - 1]} {year} has {days} days"
    return date(year, month, day), None


def quoted(name: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``name 'value'`` for each value (``name NULL`` for a null), to start a reason.

    Examples
    --------
    >>> quoted("paid", pa.array(["t", None])).to_pylist()
    ["paid 't'", 'paid NULL']
    """
    text = pc.cast(values, pa.string())
    return pc.if_else(
        pc.is_null(text),
        pa.scalar(f"{name} NULL"),
        pc.binary_join_element_wise(f"{name} '", text, "'", ""),
    )


def parse_iso_dates(texts: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    """Dates from ``YYYY-MM-DD`` text, and why each value that is no such date is not.

    Each distinct text is checked once (a batch has a few thousand dates at most), so
    the cost does not depend on how often a date repeats.

    Returns
    -------
    dates, problems
        ``date32`` values, null where the text is not a date; and a string array that
        is null where it is one and otherwise completes ``<name> '<text>' ...``.

    Examples
    --------
    >>> dates, problems = parse_iso_dates(pa.array(["2024-02-29", "2023-02-29", None]))
    >>> dates.to_pylist()
    [datetime.date(2024, 2, 29), None, None]
    >>> problems.to_pylist()
    [None, 'is not a date: February 2023 has 28 days', 'is not a YYYY-MM-DD date']
    """
    distinct = pc.unique(texts)
    checked = [date_or_problem(text) for text in distinct.to_pylist()]
    positions = pc.index_in(texts, value_set=distinct)
    dates = pc.take(pa.array([day for day, _ in checked], pa.date32()), positions)
    problems = pc.take(pa.array([problem for _, problem in checked], pa.string()), positions)
    return _combined(dates), _combined(problems)


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def type_name(kind: pa.DataType) -> str:
    """A star column type as the warehouse names it.

    Examples
    --------
    >>> type_name(pa.decimal128(10, 2)), type_name(pa.int32()), type_name(pa.time32("ms"))
    ('numeric(10,2)', 'integer', 'time(3)')
    """
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    names = {pa.int16(): "smallint", pa.int32(): "integer", pa.int64(): "bigint"}
    names |= {pa.time32("ms"): "time(3)", pa.date32(): "date", pa.bool_(): "boolean"}
    return names.get(kind, str(kind))


def exact_cast(
    values: pa.ChunkedArray | pa.Array, target: pa.DataType
) -> tuple[pa.Array, pa.Array | None]:
    """``values`` as ``target``, and a mask of the values that would not survive the cast.

    Arrow's safe cast refuses any loss (a decimal's digits, an integer's range, a time's
    microseconds) for the whole array at once; when it does, each distinct value is
    tried alone, and only those that fail are left out (null) and marked.

    Returns
    -------
    cast, lost
        The values as ``target`` (null where lost) and the mask, or None when every
        value survives.

    Examples
    --------
    >>> from decimal import Decimal
    >>> prices = pa.array([Decimal("3.940"), Decimal("3.945")], pa.decimal128(12, 3))
    >>> cast, lost = exact_cast(prices, pa.decimal128(10, 2))
    >>> cast.to_pylist(), lost.to_pylist()
    ([Decimal('3.94'), None], [False, True])
    """
    try:
        return _combined(pc.cast(values, target)), None
    except pa.ArrowInvalid:
        pass
    distinct = _combined(pc.unique(values))
    unfit = pc.take(distinct, pa.array(_unfit_positions(distinct, target), pa.int64()))
    lost = pc.fill_null(pc.is_in(values, value_set=unfit), False)
    kept = pc.if_else(lost, pa.scalar(None, values.type), values)
    return _combined(pc.cast(kept, target)), _combined(lost)


def _unfit_positions(values: pa.Array, target: pa.DataType, offset: int = 0) -> list[int]:
    """Where in ``values`` the ones the safe cast refuses are: halves cast whole, and only
    a half that is refused is split again, so a few bad values among many cost a few
    dozen casts, not one per value."""
    try:
        pc.cast(values, target)
    except pa.ArrowInvalid:
        if len(values) == 1:
            return [offset]
        half = len(values) // 2
        return _unfit_positions(values.slice(0, half), target, offset) + _unfit_positions(
            values.slice(half), target, offset + half
        )
    return []
