"""The lake's changes to pyiceberg: an append's work stays the same however many
snapshots the table keeps, and what a transaction reads is still what it staged.

The tables here live in a temporary folder and are never committed: staging an append
writes its data file, manifest and manifest list and computes the metadata it would
commit, which is where pyiceberg's cost grew with the snapshots kept.
"""

from __future__ import annotations

import copy
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pyiceberg.io.pyarrow
import pyiceberg.table
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.io.pyarrow import PyArrowFile, PyArrowFileIO
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.snapshots import Operation, Snapshot, SnapshotLogEntry, Summary
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

from totes.lake import pyiceberg_patches

SCHEMA = Schema(NestedField(1, "currency_id", LongType(), required=False))


def _metadata_with(snapshots: int, location: Path) -> TableMetadata:
    """A table's metadata as a day of five-minute commits leaves it: ``snapshots`` of them,
    each in the snapshot log."""
    metadata = new_table_metadata(
        SCHEMA,
        UNPARTITIONED_PARTITION_SPEC,
        UNSORTED_SORT_ORDER,
        location.as_uri(),
        {"format-version": "2"},
    )
    kept = [
        Snapshot(
            snapshot_id=number,
            parent_snapshot_id=number - 1 if number > 1 else None,
            sequence_number=number,
            timestamp_ms=1_700_000_000_000 + number * 300_000,
            manifest_list=f"{location.as_uri()}/metadata/snap-{number}.avro",
            summary=Summary(Operation.APPEND, **{"totes.run": f"run-{number}"}),
        )
        for number in range(1, snapshots + 1)
    ]
    log = [SnapshotLogEntry(snapshot_id=s.snapshot_id, timestamp_ms=s.timestamp_ms) for s in kept]
    return metadata.model_copy(update={"snapshots": kept, "snapshot_log": log})


