"""Catching up: what one pass of the workflow moved, what remains, and whether to go again.

An execution runs passes (ingest, transform, load) while work remains and its time
budget allows. After each pass the ``CheckProgress`` state sends this module the
pass's results; it adds them to the execution's totals, works out what is left in
each stage and which tables the next pass needs, and decides:

- **caught up**: no stage has work left (fact files waiting for a dimension row
  wait for time, not for another pass, so they do not count, unless this pass
  loaded dimension rows: then the next pass looks at them once more);
- **another pass**: work remains and the longest pass so far, repeated, would still
  end within the budget (elapsed + longest pass <= budget);
- **out of time**: work remains but another pass might not fit; the execution ends
  successfully and says what remains, and the next one continues.

The next pass visits only the tables with work: a source table whose ingest said
``has_more``, a warehouse table whose transform or load did, or whose sources are
ingested again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    model_validator,
)

from totes.contracts import NonEmptyText, Seconds, parse_event, settings_from_environment
from totes.findings import Finding, after_visit
from totes.names import DEFAULT_CATCH_UP_BUDGET_SECONDS, EnvironmentVariable
from totes.results import IngestResult, LoadResult, TransformResult
from totes.tables import (
    FACT_TABLES,
    GOLD_DIMENSIONS,
    GOLD_TABLES,
    SOURCE_TABLES,
    WAREHOUSE,
    largest_first,
)

#: Elapsed time by which an execution's last pass should end; the Express limit is 5 min.
DEFAULT_BUDGET = timedelta(seconds=DEFAULT_CATCH_UP_BUDGET_SECONDS)


class PassTables(BaseModel):
    """The tables each stage of a pass visits (the Map states' items)."""

    model_config = ConfigDict(frozen=True)

    source: list[str] = Field(default_factory=lambda: largest_first(SOURCE_TABLES))
    warehouse: list[str] = Field(default_factory=lambda: largest_first(GOLD_TABLES))
    dimensions: list[str] = Field(default_factory=lambda: largest_first(GOLD_DIMENSIONS))
    facts: list[str] = Field(default_factory=lambda: largest_first(FACT_TABLES))

    @property
    def empty(self) -> bool:
        """Whether no stage has a table to visit."""
        return not (self.source or self.warehouse or self.dimensions or self.facts)


class TableTotals(BaseModel):
    """One table's counts over the execution's passes, and what it has left.

    ``remaining`` is source rows not ingested yet (a source table) or raw rows not
    transformed yet (a warehouse table); ``files_remaining`` gold files not loaded
    yet; ``files_waiting`` fact files held back for a dimension row.
    """

    model_config = ConfigDict(extra="forbid")

    ingested: NonNegativeInt = 0
    transformed: NonNegativeInt = 0
    loaded: NonNegativeInt = 0
    skipped: NonNegativeInt = 0
    rejected: NonNegativeInt = 0
    replayed: NonNegativeInt = 0
    remaining: NonNegativeInt = 0
    files_remaining: NonNegativeInt = 0
    files_waiting: NonNegativeInt = 0


class Verdict(StrEnum):
    """How a pass ended the execution, or that another follows."""

    CAUGHT_UP = "caught_up"
    KEEP_GOING = "keep_going"
    OUT_OF_TIME = "out_of_time"


class ProgressRequest(BaseModel):
    """The event of ``CheckProgress``: the pass's results and the execution's totals so far.

    Examples
    --------
    >>> request = ProgressRequest.from_event({"run_id": "r", "passes": 0,
    ...     "execution_started": "2024-11-14T09:00:00Z", "pass_started": "2024-11-14T09:00:00Z",
    ...     "visiting": {}, "ingested": [{"table": "staff", "run_id": "r", "rows": 3}]})
    >>> request.ingested[0].has_more
    False
    >>> ProgressRequest.from_event({"run_id": "r"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.InvalidEventError: progress event: passes is not set; ...
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: NonEmptyText
    #: Passes done before this one.
    passes: NonNegativeInt
    execution_started: AwareDatetime
    pass_started: AwareDatetime
    #: The longest pass of this execution before this one: what the next may take.
    longest_pass_seconds: NonNegativeFloat = 0.0
    #: The tables this pass visited.
    visiting: PassTables
    #: Each table's counts over the passes so far.
    tables: dict[str, TableTotals] = Field(default_factory=dict)
    #: What the passes so far found (rejected rows, unknown codes, schema drift, ...).
    findings: list[Finding] = Field(default_factory=list)
    ingested: list[IngestResult] = Field(default_factory=list)
    transformed: list[TransformResult] = Field(default_factory=list)
    dimensions_loaded: list[LoadResult] = Field(default_factory=list)
    facts_loaded: list[LoadResult] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _earlier_state(cls, event: Any) -> Any:
        """The state as the earlier definition passed it (``passes_done``, ``totals``, and
        the lists of the pass under ``tables``): an execution running while the stack is
        updated reaches this function with it."""
        if not isinstance(event, dict) or "passes_done" not in event:
            return event
        earlier = {key: value for key, value in event.items() if key != "passes_done"}
        return {
            **earlier,
            "passes": event["passes_done"],
            "visiting": event.get("tables", {}),
            "tables": event.get("totals", {}),
        }

    @property
    def results(self) -> tuple[IngestResult | TransformResult | LoadResult, ...]:
        """Every stage result of the pass, in the order the stages ran."""
        return (*self.ingested, *self.transformed, *self.dimensions_loaded, *self.facts_loaded)

    @classmethod
    def from_event(cls, event: Any) -> ProgressRequest:
        """Validate the ``CheckProgress`` event.

        Raises
        ------
        InvalidEventError
            A field is missing or does not fit (named in the message).
        """
        return parse_event(cls, event, what="progress event")


class ProgressSettings(BaseModel):
    """The time budget of an execution (an environment variable in Lambda).

    Examples
    --------
    >>> ProgressSettings.from_environment({}).budget
    datetime.timedelta(seconds=180)
    >>> ProgressSettings.from_environment({"CATCH_UP_BUDGET_SECONDS": "soon"})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable CATCH_UP_BUDGET_SECONDS: ...
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    budget: Seconds = Field(DEFAULT_BUDGET, alias=EnvironmentVariable.CATCH_UP_BUDGET_SECONDS)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> ProgressSettings:
        """Read the optional ``CATCH_UP_BUDGET_SECONDS``.

        Raises
        ------
        InvalidSettingError
            The value is not a whole number of seconds.
        """
        return settings_from_environment(cls, environment)


class Progress(BaseModel):
    """The state after a pass: the next pass's tables, the totals, the verdict.

    This is the workflow's state between passes and, once the execution ends, the
    core of its output.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    passes: NonNegativeInt
    verdict: Verdict
    next_pass: bool
    caught_up: bool
    #: The tables each stage of the next pass visits.
    visiting: PassTables
    #: Each table's counts over the execution's passes (the execution's output says the same).
    tables: dict[str, TableTotals]
    #: What each table has left, only the tables with something left.
    remaining: dict[str, TableTotals]
    #: Source rows not ingested plus raw rows not transformed: the backlog metric.
    backlog_rows: NonNegativeInt
    files_remaining: NonNegativeInt
    files_waiting: NonNegativeInt
    #: Rows rejected over every pass (transform and load), and what was found, by cause.
    rows_rejected: NonNegativeInt
    findings: list[Finding]
    elapsed_seconds: float
    longest_pass_seconds: float


def check_progress(
    request: ProgressRequest, settings: ProgressSettings, *, now: datetime
) -> Progress:
    """Add a pass's results to the totals and decide whether another pass runs.

    Parameters
    ----------
    request
        The pass's stage results, the tables it visited, the totals so far.
    settings
        The execution's time budget.
    now
        The current time (aware), compared with the execution's and the pass's start.

    Returns
    -------
    Progress
        The totals, what remains, the next pass's tables and the verdict.

    Examples
    --------
    >>> from datetime import UTC
    >>> start = datetime(2024, 11, 14, 9, 0, tzinfo=UTC)
    >>> request = ProgressRequest(run_id="r", passes=0, execution_started=start,
    ...     pass_started=start, visiting=PassTables(),
    ...     ingested=[IngestResult(table="staff", run_id="r", rows=5, has_more=True, remaining=7)])
    >>> progress = check_progress(request, ProgressSettings(), now=start + timedelta(seconds=20))
    >>> progress.verdict, progress.visiting.source, progress.visiting.warehouse
    (<Verdict.KEEP_GOING: 'keep_going'>, ['staff'], ['dim_staff'])
    >>> check_progress(request, ProgressSettings(), now=start + timedelta(seconds=100)).verdict
    <Verdict.OUT_OF_TIME: 'out_of_time'>
    """
    totals = {name: counts.model_copy() for name, counts in request.tables.items()}

    def counts(table: str) -> TableTotals:
        return totals.setdefault(table, TableTotals())

    for result in request.results:
        table = counts(result.table)
        for name, rows in result.counts().items():
            setattr(table, name, getattr(table, name) + rows)
    # What is left is what the last visit of each table said.
    for ingested in request.ingested:
        counts(ingested.table).remaining = ingested.remaining if ingested.has_more else 0
    for transformed in request.transformed:
        counts(transformed.table).remaining = transformed.remaining if transformed.has_more else 0
    for loaded in (*request.dimensions_loaded, *request.facts_loaded):
        target = counts(loaded.table)
        target.files_remaining = loaded.files_remaining if loaded.has_more else 0
        target.files_waiting = loaded.files_waiting

    next_tables = _next_tables(request)
    elapsed = now - request.execution_started
    longest = max(now - request.pass_started, timedelta(seconds=request.longest_pass_seconds))
    if next_tables.empty:
        verdict = Verdict.CAUGHT_UP
    elif elapsed + longest <= settings.budget:
        verdict = Verdict.KEEP_GOING
    else:
        verdict = Verdict.OUT_OF_TIME
    ordered = {name: totals[name] for name in (*SOURCE_TABLES, *GOLD_TABLES) if name in totals}
    remaining = {
        name: TableTotals(
            remaining=table.remaining,
            files_remaining=table.files_remaining,
            files_waiting=table.files_waiting,
        )
        for name, table in ordered.items()
        if table.remaining or table.files_remaining or table.files_waiting
    }
    return Progress(
        run_id=request.run_id,
        passes=request.passes + 1,
        verdict=verdict,
        next_pass=verdict is Verdict.KEEP_GOING,
        caught_up=verdict is Verdict.CAUGHT_UP,
        visiting=next_tables,
        tables=ordered,
        remaining=remaining,
        backlog_rows=sum(table.remaining for table in ordered.values()),
        files_remaining=sum(table.files_remaining for table in ordered.values()),
        files_waiting=sum(table.files_waiting for table in ordered.values()),
        rows_rejected=sum(table.rejected for table in ordered.values()),
        findings=_findings(request),
        elapsed_seconds=round(elapsed.total_seconds(), 3),
        longest_pass_seconds=round(longest.total_seconds(), 3),
    )


def _findings(request: ProgressRequest) -> list[Finding]:
    """The execution's findings after this pass (see :func:`totes.findings.after_visit`)."""
    findings = list(request.findings)
    for result in request.results:
        findings = after_visit(findings, *result.visited, result.findings)
    return findings


def _next_tables(request: ProgressRequest) -> PassTables:
    """The tables with work left, per stage, in the stages' own order."""
    source = {outcome.table for outcome in request.ingested if outcome.has_more}
    warehouse = {outcome.table for outcome in request.transformed if outcome.has_more}
    warehouse |= {table.name for table in WAREHOUSE.values() if source.intersection(table.sources)}
    loads = warehouse | {
        outcome.table
        for outcome in (*request.dimensions_loaded, *request.facts_loaded)
        if outcome.has_more
    }
    # Fact files waiting for a dimension row may apply once this pass's dimension rows
    # are in: one more look at them, and no more unless dimensions change again.
    if any(outcome.rows_loaded for outcome in request.dimensions_loaded):
        loads |= {outcome.table for outcome in request.facts_loaded if outcome.files_waiting}
    return PassTables(
        source=largest_first(source),
        warehouse=largest_first(warehouse),
        dimensions=largest_first(loads.intersection(GOLD_DIMENSIONS)),
        facts=largest_first(loads.intersection(FACT_TABLES)),
    )
