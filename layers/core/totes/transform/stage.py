"""One transform step: the new raw batches of a warehouse table's sources into one gold file.

Each warehouse table ("target") keeps its own state object in the processed
bucket, ``_state/transform/<target>.json``: which raw manifests it has consumed
(per source table) and, for the dimensions that join lookup tables, where its
mirror of those tables is. Only this target writes that object, with an S3
conditional write on the ETag it read, so two overlapping executions cannot both
consume the same batches.

Order of effects, which makes a crash at any point harmless and hands load only
what transform committed:

1. read the state; publish what it lists as pending (see 5: a crash may have
   stopped the run that committed it), then list the manifests not consumed yet
   (this run's batches and any left by an earlier failed run) and take the oldest
   of them, across the target's sources, up to ``TRANSFORM_MAX_ROWS`` raw rows; the
   rest wait for the next invocation (``has_more``), so memory is bounded by the
   limit, not by the backlog. A source is listed only when the newest batch its
   watermark names (read for all sources in one request, before listing) is not one
   the state has caught up with: one whose listing left nothing of the source
   behind. An idle run lists nothing;
2. read the batches taken, merge them into the mirrors (new immutable objects);
3. stage the gold file and any rejects under ``_staging/transform/<target>/``,
   where load never looks; names derive from the consumed manifests, so a retry
   rewrites nothing;
4. write the state (compare-and-set), listing the staged files as pending: this
   write commits them. An execution that loses the race raises
   :class:`~totes.errors.TransformStateConflictError`, and its staged files are
   never published: they are ignored by design and expire with the bucket's
   lifecycle rule for the staging prefix;
5. publish: write each pending file at its final key,
   ``<target>/seq=<sequence>/run=<run_id>/<sequence>-<digest>.parquet`` (gold) or under
   ``rejects/``, then clear the pending list (a second compare-and-set), so the runs
   after it touch nothing but the state and the listing. A run that stopped before
   clearing it is finished by the next run, which publishes what is not (one HEAD
   each) and clears the list.

Load lists only final keys, so it applies exactly the committed files, once each.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from totes.conditional_writes import (
    exists,
    put_content_named,
    put_if,
    read_document,
)
from totes.contracts import (
    GoldTable,
    NonEmptyText,
    Seconds,
    parse_event,
    settings_from_environment,
)
from totes.errors import StagedFileMissingError, TransformStateConflictError
from totes.findings import FindingKind
from totes.ingest.raw_rows import read_rows
from totes.ingest.raw_zone import Manifest, read_manifest
from totes.ingest.watermarks import NewestBatches
from totes.names import DEFAULT_TRANSFORM_MAX_ROWS, EnvironmentVariable
from totes.parquet_objects import parquet_bytes, read_parquet
from totes.results import TransformResult
from totes.tables import WAREHOUSE, Kind
from totes.transform import shapes
from totes.zones import raw
from totes.zones.gold import gold_key
from totes.zones.mirror import mirror_key
from totes.zones.rejects import transform_rejects_key
from totes.zones.state import CommittedFiles, staging_key, state_key

#: The longest any Lambda invocation runs: how late a manifest can arrive when ingest's
#: timeout is not known.
LONGEST_INVOCATION: Final = timedelta(minutes=15)
#: Added to ingest's timeout: how far apart the clocks of two ingest invocations may be
#: (Lambda's hosts keep time to within milliseconds) and how long a PUT sent just
#: before the timeout may take to land.
CLOCK_MARGIN: Final = timedelta(minutes=1)


class TransformRequest(BaseModel):
    """The event of one transform Map item.

    Examples
    --------
    >>> TransformRequest.from_event({"target": "dim_staff", "run_id": "exec-1"}).target
    'dim_staff'
    >>> TransformRequest.from_event({"target": "staff", "run_id": "exec-1"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    totes.errors.InvalidEventError: transform event: target: ...not a warehouse table (got 'staff')
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    target: GoldTable
    run_id: NonEmptyText

    @classmethod
    def from_event(cls, event: Any) -> TransformRequest:
        """Validate a Lambda event.

        Raises
        ------
        InvalidEventError
            ``target`` is not a warehouse table or ``run_id`` is missing (named).
        """
        return parse_event(cls, event, what="transform event")


class TransformSettings(BaseModel):
    """The buckets transform reads and writes, and its bite (environment variables in Lambda).

    ``max_rows`` bounds the raw rows one invocation consumes for one target: batches
    are taken oldest first until the next would exceed it (a single batch larger than
    that is still taken whole: batches are never split, so keep it at least the
    ingest batch size).

    Examples
    --------
    >>> TransformSettings.from_environment({"INGESTED_BUCKET": "raw", "WATERMARK_TABLE": "wm"})
    Traceback (most recent call last):
    ...
    totes.errors.InvalidSettingError: environment variable PROCESSED_BUCKET is not set
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    ingested_bucket: NonEmptyText = Field(alias=EnvironmentVariable.INGESTED_BUCKET)
    processed_bucket: NonEmptyText = Field(alias=EnvironmentVariable.PROCESSED_BUCKET)
    watermark_table: NonEmptyText = Field(alias=EnvironmentVariable.WATERMARK_TABLE)
    max_rows: PositiveInt = Field(
        DEFAULT_TRANSFORM_MAX_ROWS, alias=EnvironmentVariable.TRANSFORM_MAX_ROWS
    )
    ingest_timeout: Seconds = Field(
        LONGEST_INVOCATION, alias=EnvironmentVariable.INGEST_TIMEOUT_SECONDS
    )

    @property
    def listed_back(self) -> timedelta:
        """How far behind the newest manifest consumed listing starts: ingest writes a
        manifest before its invocation times out, so none extracted earlier than that
        (clocks and a last PUT aside) can still arrive, and the listing holds the last
        few minutes of manifests however long the platform runs.

        Examples
        --------
        >>> TransformSettings.from_environment({"INGESTED_BUCKET": "raw", "PROCESSED_BUCKET":
        ...     "gold", "WATERMARK_TABLE": "wm", "INGEST_TIMEOUT_SECONDS": "120"}).listed_back
        datetime.timedelta(seconds=180)
        """
        return self.ingest_timeout + CLOCK_MARGIN

    @property
    def remembered(self) -> timedelta:
        """How far behind the newest manifest consumed the state keeps the keys consumed:
        as far as listing could reach with any ingest timeout, so a longer timeout (a
        wider listing) never finds a manifest the state forgot and transforms it again.

        Examples
        --------
        >>> TransformSettings.from_environment({"INGESTED_BUCKET": "raw", "PROCESSED_BUCKET":
        ...     "gold", "WATERMARK_TABLE": "wm", "INGEST_TIMEOUT_SECONDS": "120"}).remembered
        datetime.timedelta(seconds=960)
        """
        return max(self.listed_back, LONGEST_INVOCATION + CLOCK_MARGIN)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> TransformSettings:
        """Read ``INGESTED_BUCKET``, ``PROCESSED_BUCKET``, ``WATERMARK_TABLE`` and the optional
        ``TRANSFORM_MAX_ROWS`` and ``INGEST_TIMEOUT_SECONDS`` (unset: the longest a Lambda
        invocation runs).

        Raises
        ------
        InvalidSettingError
            A bucket or the watermark table is not set, or the row limit is not a positive
            whole number.
        """
        return settings_from_environment(cls, environment)


class TransformState(CommittedFiles):
    """The state document of one target, ``_state/transform/<target>.json``.

    Examples
    --------
    >>> state = TransformState.model_validate_json('{"consumed": {}, "mirrors": {}}')
    >>> (state.sequence, state.pending, state.caught_up, state.etag)
    (0, [], {}, None)
    """

    #: Manifest keys consumed, per source table (recent ones: see
    #: :attr:`TransformSettings.remembered`).
    consumed: dict[str, list[str]] = Field(default_factory=dict)
    #: Per source table, the newest manifest its watermark named when a listing then left
    #: nothing of the table behind: while the watermark names the same, nothing is new.
    caught_up: dict[str, str] = Field(default_factory=dict)
    #: The current mirror object of each source table the target joins.
    mirrors: dict[str, str] = Field(default_factory=dict)
    #: Committed files not yet known to be published: ``[staged key, final key]`` pairs.
    pending: list[list[str]] = Field(default_factory=list)


def _read_state(s3: Any, bucket: str, target: str) -> TransformState:
    return read_document(s3, bucket, state_key(target), TransformState)


def _put_state(s3: Any, bucket: str, target: str, state: TransformState) -> bool:
    """Compare-and-set the state document on the ETag it was read with; False if it changed.

    Written, ``state`` takes the new ETag: it can be written again.
    """
    body = state.model_dump_json(indent=1).encode()
    etag = put_if(
        s3, bucket, state_key(target), body, etag=state.etag, ContentType="application/json"
    )
    if etag is None:
        return False
    state.etag = etag
    return True


def _write_state(s3: Any, bucket: str, target: str, state: TransformState) -> None:
    if not _put_state(s3, bucket, target, state):
        raise TransformStateConflictError(
            f"another execution transformed {target} meanwhile; retry to continue from it"
        )


def _publish(
    s3: Any, bucket: str, pending: list[list[str]], written: Mapping[str, bytes] | None = None
) -> None:
    """Write every committed file at its final key (idempotent: names derive from content).

    ``written`` holds the bodies this invocation staged, by staged key: those are put
    from memory. Others (committed by a run that stopped before publishing) are read
    back from staging unless already published.

    Raises
    ------
    StagedFileMissingError
        A committed file is neither staged nor published: it expired while the
        pipeline did not run for longer than the staging prefix keeps files.
    """
    for staged, final in pending:
        body = (written or {}).get(staged)
        if body is None:
            if exists(s3, bucket, final):
                continue
            try:
                body = s3.get_object(Bucket=bucket, Key=staged)["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                    raise
                if not exists(s3, bucket, final):
                    raise StagedFileMissingError(
                        f"s3://{bucket}/{staged} was committed but is gone, and {final} was "
                        "never published: re-ingest the target's sources (reset its state)"
                    ) from exc
                continue
        put_content_named(s3, bucket, final, body)


def _write_state_if_not_raced(s3: Any, bucket: str, target: str, state: TransformState) -> None:
    """Write what spares the next runs work (a pending list cleared once its files are
    published, sources caught up with), where a lost race is harmless: the execution
    that won wrote a newer state of its own, and the next run does the work again.
    """
    _put_state(s3, bucket, target, state)


def _publish_committed(
    s3: Any, bucket: str, target: str, state: TransformState, written: Mapping[str, bytes]
) -> None:
    """Publish the files the state write just committed, then clear its pending list.

    The work is done once the files are published: a list left uncleared (the write
    lost a race, or failed) is cleared by the next run, after a HEAD per file, so a
    failure here does not fail the invocation.
    """
    _publish(s3, bucket, state.pending, written)
    if state.pending:
        state.pending = []
        with contextlib.suppress(ClientError, BotoCoreError):
            _write_state_if_not_raced(s3, bucket, target, state)


def new_manifests(
    s3: Any, bucket: str, source: str, consumed: list[str], listed_back: timedelta
) -> list[str]:
    """Manifest keys of ``source`` not consumed yet, oldest first (paginated listing from
    ``listed_back`` behind the newest consumed)."""
    prefix = raw.manifest_prefix(source)
    seen = set(consumed)
    paginator = s3.get_paginator("list_objects_v2")
    found: list[str] = []
    for page in paginator.paginate(
        Bucket=bucket, Prefix=prefix, StartAfter=raw.listing_start(source, consumed, listed_back)
    ):
        found.extend(item["Key"] for item in page.get("Contents", []) if item["Key"] not in seen)
    return sorted(found)


def _remembered(keys: list[str], source: str, remembered: timedelta) -> list[str]:
    cutoff = raw.listing_start(source, keys, remembered)
    return sorted(key for key in keys if key >= cutoff)


@dataclass(frozen=True)
class _Batch:
    source: str
    key: str
    manifest: Manifest

    @property
    def order(self) -> str:
        """Extraction order across sources: ``<yyyy>/<mm>/<dd>/<HHMMSSffffff>-<run id>``."""
        parsed = raw.ManifestKey.parse(self.key)
        return parsed.order if parsed else self.key.removeprefix(raw.manifest_prefix(self.source))


@dataclass(frozen=True)
class _Listing:
    """The batches of a target's sources not consumed yet, from the sources listed."""

    #: Each source's newest batch, as its watermark names it (read before listing).
    newest: Mapping[str, str]
    #: The sources listed: those whose newest batch the state had not caught up with.
    sources: list[str]
    batches: list[_Batch]

    def record_caught_up(self, state: TransformState, left: list[_Batch]) -> bool:
        """Record in ``state`` each source listed whose newest batch is named and none of
        whose batches is ``left`` for later; whether that changed the state.

        Examples
        --------
        >>> from types import SimpleNamespace as Manifest
        >>> listing = _Listing(newest={"staff": "_manifests/staff/b.json",
        ...     "department": "_manifests/department/b.json"}, sources=["staff", "department"],
        ...     batches=[])
        >>> state = TransformState(caught_up={"staff": "_manifests/staff/a.json"})
        >>> left = [_Batch("staff", "_manifests/staff/b.json", Manifest(rows=1))]
        >>> listing.record_caught_up(state, left), state.caught_up
        (True, {'staff': '_manifests/staff/a.json', 'department': '_manifests/department/b.json'})
        >>> listing.record_caught_up(state, left)
        False
        """
        remaining = {batch.source for batch in left}
        before = dict(state.caught_up)
        for source in self.sources:
            if source in self.newest and source not in remaining:
                state.caught_up[source] = self.newest[source]
        return state.caught_up != before


def _list_new_batches(
    s3: Any,
    settings: TransformSettings,
    state: TransformState,
    sources: tuple[str, ...],
    watermarks: NewestBatches,
) -> _Listing:
    """List the manifests not consumed yet of the sources whose newest batch (as their
    watermark names it) the state has not caught up with, and read them.

    The watermarks are read first, so a listing finds at least the batches they name.
    """
    newest = watermarks.newest_manifests(sources)
    listed = [
        source
        for source in sources
        if source not in newest or state.caught_up.get(source) != newest[source]
    ]
    batches = [
        _Batch(source, key, read_manifest(s3, settings.ingested_bucket, key))
        for source in listed
        for key in new_manifests(
            s3,
            settings.ingested_bucket,
            source,
            state.consumed.get(source, []),
            settings.listed_back,
        )
    ]
    return _Listing(newest=newest, sources=listed, batches=batches)


def _count_batches(result: TransformResult, taken: list[_Batch], left: list[_Batch]) -> None:
    """Record in ``result`` the raw rows consumed, and the batches and rows left for later."""
    result.rows_consumed = sum(batch.manifest.rows for batch in taken)
    result.batches_remaining = len(left)
    result.remaining = sum(batch.manifest.rows for batch in left)


def _take_oldest(batches: list[_Batch], max_rows: int) -> tuple[list[_Batch], list[_Batch]]:
    """The oldest batches (across sources) whose rows fit ``max_rows``, at least one if there
    are any; the rest.

    Taking a prefix in extraction order keeps what the dimensions need: a batch is
    never consumed before an older batch of any source the target joins.

    Examples
    --------
    >>> from types import SimpleNamespace as Manifest
    >>> batches = [_Batch("staff", f"_manifests/staff/2024/11/14/0{n}-r.json",
    ...                   Manifest(rows=rows)) for n, rows in enumerate([4, 5, 6])]
    >>> [len(part) for part in _take_oldest(batches, max_rows=9)]
    [2, 1]
    >>> [len(part) for part in _take_oldest(batches, max_rows=3)]
    [1, 2]
    """
    ordered = sorted(batches, key=lambda batch: (batch.order, batch.source))
    taken, rows = 0, 0
    while taken < len(ordered) and (not taken or rows + ordered[taken].manifest.rows <= max_rows):
        rows += ordered[taken].manifest.rows
        taken += 1
    return ordered[:taken], ordered[taken:]


def _read_batches(s3: Any, bucket: str, batches: list[_Batch]) -> pa.Table | None:
    tables = [read_rows(s3, bucket, batch.manifest) for batch in batches]
    tables = [table for table in tables if table.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _merge_mirror(
    s3: Any,
    bucket: str,
    *,
    target: str,
    source: str,
    previous_key: str | None,
    new_rows: pa.Table | None,
    digest: str,
) -> tuple[str | None, pa.Table | None]:
    """The mirror of ``source`` after merging ``new_rows``: its key and its rows."""
    previous = read_parquet(s3, bucket, previous_key) if previous_key else None
    if new_rows is None:
        return previous_key, previous
    combined = (
        new_rows
        if previous is None
        else pa.concat_tables([previous, new_rows], promote_options="permissive")
    )
    current = shapes.latest_versions(combined, f"{source}_id")
    key = mirror_key(target, source, digest)
    put_content_named(s3, bucket, key, parquet_bytes(current))
    return key, current


Inputs = dict[str, pa.Table | None]


def _changed_rows(
    mirror: pa.Table | None, new_rows: pa.Table | None, key: str, *, everything: bool
) -> pa.Table | None:
    """The mirror's (latest) version of the rows a batch touched, or all of it if asked."""
    if mirror is None or everything or new_rows is None:
        return mirror
    return mirror.filter(pc.is_in(mirror.column(key), value_set=new_rows.column(key)))


def _source(inputs: Inputs, name: str) -> pa.Table:
    found = inputs.get(name)
    return found if found is not None else pa.table({})


def transform_target(
    request: TransformRequest, settings: TransformSettings, *, s3: Any, watermarks: NewestBatches
) -> TransformResult:
    """Turn the oldest raw batches a warehouse table has not consumed yet into one gold file.

    At most ``settings.max_rows`` raw rows are consumed (oldest batches first, across
    the target's sources); what is left is counted in the result. Only the sources whose
    watermark names a batch the state has not caught up with, or names none, are listed.

    Returns
    -------
    TransformResult
        Rows written to the gold file, batches consumed, rows rejected (and where they
        are kept), findings, and the batches and rows left for the next invocation.

    Raises
    ------
    TransformStateConflictError
        Another execution transformed the same target meanwhile (retry).

    Examples
    --------
    >>> from totes.ingest.watermarks import DynamoWatermarkStore
    >>> settings = TransformSettings.from_environment({"INGESTED_BUCKET": "ingested",
    ...     "PROCESSED_BUCKET": "processed", "WATERMARK_TABLE": "watermarks"})
    >>> request = TransformRequest.from_event({"target": "dim_staff", "run_id": "exec-1"})
    >>> watermarks = DynamoWatermarkStore(dynamodb, "watermarks")
    >>> result = transform_target(request, settings, s3=s3, watermarks=watermarks)
    >>> result.rows, result.gold_key, result.has_more  # nothing ingested yet
    (0, None, False)
    """
    result = TransformResult(table=request.target, run_id=request.run_id)
    state = _read_state(s3, settings.processed_bucket, request.target)
    # A run that committed may have stopped before publishing: finish its work first.
    published = bool(state.pending)
    _publish(s3, settings.processed_bucket, state.pending)
    state.pending = []
    target = WAREHOUSE[request.target]
    sources = target.sources
    listing = _list_new_batches(s3, settings, state, sources, watermarks)
    result.sources_listed = len(listing.sources)
    taken, left = _take_oldest(listing.batches, settings.max_rows)
    caught_up_moved = listing.record_caught_up(state, left)
    if not listing.batches:
        if published or caught_up_moved:
            _write_state_if_not_raced(s3, settings.processed_bucket, request.target, state)
        return result
    _count_batches(result, taken, left)
    taken_by_source = {source: [b for b in taken if b.source == source] for source in sources}
    fresh = {source: [b.key for b in batches] for source, batches in taken_by_source.items()}
    all_new = sorted(batch.key for batch in taken)
    # Named after the batches and the state they are applied to: two executions share a
    # name only when they do the very same work, so a file of one never stands in for
    # the other's.
    digest = hashlib.sha256("\n".join([state.etag or "", *all_new]).encode()).hexdigest()[:20]
    inputs = {
        source: _read_batches(s3, settings.ingested_bucket, batches) if batches else None
        for source, batches in taken_by_source.items()
    }
    # Every dimension keeps a mirror of its sources (the latest version of each row), so
    # a batch extracted earlier but consumed later can never bring back older values.
    if target.kind is Kind.DIMENSION:
        for source in sources:
            key, current = _merge_mirror(
                s3,
                settings.processed_bucket,
                target=request.target,
                source=source,
                previous_key=state.mirrors.get(source),
                new_rows=inputs[source],
                digest=digest,
            )
            if key:
                state.mirrors[source] = key
            inputs[source] = _changed_rows(
                current,
                inputs[source],
                f"{source}_id",
                everything=target.cascades,
            )
    shaped = shapes.shape_of(request.target)(*(_source(inputs, name) for name in sources))
    written: dict[str, bytes] = {}
    if shaped.table.num_rows:
        state.sequence += 1
        stem = f"{state.sequence:010d}-{digest}"
        gold = gold_key(request.target, state.sequence, request.run_id, digest)
        staged = staging_key(request.target, stem)
        written[staged] = parquet_bytes(shaped.table)
        put_content_named(s3, settings.processed_bucket, staged, written[staged])
        state.pending.append([staged, gold])
        result.gold_key, result.files, result.rows = gold, 1, shaped.table.num_rows
    if shaped.rejects is not None and shaped.rejects.num_rows:
        rejects_key = transform_rejects_key(request.target, request.run_id, digest)
        staged = staging_key(request.target, f"{digest}.rejects")
        written[staged] = parquet_bytes(shaped.rejects)
        put_content_named(s3, settings.processed_bucket, staged, written[staged])
        state.pending.append([staged, rejects_key])
        result.rows_rejected = shaped.rejects.num_rows
        result.rejects_key = rejects_key
    for source, keys in fresh.items():
        state.consumed[source] = _remembered(
            state.consumed.get(source, []) + keys, source, settings.remembered
        )
    _write_state(s3, settings.processed_bucket, request.target, state)
    _publish_committed(s3, settings.processed_bucket, request.target, state, written)
    result.batches = len(all_new)
    result.findings = [
        finding.model_copy(update={"where": [result.rejects_key]})
        if finding.kind is FindingKind.ROWS_REJECTED and result.rejects_key
        else finding
        for finding in shaped.findings
    ]
    return result
