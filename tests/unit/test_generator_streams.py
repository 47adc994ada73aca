"""Pure properties of the synthetic data: no database involved."""

from __future__ import annotations

import random
from datetime import date
from itertools import islice, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes_local.source.generator import (
    EvenlySpread,
    Volumes,
    orders_by_time,
    purchase_orders,
    sales_orders,
)


@given(
    rate=st.floats(min_value=0.0, max_value=1.0),
    items=st.integers(min_value=1, max_value=5_000),
    seed=st.integers(),
)
def test_evenly_spread_picks_the_rate_to_within_one_item_in_every_prefix(
    rate: float, items: int, seed: int
) -> None:
    pick = EvenlySpread(rate, random.Random(seed))
    picked = 0
    for seen in range(1, items + 1):
        picked += pick()
        assert abs(picked - rate * seen) <= 1.0 + 1e-9


@given(scale=st.floats(min_value=1e-4, max_value=1e3), factor=st.floats(1.0, 10.0))
def test_a_larger_scale_never_gives_fewer_rows(scale: float, factor: float) -> None:
    small, large = Volumes.at_scale(scale), Volumes.at_scale(scale * factor)
    for table, rows in small.as_dict().items():
        assert large.as_dict()[table] >= rows


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_a_scale_that_is_not_a_positive_number_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="scale must be a positive number"):
        Volumes.at_scale(scale)


def test_orders_are_generated_identically_for_a_seed_without_any_database() -> None:
    volumes = Volumes.at_scale(0.05)
    first = [order.values for order in sales_orders(volumes, seed=3)]
    again = [order.values for order in sales_orders(volumes, seed=3)]
    other = [order.values for order in sales_orders(volumes, seed=4)]
    assert first == again
    assert first != other
    assert {len(values) for values in first} == {12}


def test_orders_come_in_creation_order_and_transactions_interleave_both_kinds() -> None:
    volumes = Volumes.at_scale(0.05)
    merged = list(orders_by_time(volumes, seed=1))
    assert len(merged) == volumes.transaction
    assert all(a.created_ms <= b.created_ms for a, b in pairwise(merged))
    kinds = [order.is_sale for order in merged]
    assert kinds.count(True) == volumes.sales_order
    assert kinds.count(False) == volumes.purchase_order


def test_payments_are_due_within_six_days_and_money_is_exact() -> None:
    for order in islice(purchase_orders(Volumes.at_scale(0.1), seed=2), 200):
        created = date.fromtimestamp(order.created_ms / 1000)
        assert 0 <= (order.payment_date - created).days <= 7
        assert order.amount == order.amount.quantize(order.amount.__class__("0.01"))
