"""Runs of equal keys: the answers Arrow's group_by gives, without importing Acero; and
consecutive numbers, as Python's range gives them."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.key_runs import consecutive, first_of_each_key, has_repeated_key, last_of_each_key

#: Small value ranges, so that keys repeat often; None stands for SQL NULL.
_KEY_PARTS = st.one_of(st.none(), st.integers(0, 3))
_ROWS = st.lists(st.tuples(_KEY_PARTS, _KEY_PARTS), max_size=30)


def _table(rows: list[tuple[int | None, int | None]]) -> pa.Table:
    return pa.table(
        {
            "a": pa.array([a for a, _ in rows], pa.int64()),
            "b": pa.array([b for _, b in rows], pa.int64()),
            "position": pa.array(range(len(rows)), pa.int64()),
        }
    )


@given(_ROWS)
def test_a_repeated_key_is_found_exactly_when_two_rows_share_it(
    rows: list[tuple[int | None, int | None]],
) -> None:
    # Given rows in any order, NULLs included
    table = _table(rows)
    # When asked whether a key repeats, Then the answer is the one a set of keys gives
    assert has_repeated_key(table, ["a", "b"]) == (len(set(rows)) < len(rows))
    assert has_repeated_key(table, ["a"]) == (len({a for a, _ in rows}) < len(rows))


@given(_ROWS)
def test_the_first_and_last_row_of_each_key_are_kept_in_sorted_order(
    rows: list[tuple[int | None, int | None]],
) -> None:
    # Given rows sorted (stably) by a two-column key
    ordered = _table(rows).sort_by([("a", "ascending"), ("b", "ascending")])
    keys = list(zip(ordered.column("a").to_pylist(), ordered.column("b").to_pylist(), strict=True))
    positions = ordered.column("position").to_pylist()
    # When the first and the last row of each key are kept
    first = ordered.filter(first_of_each_key(ordered, ["a", "b"]))
    last = ordered.filter(last_of_each_key(ordered, ["a", "b"]))
    # Then each key keeps one row, its earliest and its latest, in the sorted order
    expected_first: dict[tuple[int | None, int | None], int] = {}
    expected_last: dict[tuple[int | None, int | None], int] = {}
    for key, position in zip(keys, positions, strict=True):
        expected_first.setdefault(key, position)
        expected_last[key] = position
    assert first.column("position").to_pylist() == list(expected_first.values())
    assert last.column("position").to_pylist() == list(expected_last.values())


def test_no_row_and_one_row_have_no_repeat_and_keep_themselves() -> None:
    empty, single = _table([]), _table([(1, None)])
    assert not has_repeated_key(empty, ["a"])
    assert not has_repeated_key(single, ["a", "b"])
    assert empty.filter(last_of_each_key(empty, ["a"])).num_rows == 0
    assert single.filter(first_of_each_key(single, ["a", "b"])).num_rows == 1


def test_the_answers_come_without_importing_acero() -> None:
    # Given a new interpreter, as a new Lambda environment is
    probe = (
        "import sys, pyarrow as pa\n"
        "from totes.key_runs import has_repeated_key, last_of_each_key\n"
        "t = pa.table({'k': [2, 1, 2]}).sort_by([('k', 'ascending')])\n"
        "assert has_repeated_key(t, ['k']) and t.filter(last_of_each_key(t, ['k'])).num_rows == 2\n"
        "print(sorted(m for m in sys.modules if 'acero' in m or 'dataset' in m))\n"
    )
    # When it answers both questions
    loaded = subprocess.run(  # noqa: S603 (this interpreter running the probe above)
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    # Then neither Acero nor the dataset module was imported
    assert loaded.strip() == "[]"


_KINDS = st.sampled_from([pa.int32(), pa.int64()])
_INT32 = st.integers(-(2**31), 2**31 - 1)


@given(first=_INT32, count=st.integers(0, 300), kind=_KINDS)
def test_consecutive_numbers_are_the_range_they_stand_for(
    first: int, count: int, kind: pa.DataType
) -> None:
    # Given a first number and a count whose range fits the type
    if first + count - 1 > 2**31 - 1 and kind == pa.int32():
        first = 2**31 - count
    # When they are numbered in Arrow
    numbers = consecutive(first, count, kind)
    # Then they are the array Python's range would make: same type, values, no nulls
    assert numbers.equals(pa.array(range(first, first + count), kind))


def test_consecutive_numbers_beyond_their_type_are_refused() -> None:
    # Given record keys reserved up to the last an int32 holds
    # When two more are numbered from the last one
    # Then the numbers are refused, not wrapped around to negative keys
    with pytest.raises(pa.ArrowInvalid, match="overflow"):
        consecutive(2**31 - 1, 2, pa.int32())
