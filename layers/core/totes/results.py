"""What one invocation of a stage did: one model per stage, used everywhere.

Each model is the stage's working record while it runs, the Lambda's return value
(:meth:`StageResult.payload`: keys and counts, never rows), what ``CheckProgress``
reads back from the state, what the local client reads from an execution's history,
and what the handler logs (:meth:`StageResult.log_fields`). ``stage`` tells them apart
(:data:`AnyStageResult`), so no reader guesses a result's stage from its keys.

This module imports pydantic and nothing heavy: the progress function, which reads
every result, starts without pyarrow or a database driver.

Examples
--------
>>> result = TransformResult(table="dim_staff", run_id="exec-1", rows=3, files=1)
>>> payload = result.payload()
>>> payload["stage"], payload["rows"], payload["has_more"]
('transform', 3, False)
>>> read_back = STAGE_RESULT.validate_python(payload)
>>> type(read_back).__name__, read_back.counts()
('TransformResult', {'transformed': 3, 'rejected': 0})
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    TypeAdapter,
    computed_field,
)

from totes.findings import Finding, FindingKind, Stage, merge


class StageResult(BaseModel):
    """What every stage's result says: the table it visited, for which run, and what it found."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True)

    #: ``ingest``, ``transform`` or ``load``: each subclass fixes its own.
    stage: str
    #: Read as ``target`` too: what transform and load returned before this model (an
    #: execution that started on the earlier definition reaches the new functions).
    table: str = Field(validation_alias=AliasChoices("table", "target"))
    run_id: str
    #: What a person should know (rejected rows by cause, schema drift, ...).
    findings: list[Finding] = Field(default_factory=list)
    duration_ms: NonNegativeFloat = 0.0

    @property
    def visited(self) -> tuple[str, Stage]:
        """The table this result is about, and the stage."""
        return self.table, Stage(self.stage)

    def payload(self) -> dict[str, Any]:
        """The handler's return value: every field, findings of one cause added up."""
        return self.model_copy(update={"findings": merge(self.findings)}).model_dump(mode="json")

    def log_fields(self) -> dict[str, Any]:
        """The result as the fields of the handler's log line (findings are logged apiece)."""
        return self.model_dump(mode="json", exclude={"findings", "run_id", "table"})

    def counts(self) -> dict[str, int]:
        """What this result adds to its table's totals, by the name the totals use."""
        raise NotImplementedError


class IngestResult(StageResult):
    """One batch of one source table, extracted into the raw zone.

    Examples
    --------
    >>> IngestResult(table="staff", run_id="exec-1", rows=4).counts()
    {'ingested': 4}
    """

    stage: Literal["ingest"] = "ingest"
    rows: NonNegativeInt = 0
    #: Source rows are left beyond this batch's bite.
    has_more: bool = False
    parts: NonNegativeInt = 0
    bytes_written: NonNegativeInt = 0
    #: Source rows beyond this batch (read by the next passes).
    remaining: NonNegativeInt = 0
    #: The look-back window was read again (late commits are picked up this way).
    rereads_window: bool = False
    manifest_key: str | None = None
    #: The watermark after this batch: ``[last_updated, id]``.
    cursor_to: list[str | int] | None = None
    #: Why nothing was read (a table the pipeline does not extract), if so.
    skipped: str | None = None
    unexpected_columns: list[str] = Field(default_factory=list)
    #: Source columns no transform reads that are gone or changed type.
    missing_columns: list[str] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Rows ingested."""
        return {"ingested": self.rows}


class TransformResult(StageResult):
    """One warehouse table's new raw batches, shaped into one gold file.

    Examples
    --------
    >>> TransformResult(table="dim_staff", run_id="exec-1", batches_remaining=2).has_more
    True
    """

    stage: Literal["transform"] = "transform"
    rows: NonNegativeInt = 0
    files: NonNegativeInt = 0
    batches: NonNegativeInt = 0
    rows_rejected: NonNegativeInt = 0
    gold_key: str | None = None
    rejects_key: str | None = None
    #: Rows of the batches consumed, and the batches and rows left for the next invocation.
    rows_consumed: NonNegativeInt = 0
    batches_remaining: NonNegativeInt = 0
    remaining: NonNegativeInt = 0
    #: Sources whose manifests were listed: those with a batch the state had not caught up with.
    sources_listed: NonNegativeInt = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_more(self) -> bool:
        """Whether raw batches are left for the next invocation."""
        return bool(self.batches_remaining)

    @property
    def unknown_codes(self) -> int:
        """Rows named with a placeholder because their code is unknown."""
        return sum(f.count for f in self.findings if f.kind is FindingKind.UNKNOWN_CODE)

    def counts(self) -> dict[str, int]:
        """Rows transformed and rejected."""
        return {"transformed": self.rows, "rejected": self.rows_rejected}


class FileOutcome(BaseModel):
    """What loading one gold file (or replaying one quarantine object) did.

    ``applied_elsewhere`` is True when another loader recorded the file in the ledger
    between this load's listing and its transaction; nothing was then written.

    Examples
    --------
    >>> FileOutcome(key="fact_payment/run=exec-1/a.parquet", rows_in_file=10,
    ...             rows_loaded=7).rows_skipped
    3
    """

    model_config = ConfigDict(frozen=True)

    key: str
    rows_in_file: NonNegativeInt
    rows_loaded: NonNegativeInt = 0
    rows_rejected: NonNegativeInt = 0
    rejects_key: str | None = None
    applied_elsewhere: bool = False
    #: Rows reference dimension rows not loaded yet: nothing applied, the file stays pending.
    deferred: bool = False
    #: The rejected (or, for a deferred file, waiting) rows by cause.
    findings: tuple[Finding, ...] = ()
    duration_ms: NonNegativeFloat = 0.0
    #: Rows copied straight into the table (an Arrow table): a fact's with the surrogate
    #: keys they were given, a dimension's whole file into its empty table. The lake
    #: export writes them without reading them back.
    copied_in: Any = Field(default=None, exclude=True, repr=False)

    @property
    def rows_skipped(self) -> int:
        """Rows already in the warehouse: fact versions present, dimension rows unchanged."""
        if self.applied_elsewhere or self.deferred:
            return 0
        return self.rows_in_file - self.rows_loaded - self.rows_rejected

    def log_fields(self) -> dict[str, Any]:
        """The file's log line fields."""
        fields = self.model_dump(mode="json", exclude={"key", "findings", "deferred"})
        return {"file_key": self.key, "rows_skipped": self.rows_skipped, **fields}


