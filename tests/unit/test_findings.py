"""Findings: what a run found that a person should know, added up across invocations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from totes.findings import MAX_EXAMPLES, Finding, FindingKind, Stage, after_visit, merge


def _finding(kind: FindingKind, count: int = 1, *, table: str = "fact_sales_order", **more):
    return Finding(kind=kind, table=table, stage=Stage.LOAD, detail="d", count=count, **more)


_findings = st.builds(
    Finding,
    kind=st.sampled_from(FindingKind),
    table=st.sampled_from(["fact_sales_order", "dim_currency"]),
    stage=st.sampled_from(Stage),
    detail=st.sampled_from(["a", "b"]),
    count=st.integers(min_value=0, max_value=10_000),
    examples=st.lists(st.text(max_size=5), max_size=5),
)


@given(st.lists(_findings, max_size=30))
def test_merging_keeps_every_row_of_every_cause_and_a_few_examples(findings):
    # When findings of several invocations are merged
    merged = merge(findings)
    # Then each cause appears once, with the rows of all its findings
    assert len({finding.cause for finding in merged}) == len(merged)
    for finding in merged:
        same = [f for f in findings if f.cause == finding.cause]
        assert finding.count == sum(f.count for f in same)
        assert len(finding.examples) <= MAX_EXAMPLES
        assert set(finding.examples) <= {e for f in same for e in f.examples}


def test_beyond_the_limit_further_causes_are_dropped_not_the_rows_of_known_ones() -> None:
    findings = [
        Finding(kind="rows_rejected", table="t", stage="load", detail=str(n)) for n in range(5)
    ]
    merged = merge([*findings, findings[0]], limit=3)
    assert [(f.detail, f.count) for f in merged] == [("0", 2), ("1", 1), ("2", 1)]


def test_a_new_visit_replaces_what_stood_for_that_table_and_adds_what_happened() -> None:
    # Given rows waiting and rows rejected in an earlier pass
    earlier = [
        _finding(FindingKind.WAITING_FOR_DIMENSION, 4),
        _finding(FindingKind.ROWS_REJECTED, 2),
        _finding(FindingKind.WAITING_FOR_DIMENSION, 1, table="fact_payment"),
    ]
    # When the next pass loads the sales orders again, rejecting one more row
    after = after_visit(
        earlier, "fact_sales_order", Stage.LOAD, [_finding(FindingKind.ROWS_REJECTED, 1)]
    )
    # Then the waiting sales orders are gone, the rejected ones add up, the payments stand
    assert [(f.kind, f.table, f.count) for f in after] == [
        (FindingKind.ROWS_REJECTED, "fact_sales_order", 3),
        (FindingKind.WAITING_FOR_DIMENSION, "fact_payment", 1),
    ]


def test_a_finding_reads_as_one_line_for_people() -> None:
    rejected = Finding(
        kind="rows_rejected",
        table="fact_sales_order",
        stage="transform",
        detail="agreed_delivery_date is not a YYYY-MM-DD date",
        count=1_204,
        examples=["'soon'", "'2024-13-45'"],
    )
    assert rejected.describe() == (
        "1,204 rows rejected: agreed_delivery_date is not a YYYY-MM-DD date "
        "(e.g. 'soon', '2024-13-45')"
    )
    column = Finding(
        kind="unexpected_columns",
        table="design",
        stage="ingest",
        detail="new source column colour: kept in the raw zone, not loaded",
    )
    assert column.describe() == "new source column colour: kept in the raw zone, not loaded"
    assert not FindingKind.ROWS_REPLAYED.needs_attention
