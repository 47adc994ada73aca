"""The maintenance step: the lake's Iceberg tables kept compact, their history bounded.

Each export appends a small file per month it touches (a dimension's upsert rewrites
the files holding the keys it changes), and each commit adds a snapshot and a metadata
file. Left alone, a year of five-minute runs makes a fact table tens of thousands of
small files. This step, the last of every execution, works only on the tables that
need it, which it learns from one Glue request: a table whose
:data:`~totes.lake.iceberg.COMMITS_SINCE_MAINTENANCE` (a table property, which Glue
mirrors) has reached ``every_commits``. For each, in one pass:

1. *compaction*: every partition (a fact's month; a dimension's whole table) with more
   than one small file is rewritten as files of the target size, in one commit that also
   resets the count and sets the lake's write properties again
   (:data:`~totes.lake.iceberg.WRITE_PROPERTIES`);
2. *expiry*: snapshots that stopped being current before the retention are expired:
   time travel reaches back that far;
3. *orphans*, at most once every :data:`ORPHAN_CHECK_EVERY`: files under the table's
   folder that no remaining snapshot or metadata file references (replaced by
   compaction and since expired, metadata files older than the ten the metadata log
   names, or files written by a commit that lost its race), older than
   :data:`ORPHAN_MIN_AGE`, are deleted. Finding them reads the manifest list of every
   snapshot kept and every manifest, so its cost grows with the retention: 500
   executions in a row took maintenance from 100 to 1,016 S3 GETs per execution when it
   looked every time (ADR 21).

An idle execution therefore costs one Glue request here. A commit that loses a race
with an export is made again on the table as it then stands. A table that fails does
not stop the others; the step then raises :class:`~totes.errors.LakeMaintenanceError`,
naming each (the next execution tries again).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, computed_field

from totes.contracts import NonEmptyText, parse_event, settings_from_environment
from totes.errors import LakeCommitError, LakeMaintenanceError
from totes.lake.iceberg import (
    COMMITS_SINCE_MAINTENANCE,
    MAINTENANCE,
    RUN,
    WRITE_PROPERTIES,
    Lake,
    LakeSettings,
)
from totes.lake.layout import table_prefix
from totes.names import EnvironmentVariable
from totes.tables import WAREHOUSE, WAREHOUSE_TABLES, largest_first

if TYPE_CHECKING:
    from pyiceberg.table import Table

#: Files younger than this are never taken for orphans: a commit in flight (a Lambda
#: runs 15 minutes at most) may be about to reference them.
ORPHAN_MIN_AGE: Final = timedelta(hours=2)
#: How often a table's folder is searched for orphans: they only cost storage, and the
#: search reads every snapshot kept.
ORPHAN_CHECK_EVERY: Final = timedelta(hours=24)
#: The table property that says when the table's orphans were last looked for.
ORPHANS_CHECKED_AT: Final = "totes.orphans-checked-at"
#: Iceberg's table property for the size of the files its writers make.
_TARGET_FILE_SIZE: Final = "write.target-file-size-bytes"
#: A file is small below this share of the target size. pyiceberg sizes the files it
#: writes by their Arrow bytes, and zstd Parquet of these tables is 3-10 times smaller:
#: a file compaction wrote must not count as small, or a large partition would be
#: rewritten by every maintenance.
SMALL_FILE_SHARE: Final = 1 / 16


class MaintenanceRequest(BaseModel):
    """The event of ``MaintainLake``: the run it belongs to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: NonEmptyText

    @classmethod
    def from_event(cls, event: Any) -> MaintenanceRequest:
        """Validate the event.

        Raises
        ------
        InvalidEventError
            ``run_id`` is missing or empty.
        """
        return parse_event(cls, event, what="lake maintenance event")