#: What a load adds to its table's totals: ``rows_<name>`` of the result, by ``<name>``.
_LOAD_COUNTS = ("loaded", "skipped", "rejected", "replayed")


class LoadResult(StageResult):
    """One warehouse table's pending gold files, loaded (and its quarantine replayed).

    The counts are added up as files are recorded (:meth:`record_file`,
    :meth:`record_replay`); the files themselves are for the log, not the payload.

    Examples
    --------
    >>> result = LoadResult(table="dim_staff", run_id="exec-1")
    >>> result.record_file(FileOutcome(key="a", rows_in_file=3, rows_loaded=1))
    >>> (result.files, result.rows_loaded, result.rows_skipped, result.rows_rejected)
    (1, 1, 2, 0)
    >>> LoadResult.model_validate(result.payload()).counts()["skipped"]
    2
    """

    stage: Literal["load"] = "load"
    #: Files applied by this invocation.
    files: NonNegativeInt = 0
    rows_loaded: NonNegativeInt = 0
    rows_skipped: NonNegativeInt = 0
    rows_rejected: NonNegativeInt = 0
    #: Quarantined rows that went in this time, their dimension row having arrived.
    rows_replayed: NonNegativeInt = 0
    #: Fact files left pending: waiting for a dimension row they reference.
    files_waiting: NonNegativeInt = 0
    files_listed: NonNegativeInt = 0
    #: Files not attempted because of the per-invocation limit (the next one applies them).
    files_remaining: NonNegativeInt = 0
    #: Fact rows (and dim_date rows) written to the lake after they committed.
    rows_exported_to_lake: NonNegativeInt = 0
    newest_last_updated: datetime | None = None
    freshness_lag_seconds: float | None = None
    #: Whether the fact rows were checked by per-row FK triggers (else set-based checks).
    fk_triggers: bool = True
    #: Every gold file this invocation tried, and every quarantine object it replayed.
    file_outcomes: list[FileOutcome] = Field(default_factory=list, exclude=True)
    replay_outcomes: list[FileOutcome] = Field(default_factory=list, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_more(self) -> bool:
        """Whether files are left for the next invocation."""
        return bool(self.files_remaining)

    @property
    def applied(self) -> list[FileOutcome]:
        """The files this step applied (those another loader took or that wait are left out)."""
        return [o for o in self.file_outcomes if not (o.applied_elsewhere or o.deferred)]

    @property
    def deferred(self) -> list[FileOutcome]:
        """The files left pending because a dimension row they need is not loaded yet."""
        return [outcome for outcome in self.file_outcomes if outcome.deferred]

    def record_file(self, outcome: FileOutcome) -> None:
        """Add a gold file's outcome to the result and its counts."""
        self.file_outcomes.append(outcome)
        if outcome.deferred:
            self.files_waiting += 1
        elif not outcome.applied_elsewhere:
            self.files += 1
        self.rows_loaded += outcome.rows_loaded
        self.rows_skipped += outcome.rows_skipped
        self.rows_rejected += outcome.rows_rejected
        self.findings = merge([*self.findings, *outcome.findings])

    def record_replay(self, outcome: FileOutcome) -> None:
        """Add a quarantine object's replay to the result and its counts."""
        self.replay_outcomes.append(outcome)
        self.rows_replayed += outcome.rows_loaded
        self.findings = merge([*self.findings, *outcome.findings])

    def counts(self) -> dict[str, int]:
        """Rows loaded, skipped, rejected and replayed."""
        return {name: getattr(self, f"rows_{name}") for name in _LOAD_COUNTS}


#: Any stage's result, told apart by its ``stage``.
AnyStageResult = Annotated[
    IngestResult | TransformResult | LoadResult, Field(discriminator="stage")
]
#: Reads any stage's payload back into its model.
STAGE_RESULT: TypeAdapter[IngestResult | TransformResult | LoadResult] = TypeAdapter(AnyStageResult)
