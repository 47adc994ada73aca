"""CheckProgress: the totals over an execution's passes, what remains, and the next pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.errors import InvalidEventError
from totes.progress import (
    PassTables,
    ProgressRequest,
    ProgressSettings,
    Verdict,
    check_progress,
)
from totes.results import IngestResult, LoadResult, TransformResult
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
)
from totes.transform.stage import _Batch, _take_oldest

START = datetime(2024, 11, 14, 9, 0, tzinfo=UTC)
BUDGET = ProgressSettings(budget=timedelta(seconds=180))


def _request(**fields: object) -> ProgressRequest:
    defaults: dict[str, object] = {
        "run_id": "run-1",
        "passes": 0,
        "execution_started": START,
        "pass_started": START,
        "visiting": PassTables(),
    }
    return ProgressRequest.model_validate({**defaults, **fields})


def test_a_pass_that_left_nothing_anywhere_is_caught_up() -> None:
    # Given a pass whose every stage finished its tables
    request = _request(
        ingested=[IngestResult(run_id="r", table=table, rows=10) for table in SOURCE_TABLES],
        transformed=[TransformResult(run_id="r", table=target, rows=10) for target in GOLD_TABLES],
        facts_loaded=[LoadResult(run_id="r", table=fact, rows_loaded=10) for fact in FACT_TABLES],
    )

    # When progress is checked
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=5))

    # Then the execution ends caught up, with nothing remaining and no next pass
    assert (progress.verdict, progress.caught_up, progress.next_pass) == (
        Verdict.CAUGHT_UP,
        True,
        False,
    )
    assert progress.remaining == {}
    assert progress.visiting.empty
    assert progress.passes == 1
    assert progress.tables["sales_order"].ingested == 10


def test_the_next_pass_visits_only_the_tables_with_work_left() -> None:
    # Given a pass where sales_order had more rows, and fact_payment more files to load
    request = _request(
        ingested=[
            IngestResult(run_id="r", table="sales_order", rows=50, has_more=True, remaining=70),
            IngestResult(run_id="r", table="staff", rows=5),
        ],
        transformed=[TransformResult(run_id="r", table="dim_staff", rows=5)],
        facts_loaded=[LoadResult(run_id="r", table="fact_payment", files_remaining=2)],
    )

    # When progress is checked early in the execution
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=10))

    # Then another pass runs: sales_order is ingested again, its targets are transformed
    # and loaded, and fact_payment's remaining files are loaded
    assert progress.verdict is Verdict.KEEP_GOING
    assert progress.visiting == PassTables(
        source=["sales_order"],
        warehouse=["fact_sales_order"],
        dimensions=[],
        facts=["fact_payment", "fact_sales_order"],
    )
    # And what remains is said per table
    assert progress.remaining["sales_order"].remaining == 70
    assert progress.remaining["fact_payment"].files_remaining == 2
    assert (progress.backlog_rows, progress.files_remaining) == (70, 2)


def test_when_another_pass_might_not_fit_the_execution_ends_and_says_what_remains() -> None:
    # Given a pass that took 100 s of a 180 s budget, with rows left
    request = _request(
        pass_started=START,
        transformed=[
            TransformResult(run_id="r", table="fact_sales_order", batches_remaining=1, remaining=9)
        ],
    )

    # When progress is checked
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=100))

    # Then no further pass starts (100 + 100 > 180); the execution ends, not caught up
    assert (progress.verdict, progress.next_pass, progress.caught_up) == (
        Verdict.OUT_OF_TIME,
        False,
        False,
    )
    assert progress.remaining["fact_sales_order"].remaining == 9
    assert progress.elapsed_seconds == 100


def test_fact_files_waiting_for_a_dimension_row_do_not_keep_the_passes_going() -> None:
    # Given a load that left a fact file waiting for its dimension row (time, not work)
    request = _request(
        facts_loaded=[LoadResult(run_id="r", table="fact_sales_order", files_waiting=1)]
    )

    # When progress is checked
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=1))

    # Then the execution is caught up, and still says that the file waits
    assert progress.verdict is Verdict.CAUGHT_UP
    assert progress.remaining["fact_sales_order"].files_waiting == 1
    assert progress.files_waiting == 1


def test_waiting_fact_files_get_one_more_look_once_this_pass_loaded_dimension_rows() -> None:
    # Given a pass that loaded new counterparties while a sales order file waited for one
    request = _request(
        dimensions_loaded=[LoadResult(run_id="r", table="dim_counterparty", rows_loaded=3)],
        facts_loaded=[LoadResult(run_id="r", table="fact_sales_order", files_waiting=1)],
    )

    # When progress is checked
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=1))

    # Then the next pass loads that fact again (its dimension row may be in now)
    assert progress.verdict is Verdict.KEEP_GOING
    assert progress.visiting == PassTables(
        source=[], warehouse=[], dimensions=[], facts=["fact_sales_order"]
    )

    # When that pass loaded no dimension row and the file still waits
    again = _request(
        passes=1,
        visiting=progress.visiting,
        facts_loaded=[LoadResult(run_id="r", table="fact_sales_order", files_waiting=1)],
    )

    # Then the execution ends: waiting is a matter of time now, not of passes
    assert check_progress(again, BUDGET, now=START + timedelta(seconds=2)).caught_up


def test_the_longest_pass_so_far_decides_whether_another_fits() -> None:
    # Given a quick pass (5 s) after a slow one (100 s), 110 s into a 180 s budget
    request = _request(
        passes=1,
        execution_started=START,
        pass_started=START + timedelta(seconds=105),
        longest_pass_seconds=100,
        ingested=[IngestResult(run_id="r", table="sales_order", has_more=True, remaining=5)],
    )

    # When progress is checked
    progress = check_progress(request, BUDGET, now=START + timedelta(seconds=110))

    # Then no pass starts that would end past the budget if it were as slow as the slowest
    assert progress.verdict is Verdict.OUT_OF_TIME
    assert progress.longest_pass_seconds == 100


def test_a_start_time_without_a_time_zone_is_refused_by_name() -> None:
    # Given an event whose execution start lost its time zone
    event = {**_request().model_dump(mode="json"), "execution_started": "2024-11-14T09:00:00"}

    # When it is parsed, Then the field is named rather than failing later on arithmetic
    with pytest.raises(InvalidEventError, match=r"execution_started: .*timezone"):
        ProgressRequest.from_event(event)


_rows = st.integers(min_value=0, max_value=10_000)


@given(st.lists(st.tuples(_rows, _rows, _rows), min_size=1, max_size=6))
def test_totals_are_the_sums_over_every_pass(passes: list[tuple[int, int, int]]) -> None:
    # Given several passes, each moving some rows through every stage of sales orders
    totals: dict[str, object] = {}
    for number, (ingested, transformed, loaded) in enumerate(passes):
        request = _request(
            passes=number,
            tables=totals,
            ingested=[IngestResult(run_id="r", table="sales_order", rows=ingested)],
            transformed=[TransformResult(run_id="r", table="fact_sales_order", rows=transformed)],
            facts_loaded=[LoadResult(run_id="r", table="fact_sales_order", rows_loaded=loaded)],
        )
        # When each is checked with the totals the one before returned
        progress = check_progress(request, BUDGET, now=START + timedelta(seconds=1))
        totals = {name: table.model_dump() for name, table in progress.tables.items()}

    # Then the totals are the sums, and the passes are counted
    assert progress.tables["sales_order"].ingested == sum(p[0] for p in passes)
    assert progress.tables["fact_sales_order"].transformed == sum(p[1] for p in passes)
    assert progress.tables["fact_sales_order"].loaded == sum(p[2] for p in passes)
    assert progress.passes == len(passes)


def test_the_next_pass_lists_every_table_with_work_its_largest_tables_first() -> None:
    # Given more work in every table
    request = _request(
        ingested=[
            IngestResult(run_id="r", table=table, has_more=True, remaining=1)
            for table in SOURCE_TABLES
        ]
    )

    # When progress is checked
    tables = check_progress(request, BUDGET, now=START).visiting

    # Then each stage gets all its tables, those that usually hold the most rows first,
    # as the first pass does
    assert tables == PassTables()
    assert sorted(tables.source) == sorted(SOURCE_TABLES)
    assert sorted(tables.warehouse) == sorted(GOLD_TABLES)
    assert sorted(tables.dimensions) == sorted(GOLD_DIMENSIONS)
    assert sorted(tables.facts) == sorted(FACT_TABLES)
    assert tables.source[:2] == ["transaction", "payment"]
    assert tables.dimensions[0] == "dim_transaction"
    assert tables.warehouse[-1] == "dim_currency"


@given(
    st.lists(st.tuples(st.sampled_from(["staff", "department"]), st.integers(0, 500)), min_size=1),
    st.integers(min_value=1, max_value=2_000),
)
def test_transform_takes_a_time_ordered_prefix_that_fits_its_limit(
    batches: list[tuple[str, int]], max_rows: int
) -> None:
    # Given raw batches of two sources, extracted one after the other
    class Manifest:
        def __init__(self, rows: int) -> None:
            self.rows = rows

    waiting = [
        _Batch(source, f"_manifests/{source}/2024/11/14/{order:012d}-run.json", Manifest(rows))  # type: ignore[arg-type]
        for order, (source, rows) in enumerate(batches)
    ]

    # When transform chooses what to consume
    taken, left = _take_oldest(list(reversed(waiting)), max_rows)

    # Then it takes the oldest batches, across sources, in extraction order, at least one
    assert taken + left == waiting
    assert taken
    # And their rows fit the limit, unless the first alone is larger
    rows = sum(batch.manifest.rows for batch in taken)
    assert rows <= max_rows or len(taken) == 1
    # And the next batch would not have fitted
    if left:
        assert rows + left[0].manifest.rows > max_rows


def test_what_the_passes_found_is_carried_to_the_output_events_added_and_standings_updated():
    # Given a first pass: two rows rejected by transform, a fact file waiting, a new column
    rejected = {
        "kind": "rows_rejected",
        "table": "fact_sales_order",
        "stage": "transform",
        "detail": "agreed_delivery_date is not a YYYY-MM-DD date",
        "count": 2,
    }
    waiting = {
        "kind": "waiting_for_dimension",
        "table": "fact_sales_order",
        "stage": "load",
        "detail": "design_id not in dim_design",
        "count": 1,
    }
    column = {
        "kind": "unexpected_columns",
        "table": "design",
        "stage": "ingest",
        "detail": "new source column colour",
    }
    first = check_progress(
        _request(
            ingested=[
                {
                    "table": "design",
                    "run_id": "r",
                    "rows": 1,
                    "has_more": True,
                    "findings": [column],
                }
            ],
            transformed=[
                {
                    "table": "fact_sales_order",
                    "run_id": "r",
                    "rows_rejected": 2,
                    "findings": [rejected],
                }
            ],
            facts_loaded=[
                {
                    "table": "fact_sales_order",
                    "run_id": "r",
                    "files_waiting": 1,
                    "findings": [waiting],
                }
            ],
        ),
        BUDGET,
        now=START + timedelta(seconds=5),
    )
    # When the next pass rejects one more row, applies the waiting file and sees the column
    second = check_progress(
        _request(
            passes=1,
            tables=first.tables,
            findings=first.findings,
            ingested=[{"table": "design", "run_id": "r", "findings": [column]}],
            transformed=[
                {
                    "table": "fact_sales_order",
                    "run_id": "r",
                    "rows_rejected": 1,
                    "findings": [rejected | {"count": 1}],
                }
            ],
            facts_loaded=[{"table": "fact_sales_order", "run_id": "r", "rows_loaded": 1}],
        ),
        BUDGET,
        now=START + timedelta(seconds=10),
    )
    # Then the output says three rows were rejected, nothing waits, and the column is new
    assert sorted((f.kind, f.table, f.count) for f in second.findings) == [
        ("rows_rejected", "fact_sales_order", 3),
        ("unexpected_columns", "design", 1),
    ]
    assert second.rows_rejected == 3
    assert first.rows_rejected == 2


def test_a_state_of_the_earlier_definition_is_read_as_the_same_pass() -> None:
    # Given the state an execution that started before a stack update passes on: the pass
    # count as passes_done, the totals as totals, the lists of the pass as tables, and a
    # transform result that names its table target
    earlier = {
        "run_id": "r",
        "passes_done": 1,
        "execution_started": START.isoformat(),
        "pass_started": START.isoformat(),
        "tables": {"source": ["staff"], "warehouse": [], "dimensions": [], "facts": []},
        "totals": {"staff": {"ingested": 4}},
        "transformed": [{"target": "dim_staff", "run_id": "r", "rows": 4}],
    }
    # When progress reads it
    request = ProgressRequest.from_event(earlier)
    # Then it is the same pass, with the same totals and the same visited table
    assert (request.passes, request.visiting.source) == (1, ["staff"])
    assert request.tables["staff"].ingested == 4
    assert request.transformed[0].table == "dim_staff"
    assert check_progress(request, BUDGET, now=START).tables["dim_staff"].transformed == 4
