"""One load step: every gold file of one warehouse table that the ledger lacks, into the warehouse.

Load lists the gold files of the table after the last one every predecessor of which is
loaded (not only the current run's; none when transform's state says it has committed
nothing after that one), drops those the ledger records, and applies the oldest of the
rest in commit order, at most
``LOAD_MAX_FILES`` per invocation (the others wait for the next one: ``has_more``), so
files an earlier failed run left behind are picked up by the next one. Before a fact
file, the dates it references are added to dim_date and committed at once (loads of
several facts would otherwise wait on each other's new dates). Each file is then
applied in one transaction:

1. take the table's advisory lock (two loaders of one table apply files in turn);
2. insert the file's ledger row (with the run that loads it); if it is already there,
   another loader applied the file since the listing: skip it;
3. dimensions: COPY the rows into a temporary table and upsert them, rewriting
   changed rows only (into an empty table, COPY them straight in);
4. facts: COPY the version keys alone into a temporary table and count those the
   warehouse already holds; lock the dimension rows the other rows reference
   (``FOR KEY SHARE``, as the foreign-key triggers would). When every one is there,
   COPY the rows straight into the table, numbered with surrogate keys reserved from
   the table's sequence; otherwise COPY them into a temporary table, quarantine the
   rows whose dimension row is missing (to ``rejects/`` in the processed bucket) and
   insert the rest. A file that holds a version twice takes the second way too, and
   the version goes in once. Either way, raise the table's newest version
   (``newest_versions``, the freshness lag) to the newest row that went in;
5. record how many rows changed the warehouse, and commit.

Then, for a fact table, the quarantined rows get another chance (*replay*): each
quarantine object is applied again like a gold file, in a transaction of its own.
Rows whose dimension row has arrived since go in; the object is then rewritten with
the rows still missing one, or deleted when none is left. A replay that finds nothing
new rolls back and changes nothing.

Last, what the warehouse committed reaches the lake (:mod:`totes.load.lake_export`):
the table's rows the lake lacks, in an Iceberg commit (per bite of 200,000 fact rows; a
fact's rows copied straight in are taken from memory, bite by bite, when they are
exactly what a bite lacks, others are read back),
and for a fact, dim_date's new dates.

Step 4 checks and locks every reference of a fact file set-based; the foreign-key
triggers would then do it all again one row at a time (nine checks per sales order),
which makes a large insert about nine times slower. A session allowed to set
``session_replication_role`` (a superuser, or a role granted ``SET ON PARAMETER
session_replication_role``) therefore inserts facts with the triggers off; any other
session keeps them. ``LOAD_FK_TRIGGERS=always`` keeps them in every case.

A crash anywhere before the commit rolls everything back, ledger row included: the
file is still unloaded and the next load applies it (surrogate keys it reserved are not
given back: a sequence never is, and keys may have gaps). A rejects object written before
a failed commit is rewritten at the same key by that next load. A replay that commits
but crashes before rewriting its quarantine object leaves rows listed that are in the
warehouse: the next replay finds them present and drops them from the object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from totes.contracts import (
    GoldTable,
    NonEmptyText,
    Seconds,
    parse_event,
    settings_from_environment,
)
from totes.db import kept_connection, unverified_tls
from totes.errors import (
    GoldFileSchemaError,
    GoldFileUnreadableError,
    ReferencedRowDeletedError,
    WarehouseSchemaMissingError,
)
from totes.findings import (
    MAX_EXAMPLES,
    Finding,
    FindingKind,
    Stage,
    unverified_tls_findings,
)
from totes.key_runs import consecutive, has_repeated_key, last_of_each_key
from totes.lake.iceberg import Lake
from totes.load import warehouse_sql
from totes.load.gold_files import (
    RejectedRow,
    list_gold_files,
    list_quarantined,
    listed_through,
    read_gold_file,
    read_quarantined,
    referenced_keys,
    referenced_values,
    write_rejects,
)
from totes.load.lake_export import export_to_lake
from totes.names import (
    DEFAULT_LOAD_MAX_FILES,
    LOAD_LEDGER_TABLE,
    LOAD_LISTING_TABLE,
    NEWEST_VERSIONS_TABLE,
    WAREHOUSE_DATABASE,
    EnvironmentVariable,
)
from totes.results import FileOutcome, LoadResult
from totes.tables import DIMENSION_TABLES, FACT_TABLES, WAREHOUSE
from totes.zones.gold import GoldFileKey
from totes.zones.rejects import RejectsKey, load_rejects_key
from totes.zones.state import committed_sequence

FK_TRIGGERS_AUTO: Final = "auto"
FK_TRIGGERS_ALWAYS: Final = "always"
#: How long a fact file may wait for a dimension row it references (six schedule ticks).
DEFAULT_REJECT_AFTER: Final = timedelta(minutes=30)


class LoadRequest(BaseModel):
    """The event of one load Map item.

    Examples
    --------
    >>> LoadRequest.from_event({"target": "fact_sales_order", "run_id": "exec-1"})
    LoadRequest(target='fact_sales_order', run_id='exec-1')
    >>> LoadRequest.from_event({"target": "dim_staff"})
    Traceback (most recent call last):
    ...
    totes.errors.InvalidEventError: load event: run_id is not set
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    target: GoldTable
    run_id: NonEmptyText

    @classmethod
    def from_event(cls, event: Any) -> LoadRequest:
        """Validate a Lambda event.

        Raises
        ------
        InvalidEventError
            ``target`` or ``run_id`` is missing or empty, or ``target`` is not a
            warehouse table (the message names the field).
        """
        return parse_event(cls, event, what="load event")