class MaintenanceSettings(BaseModel):
    """How often tables are maintained, how far back time travel reaches, how big files are.

    Examples
    --------
    >>> settings = MaintenanceSettings.from_environment(
    ...     {"PROCESSED_BUCKET": "p", "LAKE_DATABASE": "lake"})
    >>> settings.every_commits, settings.snapshot_retention, settings.target_file_mb
    (12, datetime.timedelta(days=1), 128)
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: NonEmptyText = Field(alias=EnvironmentVariable.PROCESSED_BUCKET)
    database: NonEmptyText = Field(alias=EnvironmentVariable.LAKE_DATABASE)
    #: A table is maintained once this many commits have piled up since the last time:
    #: at the five-minute schedule, about hourly for a table that changes every run.
    every_commits: PositiveInt = Field(12, alias=EnvironmentVariable.LAKE_MAINTAIN_EVERY_COMMITS)
    #: Snapshots older than this are expired: ``--as-of`` reaches back this far.
    snapshot_retention_hours: PositiveInt = Field(
        24, alias=EnvironmentVariable.LAKE_SNAPSHOT_RETENTION_HOURS
    )
    #: Compaction writes files of about this size.
    target_file_mb: PositiveInt = Field(128, alias=EnvironmentVariable.LAKE_TARGET_FILE_MB)

    @property
    def snapshot_retention(self) -> timedelta:
        """The retention as a duration."""
        return timedelta(hours=self.snapshot_retention_hours)

    @property
    def lake(self) -> LakeSettings:
        """Where the lake is."""
        return LakeSettings(bucket=self.bucket, database=self.database)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> MaintenanceSettings:
        """Read ``PROCESSED_BUCKET`` and ``LAKE_DATABASE`` (required) and the optional
        ``LAKE_MAINTAIN_EVERY_COMMITS``, ``LAKE_SNAPSHOT_RETENTION_HOURS`` and
        ``LAKE_TARGET_FILE_MB``.

        Raises
        ------
        InvalidSettingError
            A required one is not set, or one is not a positive whole number.
        """
        return settings_from_environment(cls, environment)


class TableMaintained(BaseModel):
    """What the step did to one table."""

    model_config = ConfigDict(frozen=True)

    table: str
    partitions_compacted: NonNegativeInt = 0
    files_before: NonNegativeInt = 0
    files_after: NonNegativeInt = 0
    snapshots_expired: NonNegativeInt = 0
    orphans_removed: NonNegativeInt = 0


class MaintenanceResult(BaseModel):
    """What the maintenance step did: the handler's return value counts it, the log has each
    table.

    Examples
    --------
    >>> result = MaintenanceResult(run_id="r", database="lake", tables=11,
    ...     maintained=[TableMaintained(table="dim_staff", partitions_compacted=1)])
    >>> result.payload()  # doctest: +NORMALIZE_WHITESPACE
    {'run_id': 'r', 'database': 'lake', 'tables': 11, 'tables_maintained': 1,
     'partitions_compacted': 1, 'snapshots_expired': 0, 'orphans_removed': 0}
    """

    run_id: str
    database: str
    #: Lake tables the catalog lists.
    tables: NonNegativeInt = 0
    maintained: list[TableMaintained] = Field(default_factory=list, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tables_maintained(self) -> int:
        """Tables that were due and were maintained."""
        return len(self.maintained)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def partitions_compacted(self) -> int:
        """Partitions whose small files were rewritten, over every table."""
        return sum(table.partitions_compacted for table in self.maintained)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def snapshots_expired(self) -> int:
        """Snapshots expired, over every table."""
        return sum(table.snapshots_expired for table in self.maintained)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def orphans_removed(self) -> int:
        """Files no snapshot referenced that were deleted, over every table."""
        return sum(table.orphans_removed for table in self.maintained)

    def payload(self) -> dict[str, Any]:
        """The handler's return value (counts only)."""
        return self.model_dump(mode="json")


