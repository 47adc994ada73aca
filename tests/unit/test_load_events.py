"""The load stage's event, settings and result: what the Lambda accepts and returns."""

from __future__ import annotations

from typing import Any

import pytest

from totes.errors import InvalidEventError
from totes.load.stage import FileOutcome, LoadRequest, LoadResult, LoadSettings
from totes.names import WAREHOUSE_TABLES


@pytest.mark.parametrize("target", WAREHOUSE_TABLES)
def test_every_warehouse_table_is_a_valid_target(target: str) -> None:
    assert LoadRequest.from_event({"target": target, "run_id": "exec-1"}) == LoadRequest(
        target, "exec-1"
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "must be a JSON object, got NoneType"),
        ({"target": "dim_staff", "run_id": ""}, "non-empty string 'run_id'"),
        ({"target": 7, "run_id": "exec-1"}, "non-empty string 'target'"),
        ({"target": "load_ledger", "run_id": "exec-1"}, "'load_ledger' is not a warehouse table"),
        ({"target": "DIM_STAFF", "run_id": "exec-1"}, "'DIM_STAFF' is not a warehouse table"),
    ],
)
def test_a_malformed_event_is_refused_by_name(event: Any, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        LoadRequest.from_event(event)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSED_BUCKET", "totes-processed")
    monkeypatch.delenv("LOAD_FK_TRIGGERS", raising=False)
    assert LoadSettings.from_environment() == LoadSettings("totes-processed", "auto")
    monkeypatch.setenv("LOAD_FK_TRIGGERS", "always")
    assert LoadSettings.from_environment().fk_triggers == "always"


def test_settings_name_what_is_missing_or_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCESSED_BUCKET", raising=False)
    with pytest.raises(InvalidEventError, match="PROCESSED_BUCKET is not set"):
        LoadSettings.from_environment()
    monkeypatch.setenv("PROCESSED_BUCKET", "totes-processed")
    monkeypatch.setenv("LOAD_FK_TRIGGERS", "never")
    with pytest.raises(InvalidEventError, match="LOAD_FK_TRIGGERS must be 'auto' or 'always'"):
        LoadSettings.from_environment()


def test_the_payload_adds_up_the_files_and_leaves_out_those_another_loader_applied() -> None:
    result = LoadResult(
        target="fact_sales_order",
        run_id="exec-1",
        files=[
            FileOutcome("a", rows_in_file=10, rows_loaded=6, rows_rejected=1),
            FileOutcome("b", rows_in_file=5, rows_loaded=0),
            FileOutcome("c", rows_in_file=7, applied_elsewhere=True),
        ],
    )
    assert result.to_payload() == {
        "target": "fact_sales_order",
        "run_id": "exec-1",
        "files": 2,
        "rows_loaded": 6,
        "rows_skipped": 8,
        "rows_rejected": 1,
    }