class LoadSettings(BaseModel):
    """Where load reads, and how it checks references (environment variables in Lambda).

    ``fk_triggers`` is ``"auto"`` (insert facts with the foreign-key triggers off when
    the session may, after the set-based checks) or ``"always"`` (keep them on).

    Examples
    --------
    >>> LoadSettings(bucket="totes-processed").fk_triggers
    'auto'
    >>> LoadSettings.from_environment(  # doctest: +ELLIPSIS
    ...     {"PROCESSED_BUCKET": "p", "LOAD_FK_TRIGGERS": "never"})
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable LOAD_FK_TRIGGERS: ... (got 'never')
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: NonEmptyText = Field(alias=EnvironmentVariable.PROCESSED_BUCKET)
    fk_triggers: Literal["auto", "always"] = Field(
        FK_TRIGGERS_AUTO, alias=EnvironmentVariable.LOAD_FK_TRIGGERS
    )
    #: A fact file whose rows reference a dimension row the warehouse lacks waits this
    #: long for it (the row may be a snapshot away) before those rows are quarantined.
    reject_after: Seconds = Field(
        DEFAULT_REJECT_AFTER, alias=EnvironmentVariable.LOAD_REJECT_AFTER_SECONDS
    )
    #: Gold files applied per invocation at most; the rest wait for the next one.
    max_files: PositiveInt = Field(DEFAULT_LOAD_MAX_FILES, alias=EnvironmentVariable.LOAD_MAX_FILES)

    @field_validator("fk_triggers", mode="before")
    @classmethod
    def _unset_is_auto(cls, value: Any) -> Any:
        return value or FK_TRIGGERS_AUTO

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> LoadSettings:
        """Read the settings from the function's environment.

        ``PROCESSED_BUCKET`` is required; ``LOAD_FK_TRIGGERS`` (``auto`` or ``always``),
        ``LOAD_REJECT_AFTER_SECONDS`` and ``LOAD_MAX_FILES`` are optional.

        Raises
        ------
        InvalidSettingError
            ``PROCESSED_BUCKET`` is not set, or another variable does not fit (named).
        """
        return settings_from_environment(cls, environment)


def load_target(
    request: LoadRequest,
    settings: LoadSettings,
    *,
    warehouse_dsn: Callable[[], str],
    s3: Any,
    lake: Lake | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> LoadResult:
    """Apply the gold files of one warehouse table that the ledger lacks, oldest first.

    At most ``settings.max_files`` are applied (files left waiting for a dimension row
    do not count); the files not attempted are counted in the result.

    Parameters
    ----------
    request
        The warehouse table and the run id (recorded in the ledger with each file).
    settings
        The processed bucket.
    warehouse_dsn
        Returns the warehouse DSN (called once: a secret costs a call).
    s3
        The S3 client.
    lake
        The lake, which gets what the warehouse committed (none: the warehouse alone).
    clock
        Now, for the freshness lag of a fact table (``last_updated`` is UTC).

    Returns
    -------
    LoadResult
        Per file, the rows loaded, skipped and rejected; for facts, the freshness lag.

    Raises
    ------
    WarehouseSchemaMissingError
        The warehouse lacks the target table, a table it references, or the ledger.
    GoldFileUnreadableError, GoldFileSchemaError
        A gold file is not Parquet or does not fit its table; the files before it stay
        loaded, it and the files after it stay pending.
    DatabaseUnreachableError, AuthenticationFailedError, DatabaseNotFoundError
        The warehouse cannot be reached with the credentials given.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from totes.db import connect
    >>> from totes.parquet_objects import parquet_bytes
    >>> from totes.warehouse.schema import init_warehouse
    >>> from totes.warehouse.star import STAR_SCHEMAS
    >>> from totes.zones.gold import gold_key
    >>> with connect(dsn) as warehouse:
    ...     _ = init_warehouse(warehouse)
    >>> staff = pa.Table.from_pylist([{"staff_id": 1, "first_name": "Jeremie",
    ...     "last_name": "Franey", "department_name": "Purchasing", "location": "Manchester",
    ...     "email_address": "jeremie@example.com"}], schema=STAR_SCHEMAS["dim_staff"])
    >>> _ = s3.put_object(Bucket="processed", Key=gold_key("dim_staff", 1, "exec-1", "ab12"),
    ...                   Body=parquet_bytes(staff))
    >>> request = LoadRequest.from_event({"target": "dim_staff", "run_id": "exec-1"})
    >>> settings = LoadSettings.from_environment({"PROCESSED_BUCKET": "processed"})
    >>> result = load_target(request, settings, warehouse_dsn=lambda: dsn, s3=s3)
    >>> result.files, result.rows_loaded, result.has_more
    (1, 1, False)
    >>> load_target(request, settings, warehouse_dsn=lambda: dsn, s3=s3).files  # loaded once
    0
    """
    started = time.perf_counter()
    result = LoadResult(table=request.target, run_id=request.run_id)
    dsn = warehouse_dsn()
    result.findings = unverified_tls_findings(unverified_tls(dsn), WAREHOUSE_DATABASE, Stage.LOAD)
    with kept_connection(
        dsn, autocommit=True, client_encoding="UTF8", application_name="totes load"
    ) as conn:
        warehouse_sql.prepare_session(conn)
        _require_tables(conn, request.target)
        # Only what follows the last file every predecessor of which is loaded: the
        # listing stays as short as what is new, however long the history behind it,
        # and is not made when transform has committed nothing after that file.
        start_after = warehouse_sql.listing_start(conn, request.target)
        listed = (
            list_gold_files(s3, settings.bucket, request.target, start_after=start_after)
            if _may_have_new_files(s3, settings.bucket, request.target, start_after)
            else []
        )
        result.files_listed = len(listed)
        result.fk_triggers = (
            settings.fk_triggers == FK_TRIGGERS_ALWAYS
            or request.target not in FACT_TABLES
            or not warehouse_sql.may_skip_fk_triggers(conn)
        )
        done = warehouse_sql.loaded_keys(conn, [file.key for file in listed])
        unloaded = [file for file in listed if file.key not in done]
        for position, file in enumerate(unloaded):
            # Files left waiting for a dimension row do not use up the limit: the files
            # after them may well apply.
            if len(result.file_outcomes) - len(result.deferred) >= settings.max_files:
                result.files_remaining = len(unloaded) - position
                break
            may_reject = file.written_at is None or (
                clock() - file.written_at >= settings.reject_after
            )
            result.record_file(
                _apply_file(
                    conn,
                    s3,
                    settings.bucket,
                    request,
                    file,
                    fk_triggers=result.fk_triggers,
                    may_reject=may_reject,
                )
            )
        if request.target in FACT_TABLES:
            replays = _replay_quarantine(
                conn,
                s3,
                settings,
                request,
                fk_triggers=result.fk_triggers,
                written_now={o.rejects_key for o in result.file_outcomes if o.rejects_key},
            )
            for replay in replays:
                result.record_replay(replay)
        _move_listing_start(
            conn,
            request.target,
            start_after=start_after,
            listed=listed,
            done=done,
            outcomes=result.file_outcomes,
        )
        if lake is not None:
            result.rows_exported_to_lake = _export_to_lake(
                conn, lake, request, result.file_outcomes
            )
        if request.target in FACT_TABLES:
            result.newest_last_updated = warehouse_sql.newest_version(conn, request.target)
    if result.newest_last_updated is not None:
        newest = result.newest_last_updated.replace(tzinfo=UTC)
        result.freshness_lag_seconds = (clock() - newest).total_seconds()
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def _may_have_new_files(s3: Any, bucket: str, target: str, start_after: str | None) -> bool:
    """False when every file transform committed for ``target`` is at or before the listing's
    start (one GET, where a listing costs as much as twelve), so that a listing could only
    find files put there by hand or left unloaded by a release before files were numbered:
    those are found at the target's next commit.

    A file committed but not yet published is after the start too: load keeps listing
    until transform publishes it. A transform state made afresh numbers its files from 1
    again, below the start: a listing after the start would not find them either (see
    ADR 29).
    """
    committed = committed_sequence(s3, bucket, target)
    if committed is None:
        return True
    cursor = GoldFileKey.parse(start_after) if start_after else None
    loaded_through = cursor.sequence if cursor is not None and cursor.sequence else 0
    return committed > loaded_through


def _move_listing_start(
    conn: psycopg.Connection[Any],
    target: str,
    *,
    start_after: str | None,
    listed: list[GoldFileKey],
    done: set[str],
    outcomes: list[FileOutcome],
) -> None:
    applied = {o.key for o in outcomes if not o.deferred}  # applied here or elsewhere
    cursor = GoldFileKey.parse(start_after) if start_after else None
    through = listed_through(cursor, listed, done | applied)
    if through is not None and through != cursor and through.sequence is not None:
        warehouse_sql.move_listing_start(conn, target, through.key, through.sequence)


def _require_tables(conn: psycopg.Connection[Any], target: str) -> None:
    needed = [target, LOAD_LEDGER_TABLE, LOAD_LISTING_TABLE]
    if target in FACT_TABLES:
        needed.extend([NEWEST_VERSIONS_TABLE, warehouse_sql.DATE_DIMENSION])
        needed.extend(WAREHOUSE[target].references.values())
    missing = warehouse_sql.missing_tables(conn, dict.fromkeys(needed))
    if missing:
        raise WarehouseSchemaMissingError(
            f"the warehouse has no table {', '.join(missing)}: run `totes warehouse init`"
        )


def _apply_file(
    conn: psycopg.Connection[Any],
    s3: Any,
    bucket: str,
    request: LoadRequest,
    file: GoldFileKey,
    *,
    fk_triggers: bool,
    may_reject: bool = True,
) -> FileOutcome:
    """Apply one gold file in one transaction (see the module docstring for the steps).

    A fact file whose rows reference dimension rows the warehouse lacks is rolled back
    and left pending while ``may_reject`` is false: ingest extracts each table in its
    own snapshot, so a new order can arrive one run before its new counterparty.
    """
    rows = read_gold_file(s3, bucket, file)
    started = time.perf_counter()
    try:
        return _apply_file_once(
            conn,
            s3,
            bucket,
            request,
            file,
            rows=rows,
            fk_triggers=fk_triggers,
            may_reject=may_reject,
        )
    except _WaitForReferencesError as waiting:
        return FileOutcome(
            key=file.key,
            rows_in_file=rows.num_rows,
            deferred=True,
            findings=_findings(
                FindingKind.WAITING_FOR_DIMENSION, file, rows, waiting.rejected, where=file.key
            ),
            duration_ms=(time.perf_counter() - started) * 1000,
        )


class _WaitForReferencesError(Exception):
    """Rolls a fact file back: rows reference dimension rows that may still arrive."""

    def __init__(self, rejected: list[RejectedRow]) -> None:
        super().__init__(f"{len(rejected)} rows wait for a dimension row")
        self.rejected = rejected


def _findings(
    kind: FindingKind,
    file: GoldFileKey | RejectsKey,
    rows: pa.Table,
    rejected: list[RejectedRow],
    *,
    where: str,
) -> tuple[Finding, ...]:
    """The rejected rows of a file by cause, with the first versions of each as examples."""
    version_key = WAREHOUSE[file.table].key
    ids = rows.column(version_key).to_pylist() if rejected else []
    by_cause: dict[str, list[int]] = {}
    for row in rejected:
        by_cause.setdefault(row.cause, []).append(row.position)
    detail = {
        FindingKind.WAITING_FOR_DIMENSION: "{} (quarantined if it has not arrived in time)",
        FindingKind.ROWS_REJECTED: "{} (kept, and replayed when it arrives)",
        FindingKind.QUARANTINED: "{} (replayed when it arrives)",
    }[kind]
    return tuple(
        Finding(
            kind=kind,
            table=file.table,
            stage=Stage.LOAD,
            detail=detail.format(cause),
            count=len(positions),
            examples=[f"{version_key} {ids[p]}" for p in positions[:MAX_EXAMPLES]],
            where=[where],
        )
        for cause, positions in by_cause.items()
    )


def _apply_file_once(
    conn: psycopg.Connection[Any],
    s3: Any,
    bucket: str,
    request: LoadRequest,
    file: GoldFileKey,
    *,
    rows: pa.Table,
    fk_triggers: bool,
    may_reject: bool,
) -> FileOutcome:
    started = time.perf_counter()
    target = request.target
    if target in FACT_TABLES:
        _extend_dim_date(conn, target, rows)
    with conn.transaction():
        warehouse_sql.lock_target(conn, target)
        if not warehouse_sql.claim_file(conn, file.key, target, request.run_id, rows.num_rows):
            return FileOutcome(key=file.key, rows_in_file=rows.num_rows, applied_elsewhere=True)
        rejected: list[RejectedRow] = []
        rejects_key: str | None = None
        copied_in: pa.Table | None = None
        if target in DIMENSION_TABLES:
            key = [WAREHOUSE[target].key]
            if warehouse_sql.has_rows(conn, target) or has_repeated_key(rows, key):
                warehouse_sql.stage_rows(conn, target, rows)
                loaded = warehouse_sql.upsert_dimension(conn, target)
            else:  # every row is new
                loaded = warehouse_sql.copy_rows(conn, target, rows)
                copied_in = rows
        else:
            loaded, rejected, copied_in = _apply_facts(conn, file, rows, fk_triggers=fk_triggers)
            if rejected and not may_reject:
                raise _WaitForReferencesError(rejected)
            if rejected:
                rejects_key = write_rejects(s3, bucket, load_rejects_key(file), rows, rejected)
        warehouse_sql.record_applied(conn, file.key, loaded)
    return FileOutcome(
        key=file.key,
        rows_in_file=rows.num_rows,
        rows_loaded=loaded,
        rows_rejected=len(rejected),
        rejects_key=rejects_key,
        copied_in=copied_in,
        findings=(
            _findings(FindingKind.ROWS_REJECTED, file, rows, rejected, where=rejects_key)
            if rejects_key
            else ()
        ),
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _export_to_lake(
    conn: psycopg.Connection[Any], lake: Lake, request: LoadRequest, files: list[FileOutcome]
) -> int:
    """Commit to the lake what it lacks of the table (and of dim_date, which facts extend)."""
    copied_in = [file.copied_in for file in files if file.copied_in is not None]
    tables = (
        [request.target, warehouse_sql.DATE_DIMENSION]
        if request.target in FACT_TABLES
        else [request.target]
    )
    exported = 0
    for table in tables:
        with conn.transaction():
            warehouse_sql.lock_target(conn, table)
            exported += export_to_lake(
                conn,
                lake,
                table,
                run_id=request.run_id,
                committed=copied_in if table == request.target else (),
            )
    return exported


def _replay_quarantine(
    conn: psycopg.Connection[Any],
    s3: Any,
    settings: LoadSettings,
    request: LoadRequest,
    *,
    fk_triggers: bool,
    written_now: set[str],
) -> list[FileOutcome]:
    """Apply the quarantined rows of a fact table whose dimension row has arrived since.

    Every quarantine object is tried, but those this invocation wrote (their rows just
    failed). An object that cannot be read is reported, and the others are still tried.
    """
    outcomes = []
    for quarantined in list_quarantined(s3, settings.bucket, request.target):
        if quarantined.key in written_now:
            continue
        started = time.perf_counter()
        try:
            rows = read_quarantined(s3, settings.bucket, quarantined)
        except (GoldFileUnreadableError, GoldFileSchemaError) as exc:
            outcomes.append(_unreadable(quarantined, exc))
            continue
        loaded: int = 0
        still_missing: list[RejectedRow] = []
        _extend_dim_date(conn, request.target, rows)
        with conn.transaction():
            warehouse_sql.lock_target(conn, request.target)
            loaded, still_missing, _ = _apply_facts(
                conn, quarantined, rows, fk_triggers=fk_triggers
            )
            if len(still_missing) == rows.num_rows:
                raise psycopg.Rollback  # nothing can go in yet: leave everything as it was
        if len(still_missing) < rows.num_rows:
            # Committed: the object now keeps only the rows still missing a dimension row.
            if still_missing:
                write_rejects(s3, settings.bucket, quarantined.key, rows, still_missing)
            else:
                s3.delete_object(Bucket=settings.bucket, Key=quarantined.key)
        replayed = (
            Finding(
                kind=FindingKind.ROWS_REPLAYED,
                table=request.target,
                stage=Stage.LOAD,
                detail="quarantined rows whose dimension row has arrived",
                count=loaded,
                where=[quarantined.key],
            ),
        )
        outcomes.append(
            FileOutcome(
                key=quarantined.key,
                rows_in_file=rows.num_rows,
                rows_loaded=loaded,
                findings=(replayed if loaded else ())
                + _findings(
                    FindingKind.QUARANTINED,
                    quarantined,
                    rows,
                    still_missing,
                    where=quarantined.key,
                ),
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        )
    return outcomes


def _unreadable(quarantined: RejectsKey, exc: Exception) -> FileOutcome:
    return FileOutcome(
        key=quarantined.key,
        rows_in_file=0,
        findings=(
            Finding(
                kind=FindingKind.QUARANTINED,
                table=quarantined.table,
                stage=Stage.LOAD,
                detail=f"a quarantine object cannot be replayed: {exc}",
                count=0,
                where=[quarantined.key],
            ),
        ),
    )


def _extend_dim_date(conn: psycopg.Connection[Any], target: str, rows: pa.Table) -> None:
    """Add the dates a fact file references to dim_date, committed before the file's load.

    In a transaction of its own: inserted inside a load, a new date would make every
    other load that references it wait for that whole load to commit (the unique index
    holds the second insert until the first commits), so concurrent loads of facts
    would go one after another. dim_date only grows, and a load that fails leaves
    dates its retry adds anyway.
    """
    dates = (warehouse_sql.DATE_DIMENSION, WAREHOUSE[warehouse_sql.DATE_DIMENSION].key)
    with conn.transaction():
        warehouse_sql.extend_dim_date(conn, referenced_keys(rows, target, dates))


def _apply_facts(
    conn: psycopg.Connection[Any],
    file: GoldFileKey | RejectsKey,
    rows: pa.Table,
    *,
    fk_triggers: bool,
) -> tuple[int, list[RejectedRow], pa.Table | None]:
    """Insert a fact file's new versions; return how many went in, the rejected rows, and the
    rows copied straight in with the surrogate keys they were given (None if staged).

    Unless the fact table is empty, only the version keys are copied first, to count
    the versions the warehouse already holds; only the rows it lacks are checked and
    copied whole: straight into the table, numbered, when nothing is missing, else
    through a stage.
    """
    target = file.table
    present = 0
    if warehouse_sql.has_rows(conn, target):
        keys = rows.select(list(WAREHOUSE[target].version_key))
        warehouse_sql.stage_rows(conn, target, keys, keys_only=True)
        present = warehouse_sql.count_present_versions(conn, target)
    if present == rows.num_rows:
        return 0, [], None
    if present:
        new_positions = pa.array(warehouse_sql.new_positions(conn, target), pa.int64())
        new = rows.take(new_positions)
    else:
        new_positions, new = consecutive(0, rows.num_rows), rows
    references = referenced_values(new, target)
    missing = warehouse_sql.lock_references(conn, target, references)
    version = list(WAREHOUSE[target].version_key)
    if not missing:
        in_order = new.sort_by([(column, "ascending") for column in version])
        if pc.all(last_of_each_key(in_order, version)).as_py():
            # Every row goes in: straight into the table, in the order a staged insert
            # takes, numbered here so that the lake export need not read them back.
            first = warehouse_sql.reserve_record_keys(conn, target, in_order.num_rows)
            record_key = pa.field(str(WAREHOUSE[target].record_key), pa.int32(), nullable=False)
            numbered = in_order.add_column(
                0, record_key, consecutive(first, in_order.num_rows, pa.int32())
            )
            copied = warehouse_sql.copy_rows(conn, target, numbered, fk_triggers=fk_triggers)
            warehouse_sql.raise_newest_version(conn, target, in_order)
            return copied, [], numbered
    warehouse_sql.stage_rows(conn, target, new, new_positions)
    rejected: list[RejectedRow] = []
    going_in = new
    if missing:
        rejected = warehouse_sql.quarantine_missing_references(conn, target)
        # Rows that appeared since the first lock are locked now; none may be missing.
        kept = pc.invert(
            pc.is_in(
                new_positions, value_set=pa.array([row.position for row in rejected], pa.int64())
            )
        )
        going_in = new.filter(kept)
        references = referenced_values(going_in, target)
        vanished = warehouse_sql.lock_references(conn, target, references)
        if vanished:
            raise ReferencedRowDeletedError(
                f"rows of {', '.join(vanished)} that {file.key} references were deleted "
                "during the load; the file stays pending"
            )
    loaded = warehouse_sql.insert_facts(conn, target, fk_triggers=fk_triggers)
    warehouse_sql.raise_newest_version(conn, target, going_in)
    return loaded, rejected, None