def due_tables(glue: Any, database: str, every_commits: int) -> tuple[int, list[str]]:
    """The lake tables the catalog lists, and those whose commits reached ``every_commits``.

    One request per 100 tables: Glue mirrors each table's properties in its parameters.
    """
    listed, due = 0, []
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
        for table in page.get("TableList", []):
            if table["Name"] not in WAREHOUSE_TABLES:
                continue
            listed += 1
            commits = table.get("Parameters", {}).get(COMMITS_SINCE_MAINTENANCE, "0")
            if commits.isdigit() and int(commits) >= every_commits:
                due.append(table["Name"])
    return listed, largest_first(due)


def maintain_lake(
    request: MaintenanceRequest,
    settings: MaintenanceSettings,
    *,
    lake: Lake,
    glue: Any,
    now: datetime | None = None,
) -> MaintenanceResult:
    """Compact, expire and clean the lake tables that are due.

    Raises
    ------
    LakeMaintenanceError
        Some tables could not be maintained (named, with why); the others were.

    Examples
    --------
    ``conn`` is a connection to a warehouse, ``lake`` a lake with no table yet and
    ``glue`` its Glue client. Two tables are exported once each, which makes them due
    when every commit counts:

    >>> from totes.load.lake_export import export_to_lake
    >>> for table in ("dim_currency", "dim_payment_type"):
    ...     _ = export_to_lake(conn, lake, table, run_id="run-1")
    >>> settings = MaintenanceSettings(bucket="processed", database="totes_lake",
    ...                                every_commits=1)
    >>> result = maintain_lake(MaintenanceRequest(run_id="run-1"), settings,
    ...                        lake=lake, glue=glue)
    >>> result.payload()["tables_maintained"]
    2
    >>> maintain_lake(MaintenanceRequest(run_id="run-2"), settings,
    ...               lake=lake, glue=glue).payload()["tables_maintained"]
    0
    """
    from pyiceberg.exceptions import NoSuchTableError  # noqa: PLC0415

    moment = now or datetime.now(UTC)
    result = MaintenanceResult(run_id=request.run_id, database=settings.database)
    try:
        result.tables, due = due_tables(glue, settings.database, settings.every_commits)
    except (BotoCoreError, ClientError) as exc:
        raise LakeMaintenanceError(
            f"the Glue database {settings.database} cannot be read (the warehouse and the "
            f"lake are loaded; the next run tries again): {type(exc).__name__}: {exc}"
        ) from exc
    failures: dict[str, Exception] = {}
    for table in due:
        try:
            result.maintained.append(maintain_table(lake, table, settings, request.run_id, moment))
        except NoSuchTableError:
            continue  # dropped since the listing: the next load makes it afresh
        except (  # one table's fault: the others are still maintained
            LakeCommitError,
            BotoCoreError,
            ClientError,
            OSError,
            pa.ArrowException,
        ) as exc:
            failures[table] = exc
    if failures:
        named = "; ".join(
            f"{table}: {type(exc).__name__}: {exc}" for table, exc in failures.items()
        )
        raise LakeMaintenanceError(
            f"{len(failures)} of {len(due)} lake tables due for maintenance were not "
            f"maintained (the lake is up to date; the next run tries again): {named}"
        ) from next(iter(failures.values()))
    return result


def maintain_table(
    lake: Lake, table: str, settings: MaintenanceSettings, run_id: str, now: datetime
) -> TableMaintained:
    """Compact one table's small files, expire its old snapshots, delete its orphans."""
    target = settings.target_file_mb * 1024 * 1024
    # A table gone since the listing is left alone: the next load makes it afresh.
    before, compacted = lake.commit(table, lambda current: _compact(current, target, run_id))
    expired = lake.commit(
        table, lambda current: expire_snapshots(current, now - settings.snapshot_retention)
    )
    current = lake.commit(table, lambda current: current)
    orphans = 0
    if _orphans_due(current, now):
        orphans = _remove_orphans(lake, current, now - ORPHAN_MIN_AGE)
        current = lake.commit(
            table,
            lambda current: _set_properties(current, {ORPHANS_CHECKED_AT: now.isoformat()}),
        )
    return TableMaintained(
        table=table,
        partitions_compacted=compacted,
        files_before=before,
        files_after=current.inspect.files().num_rows,
        snapshots_expired=expired,
        orphans_removed=orphans,
    )