def _table(snapshots: int, location: Path) -> Table:
    return Table(
        identifier=("lake", "dim_currency"),
        metadata=_metadata_with(snapshots, location),
        metadata_location=f"{location.as_uri()}/metadata/00000.metadata.json",
        io=PyArrowFileIO(),
        catalog=None,  # type: ignore[arg-type]  # nothing here commits
    )


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each time pyiceberg replays staged updates on a table's metadata, the snapshots the
    result holds."""
    seen: list[int] = []
    replay = pyiceberg.table.update_table_metadata  # type: ignore[attr-defined]

    def counted(base: TableMetadata, updates: Any, *args: Any, **kwargs: Any) -> TableMetadata:
        seen.append(len(base.snapshots))
        return replay(base, updates, *args, **kwargs)

    # Called by the name pyiceberg's table module imported, patched or not
    monkeypatch.setattr(pyiceberg.table, "update_table_metadata", counted)
    return seen


def _stage_append(table: Table) -> Transaction:
    transaction = table.transaction()
    transaction.append(pa.table({"currency_id": pa.array([1, 2], pa.int64())}))
    return transaction


def test_the_patches_are_written_for_the_pyiceberg_release_installed() -> None:
    # Given the pyiceberg release pyproject.toml pins
    # When the lake applies its changes
    applied = pyiceberg_patches.apply()

    # Then they are in effect: a release they were not written for fails here until
    # they are checked against it (or deleted, if it fixed what they fix)
    assert applied, (
        f"pyiceberg {pyiceberg_patches.pyiceberg_version()} is not the release "
        f"{pyiceberg_patches.SUPPORTED_PYICEBERG} the lake's patches were written for"
    )


def test_staging_an_append_to_a_table_with_300_snapshots_copies_none_of_them(
    tmp_path: Path, replays: list[int]
) -> None:
    # Given the patches and a table with a day of five-minute commits
    assert pyiceberg_patches.apply()
    table = _table(300, tmp_path)

    # When an append is staged on it
    staged = _stage_append(table).table_metadata

    # Then the updates were replayed on the table's metadata twice, once as it stood
    # and once with the append staged (unpatched, 18 times, each deep-copying every
    # snapshot), and the metadata it would commit holds the table's own snapshots and
    # log entries, not copies of them
    assert replays == [300, 300]
    assert len(staged.snapshots) == 301
    assert all(
        kept is own for kept, own in zip(staged.snapshots, table.metadata.snapshots, strict=False)
    )
    assert all(
        kept is own
        for kept, own in zip(staged.snapshot_log, table.metadata.snapshot_log, strict=False)
    )


def test_a_transaction_reads_what_it_staged_and_the_table_keeps_what_it_had(
    tmp_path: Path,
) -> None:
    # Given the patches and a table with 300 snapshots
    assert pyiceberg_patches.apply()
    table = _table(300, tmp_path)
    transaction = table.transaction()
    before = transaction.table_metadata

    # When a property and an append are staged
    transaction.set_properties({"totes.exported-through": "2"})
    after_properties = transaction.table_metadata
    transaction.append(pa.table({"currency_id": pa.array([7], pa.int64())}))
    staged = transaction.table_metadata

    # Then each read after a change sees it, a read with nothing new staged is the same,
    # and the table's own metadata has neither
    assert before is not after_properties
    assert after_properties.properties["totes.exported-through"] == "2"
    assert len(staged.snapshots) == 301
    assert staged.current_snapshot_id == staged.snapshots[-1].snapshot_id
    assert transaction.table_metadata is staged
    assert len(table.metadata.snapshots) == 300
    assert "totes.exported-through" not in table.metadata.properties


def test_a_copy_of_table_metadata_shares_its_snapshots_but_not_its_lists(tmp_path: Path) -> None:
    # Given the patches and a table's metadata with 300 snapshots
    assert pyiceberg_patches.apply()
    metadata = _metadata_with(300, tmp_path)

    # When it is deep-copied, as pyiceberg copies it after every replay
    copied = copy.deepcopy(metadata)

    # Then the frozen snapshots are shared, while the lists and maps holding them are
    # the copy's own: changing them leaves the original as it was
    assert copied == metadata
    assert all(a is b for a, b in zip(copied.snapshots, metadata.snapshots, strict=True))
    assert copied.snapshots is not metadata.snapshots
    assert copied.properties is not metadata.properties
    copied.snapshots.pop()
    copied.properties["changed"] = "yes"
    assert len(metadata.snapshots) == 300
    assert "changed" not in metadata.properties


def test_a_transaction_reads_the_tables_metadata_anew_once_it_is_replaced(
    tmp_path: Path,
) -> None:
    # Given the patches and a transaction that has read a table's metadata
    assert pyiceberg_patches.apply()
    table = _table(3, tmp_path)
    transaction = table.transaction()
    assert len(transaction.table_metadata.snapshots) == 3

    # When the table's metadata is replaced, as a commit or a refresh replaces it
    table.metadata = _metadata_with(5, tmp_path)

    # Then the transaction reads the new metadata, not what it computed before
    assert len(transaction.table_metadata.snapshots) == 5


def test_an_overwrite_stages_its_delete_and_its_append_on_the_table_as_it_stands(
    tmp_path: Path,
) -> None:
    # Given the patches and a table whose append has been staged and read
    assert pyiceberg_patches.apply()
    table = _table(0, tmp_path)
    transaction = _stage_append(table)
    appended = transaction.table_metadata

    # When an overwrite is staged in the same transaction (two snapshot producers:
    # pyiceberg reads the metadata between them)
    transaction.overwrite(pa.table({"currency_id": pa.array([9], pa.int64())}))
    staged = transaction.table_metadata

    # Then the overwrite saw the append: its delete removed the appended file, and the
    # table reads one row in the end
    operations = [snapshot.summary.operation for snapshot in staged.snapshots if snapshot.summary]
    assert operations == [Operation.APPEND, Operation.DELETE, Operation.APPEND]
    assert staged is not appended
    assert staged.snapshots[-1].summary is not None
    assert staged.snapshots[-1].summary["total-records"] == "1"


def test_an_unknown_pyiceberg_release_is_left_unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pyiceberg release the patches were not written for
    monkeypatch.setattr(pyiceberg_patches, "pyiceberg_version", lambda: (0, 13))

    # When the lake asks whether it can patch it
    # Then it cannot: that release runs as it is, correct if slower
    assert not pyiceberg_patches.patchable()


def test_a_writer_that_splits_partitions_another_way_is_not_taken_for_the_one_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given pyiceberg's own split by filters, and a split written another way
    assert pyiceberg_patches.apply()
    filtering = pyiceberg_patches._REPLACED["split_partitions"]

    def sorting(spec: Any, schema: Any, arrow_table: pa.Table) -> Any:
        return iter([spec, schema, arrow_table.sort_by("month")])

    # When the lake checks the code it would replace, in each case
    monkeypatch.setattr(pyiceberg.io.pyarrow, "_determine_partitions", filtering)
    recognised = pyiceberg_patches._splits_partitions_by_filtering()
    monkeypatch.setattr(pyiceberg.io.pyarrow, "_determine_partitions", sorting)
    other = pyiceberg_patches._splits_partitions_by_filtering()

    # Then it recognises pyiceberg's, and not the other
    assert recognised
    assert not other


def test_an_append_records_the_sizes_it_wrote_without_asking_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the patches, a table, and a count of the sizes asked of the file system (a
    # HeadObject each on S3)
    assert pyiceberg_patches.apply()
    table = _table(0, tmp_path)
    asked: list[str] = []
    file_info = PyArrowFile._file_info

    def counted(file: PyArrowFile) -> Any:
        asked.append(file.location)
        return file_info(file)

    monkeypatch.setattr(PyArrowFile, "_file_info", counted)

    # When an append of a few thousand rows is staged: its data file, manifest and
    # manifest list are written
    transaction = table.transaction()
    transaction.append(pa.table({"currency_id": pa.array(range(5_000), pa.int64())}))
    monkeypatch.setattr(PyArrowFile, "_file_info", file_info)

    # Then no size was asked, and the sizes the manifest list and manifest record are the
    # files' own, byte for byte
    assert asked == []
    snapshot = transaction.table_metadata.current_snapshot()
    assert snapshot is not None
    io = PyArrowFileIO()
    manifests = snapshot.manifests(io)
    assert len(manifests) == 1
    assert manifests[0].manifest_length == _size_on_disk(manifests[0].manifest_path)
    entries = manifests[0].fetch_manifest_entry(io)
    assert [entry.data_file.file_size_in_bytes for entry in entries] == [
        _size_on_disk(entry.data_file.file_path) for entry in entries
    ]
    assert entries[0].data_file.record_count == 5_000


def _size_on_disk(uri: str) -> int:
    return Path(uri.removeprefix("file://")).stat().st_size


_MONTHS = st.sampled_from(["2023-01", "2023-02", "2024-11", None])
_STORES = st.none() | st.integers(0, 3)


def _rechunked(table: pa.Table, cuts: list[int]) -> pa.Table:
    """The table in chunks cut at these rows, as concatenated bites and scans give it."""
    if not table.num_rows:
        return table
    edges = sorted({0, table.num_rows, *(cut % (table.num_rows + 1) for cut in cuts)})
    return pa.concat_tables(table.slice(a, b - a) for a, b in pairwise(edges))


@settings(max_examples=60)
@given(
    rows=st.lists(st.tuples(_MONTHS, _STORES, st.integers(-5, 5)), max_size=60),
    by_both=st.booleans(),
    cuts=st.lists(st.integers(0, 60), max_size=4),
)
def test_rows_split_by_partition_in_one_pass_as_pyiceberg_splits_them(
    rows: list[tuple[str | None, int | None, int]], by_both: bool, cuts: list[int]
) -> None:
    # Given rows of a table partitioned by a month's text (some null), and maybe also by
    # a store (some null), in chunks
    assert pyiceberg_patches.apply()
    schema = Schema(
        NestedField(1, "month", StringType(), required=False),
        NestedField(2, "store", LongType(), required=False),
        NestedField(3, "units", LongType(), required=False),
    )
    fields = [PartitionField(1, 1000, IdentityTransform(), "month")]
    if by_both:
        fields.append(PartitionField(2, 1001, IdentityTransform(), "store"))
    spec = PartitionSpec(*fields)
    table = pa.table(
        {
            "month": pa.array([month for month, _, _ in rows], pa.string()),
            "store": pa.array([store for _, store, _ in rows], pa.int64()),
            "units": pa.array([units for _, _, units in rows], pa.int64()),
        }
    )
    table = _rechunked(table, cuts)

    # When the one-pass split and pyiceberg's own filter per partition each split them
    split = list(pyiceberg_patches._partitions_in_one_pass(spec, schema, table))
    filtered = list(pyiceberg_patches._REPLACED["split_partitions"](spec, schema, table))

    # Then each partition holds the same rows in the same order, and the partitions come
    # in the order of their first rows
    def by_key(partitions: list[Any]) -> dict[Any, pa.Table]:
        return {p.partition_key.partition: p.arrow_table_partition for p in partitions}

    assert by_key(split).keys() == by_key(filtered).keys()
    assert all(by_key(split)[key].equals(expected) for key, expected in by_key(filtered).items())
    assert sum(p.arrow_table_partition.num_rows for p in split) == table.num_rows
    in_order_of_first_rows = dict.fromkeys(row[: len(fields)] for row in rows)
    assert [tuple(value.value for value in p.partition_key.field_values) for p in split] == list(
        in_order_of_first_rows
    )


def test_rows_partitioned_by_a_float_are_split_by_pyiceberg_itself() -> None:
    # Given rows partitioned by a float, with NaNs and both zeros (a NaN equals nothing,
    # and -0.0 equals 0.0, so sorted runs would not be pyiceberg's partitions)
    assert pyiceberg_patches.apply()
    schema = Schema(NestedField(1, "rate", DoubleType(), required=False))
    spec = PartitionSpec(PartitionField(1, 1000, IdentityTransform(), "rate"))
    table = pa.table({"rate": pa.array([float("nan"), 0.0, -0.0, float("nan"), 1.5], pa.float64())})

    # When the writer's split splits them
    split = list(pyiceberg_patches._partitions_in_one_pass(spec, schema, table))

    # Then the partitions are pyiceberg's own, row for row (compared as text: NaN is
    # unequal to itself)
    filtered = list(pyiceberg_patches._REPLACED["split_partitions"](spec, schema, table))

    def shown(partitions: list[Any]) -> list[str]:
        return [
            repr((p.partition_key.partition, p.arrow_table_partition.to_pylist()))
            for p in partitions
        ]

    assert shown(split) == shown(filtered)


def test_an_append_to_a_partitioned_table_writes_each_months_rows_to_a_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the patches and an empty table partitioned by month, as the lake's facts are
    assert pyiceberg_patches.apply()
    schema = Schema(
        NestedField(1, "sales_record_id", LongType(), required=False),
        NestedField(2, "last_updated_month", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "last_updated_month"))
    metadata = new_table_metadata(
        schema, spec, UNSORTED_SORT_ORDER, tmp_path.as_uri(), {"format-version": "2"}
    )
    table = Table(
        identifier=("lake", "fact_sales_order"),
        metadata=metadata,
        metadata_location=f"{tmp_path.as_uri()}/metadata/00000.metadata.json",
        io=PyArrowFileIO(),
        catalog=None,  # type: ignore[arg-type]  # nothing here commits
    )
    months = ["2024-11", "2023-02", "2024-11", "2023-01", "2023-02", "2024-11"]
    splits: list[int] = []
    split = pyiceberg.io.pyarrow._determine_partitions  # what the writer calls

    def counted(spec: PartitionSpec, schema: Schema, arrow_table: pa.Table) -> Any:
        splits.append(arrow_table.num_rows)
        return split(spec, schema, arrow_table)

    monkeypatch.setattr(pyiceberg.io.pyarrow, "_determine_partitions", counted)

    # When rows of three months, interleaved, are appended
    transaction = table.transaction()
    transaction.append(
        pa.table(
            {
                "sales_record_id": pa.array(range(1, 7), pa.int64()),
                "last_updated_month": pa.array(months, pa.string()),
            }
        )
    )

    # Then the one-pass split split them once, each month's rows are in one data file,
    # in the order they came, and the files come in the order of each month's first row
    assert split is pyiceberg_patches._partitions_in_one_pass
    assert splits == [6]
    snapshot = transaction.table_metadata.current_snapshot()
    assert snapshot is not None
    io = PyArrowFileIO()
    files = [
        entry.data_file
        for manifest in snapshot.manifests(io)
        for entry in manifest.fetch_manifest_entry(io)
    ]
    written = {
        file.partition[0]: pq.ParquetFile(file.file_path.removeprefix("file://"))
        .read()
        .column("sales_record_id")
        .to_pylist()
        for file in files
    }
    assert written == {"2024-11": [1, 3, 6], "2023-02": [2, 5], "2023-01": [4]}
    assert [file.partition[0] for file in files] == ["2024-11", "2023-02", "2023-01"]