def _orphans_due(current: Table, now: datetime) -> bool:
    """Whether the table's folder was last searched for orphans long enough ago (or never)."""
    try:
        checked = datetime.fromisoformat(current.properties[ORPHANS_CHECKED_AT])
    except (KeyError, ValueError):  # never searched, or a value not of ours: search now
        return True
    return now - checked >= ORPHAN_CHECK_EVERY


def _set_properties(current: Table, properties: dict[str, str]) -> Table:
    with current.transaction() as transaction:
        transaction.set_properties(properties)
    return current


def _compact(current: Table, target: int, run_id: str) -> tuple[int, int]:
    """Rewrite the partitions of many small files in one commit; (files before, partitions)."""
    from pyiceberg.expressions import AlwaysTrue, EqualTo  # noqa: PLC0415

    files = current.inspect.files().select(["file_size_in_bytes", "partition"]).to_pylist()
    partition = WAREHOUSE[current.name()[-1]].lake_partition
    small: dict[str | None, int] = {}
    for file in files:
        if file["file_size_in_bytes"] < target * SMALL_FILE_SHARE:
            month = file["partition"].get(partition) if partition else None
            small[month] = small.get(month, 0) + 1
    crowded = [month for month, count in small.items() if count > 1]
    with current.transaction() as transaction:
        for month in crowded:
            # EqualTo's own __init__ takes (term, literal); its pydantic fields hide it from mypy.
            where = EqualTo(partition, month) if partition else AlwaysTrue()  # type: ignore[call-arg, arg-type]
            rows = current.scan(row_filter=where).to_arrow()
            transaction.overwrite(
                rows,
                overwrite_filter=where,
                snapshot_properties={RUN: run_id, MAINTENANCE: "compaction"},
            )
        transaction.set_properties(
            {**WRITE_PROPERTIES, COMMITS_SINCE_MAINTENANCE: "0", _TARGET_FILE_SIZE: str(target)}
        )
    return len(files), len(crowded)


def expire_snapshots(current: Table, older_than: datetime) -> int:
    """Expire the snapshots that stopped being current before ``older_than``; how many.

    The snapshot that was current at ``older_than`` stays (and the current one): the
    table can still be read as of any moment since.
    """
    cutoff_ms = int(older_than.timestamp() * 1000)
    kept = {current.metadata.current_snapshot_id}
    at_cutoff = current.snapshot_as_of_timestamp(cutoff_ms)
    if at_cutoff is not None:
        kept.add(at_cutoff.snapshot_id)
    old = [
        snapshot.snapshot_id
        for snapshot in current.snapshots()
        if snapshot.timestamp_ms < cutoff_ms and snapshot.snapshot_id not in kept
    ]
    if old:
        current.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def _remove_orphans(lake: Lake, current: Table, older_than: datetime) -> int:
    """Delete the table's files that nothing references and that are older than ``older_than``."""
    referenced = set(current.inspect.all_files().column("file_path").to_pylist())
    referenced.update(current.inspect.all_manifests().column("path").to_pylist())
    referenced.update(snapshot.manifest_list for snapshot in current.snapshots())
    referenced.update(entry.metadata_file for entry in current.metadata.metadata_log)
    referenced.add(current.metadata_location)
    # Statistics other engines wrote (Athena's or Spark's ANALYZE), referenced by metadata.
    referenced.update(file.statistics_path for file in current.metadata.statistics)
    referenced.update(file.statistics_path for file in current.metadata.partition_statistics)
    bucket = lake.settings.bucket
    prefix = table_prefix(current.name()[-1])
    orphans = [
        {"Key": item["Key"]}
        for page in lake.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if f"s3://{bucket}/{item['Key']}" not in referenced and item["LastModified"] < older_than
    ]
    for start in range(0, len(orphans), 1000):
        lake.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": orphans[start : start + 1000], "Quiet": True}
        )
    return len(orphans)
