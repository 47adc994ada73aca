"""Every change the lake makes to pyiceberg's behaviour beyond its public API.

All made here and nowhere else, and only to the pyiceberg release they were written
for (:data:`SUPPORTED_PYICEBERG`, and only while the code they replace is the code they
were written against): another release is left as it is (correct, only slower), and a
unit test fails until these are checked against it or deleted.

The first two keep a commit's cost from growing with the snapshots a table keeps. In pyiceberg
0.12, reading a transaction's metadata replays its staged updates on the table's
metadata and deep-copies the result, snapshot list included, and staging an append
reads it 18 times: with the 300 snapshots a table loaded every five minutes keeps in a
day, an append to a table of the lake took 0.44 s where it took 0.16 s with ten
(apache/iceberg-python#2673; a cache like the first change below was proposed in
#3302 and #3784, both closed unmerged).

``transaction-metadata-once``
    ``Transaction.table_metadata`` is computed once per staged state and reused
    until an update is staged or the table's metadata is replaced (by a commit or a
    refresh). Both inputs are rebound, never changed in place, so their identity says
    whether the result still holds. Every read of one state returns the same object:
    it is read-only, as pyiceberg treats it (only its ``last_updated_ms`` differs from
    before: it no longer changes from one read to the next; a commit sets its own).
``snapshots-shared-by-copies``
    In this process, a deep copy of a snapshot, a snapshot-log entry or a
    metadata-log entry is the object itself, so a deep copy of table metadata shares
    them (with each snapshot's summary) instead of copying one of each per commit of
    the last day. They are frozen models that pyiceberg never changes once they are
    part of a table's metadata, and nothing here changes them: they are read-only.
    The metadata's own lists and maps, and its other models, are still copied.
``sizes-from-the-writer``
    The size of a data file or manifest this process has just written is the bytes it
    wrote, counted by its stream before closing it, where pyiceberg asked S3 for it
    (one ``HeadObject`` per file a commit writes: 96 of a backfill's 749 requests, 85
    data files and 11 manifests). The first review of pyiceberg's writes asked for this
    (apache/iceberg-python#41); the streams have counted their bytes since #2998. A
    file written any other way, or read, is measured as before.
``metadata-written-unchecked``
    The Glue catalog writes a table's new metadata file without first asking whether
    it exists, as pyiceberg's own Glue catalog does for S3 Tables
    (``_write_metadata_no_exist_check``). The file's name holds a random UUID, so the
    question can only be answered no; asking it cost a ``HeadObject`` and, as pyarrow
    looks for a folder of that name when the object is missing, a ``ListObjectsV2``:
    two of every commit's requests.
``writes-in-one-request``
    The S3 file system pyiceberg makes for a table's files is made with pyarrow's
    ``allow_delayed_open``, so a file smaller than an upload part (every manifest,
    manifest list and metadata file, and the data files of a small change) is sent in
    one ``PutObject`` when it closes. Without it pyarrow starts a multipart upload for
    every file it opens and sends three requests (create, one part, complete): 12 of
    a fact append's 28 requests were its four files, 8 of them spent on the form. The
    cost pyarrow names: a missing bucket is reported when a file is closed, not when it
    is opened, and pyiceberg closes every file before the commit that names it.
    pyiceberg makes a file system for every file IO it makes, several per commit, and
    each takes milliseconds (an S3 client of pyarrow's own): one is made per bucket and
    client setting, and shared (pyarrow's file systems are safe to share).
``metadata-read-once-per-commit``
    The Glue catalog's commit reads the table's current metadata file again to check
    the commit's requirements against it, though the table being committed was loaded
    from it moments before. Where Glue still names the file the table was loaded from,
    the commit uses the table's metadata instead: a metadata file is never changed once
    written (its name holds a random UUID), so it would read what it holds. That is a
    ``HeadObject``, a ``GetObject`` and a parse fewer per commit; the parse grows with
    the snapshots a table keeps (10 ms with 500, on this code's machines, of a commit's
    two parses and one write). Where another writer committed in between, Glue names
    another file, which is read as before, and the commit fails its requirements as
    before.
``partitions-in-one-pass``
    Rows written to a partitioned table are split by partition in one pass (a stable
    sort of their partition values, cut where the values change), where pyiceberg
    filters the whole table once per partition it finds, copying every column out
    each time. A backfill's sales orders span 26 months: 223,500 rows of 20 columns
    took 0.10-0.17 s to split by filters and take 0.04-0.07 s in one pass (measured on
    this code's machines; load appends them in bites of 200,000). Each partition gets
    the same rows in the same order as before, and the partitions come in the order of
    their first rows. Partition values that are floats (a NaN equals nothing, -0.0
    equals 0.0) or dictionary-encoded (they do not sort) are left to pyiceberg's own
    split; the lake partitions by text.

Examples
--------
>>> from pyiceberg.table.snapshots import Snapshot
>>> import copy
>>> apply()
True
>>> snapshot = Snapshot(snapshot_id=1, manifest_list="s3://bucket/list.avro")
>>> copy.deepcopy([snapshot])[0] is snapshot
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from totes.key_runs import first_of_each_key

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem
    from pyiceberg.avro.file import AvroOutputFile
    from pyiceberg.catalog.glue import GlueCatalog
    from pyiceberg.io import InputFile
    from pyiceberg.io.pyarrow import (
        ParquetFormatWriter,
        PyArrowFile,
        PyArrowFileIO,
        _TablePartition,
    )
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.typedef import Record

#: The pyiceberg release (major, minor) these changes were written for.
SUPPORTED_PYICEBERG: Final = (0, 12)

_CACHE: Final = "_totes_staged_metadata"
#: Where a file this process wrote keeps the bytes written to it.
_WRITTEN: Final = "_totes_bytes_written"
#: pyiceberg's own functions that the changes call, by what they do.
_REPLACED: Final[dict[str, Any]] = {}
_APPLYING: Final = threading.Lock()
#: Where pyiceberg's S3 client settings are (its ``s3.*`` and ``client.*`` properties).
_CLIENT_PROPERTIES: Final = ("s3.", "client.")
#: The S3 file systems made in this process, by bucket and client settings.
_FILE_SYSTEMS: Final[dict[tuple[Any, ...], Any]] = {}
_MAKING: Final = threading.Lock()
#: The table the Glue catalog is committing in this thread, while it does.
_COMMITTING: Final = threading.local()
_applied = False


def pyiceberg_version() -> tuple[int, int]:
    """The installed pyiceberg release as ``(major, minor)``.

    Examples
    --------
    >>> pyiceberg_version() >= (0, 12)
    True
    """
    major, minor, *_ = metadata.version("pyiceberg").split(".")
    return int(major), int(minor)


def patchable() -> bool:
    """Whether the installed pyiceberg is the code the changes were written against.

    The release, and what they replace: a transaction metadata property that replays
    the staged updates on the table's metadata, frozen models that deep-copy as
    pydantic does (no copy of their own), and writers that close a stream they hold
    (``_fos`` beside a Parquet writer, ``output_stream`` of an Avro file) on a file
    whose length is asked of the file system, and a Glue catalog with a metadata writer
    that does not check, beside new metadata files named by a random UUID, and an S3
    file system made without ``allow_delayed_open``, and a Glue commit that reads the
    current metadata file through ``FromInputFile``, and a writer that splits rows by
    filtering them once per partition. Once the changes are made, the
    release alone (the code was checked before they replaced it).
    """
    if pyiceberg_version() != SUPPORTED_PYICEBERG:
        return False
    if _applied:
        return True
    from pyiceberg.table import Transaction  # noqa: PLC0415

    replayed = Transaction.__dict__.get("table_metadata")
    if not isinstance(replayed, property) or replayed.fget is None:
        return False
    if "update_table_metadata" not in replayed.fget.__code__.co_names:
        return False
    if any("__deepcopy__" in frozen.__dict__ for frozen in _frozen_models()):
        return False
    from pyiceberg.avro.file import AvroOutputFile  # noqa: PLC0415
    from pyiceberg.catalog.glue import GlueCatalog  # noqa: PLC0415
    from pyiceberg.io.pyarrow import (  # noqa: PLC0415
        ParquetFormatWriter,
        PyArrowFile,
        PyArrowFileIO,
    )
    from pyiceberg.serializers import FromInputFile  # noqa: PLC0415
    from pyiceberg.table.locations import LocationProvider  # noqa: PLC0415

    named = LocationProvider.new_table_metadata_file_location.__code__.co_names
    makes_s3 = PyArrowFileIO.__dict__.get("_initialize_s3_fs")
    return (
        "uuid4" in named
        and makes_s3 is not None
        and "S3FileSystem" in makes_s3.__code__.co_names
        and "allow_delayed_open" not in makes_s3.__code__.co_consts
        and _reads_client_properties_only(makes_s3)
        and "_write_metadata_no_exist_check" in GlueCatalog.__dict__
        and "_write_metadata" not in GlueCatalog.__dict__
        and {"_result", "_writer", "_fos"} <= set(ParquetFormatWriter.close.__code__.co_names)
        and "_output_file" in ParquetFormatWriter.__init__.__code__.co_names
        and "output_stream" in AvroOutputFile.__exit__.__code__.co_names
        and "_file_info" in PyArrowFile.__len__.__code__.co_names
        and "_convert_glue_to_iceberg" in GlueCatalog.commit_table.__code__.co_names
        and "FromInputFile" in GlueCatalog._convert_glue_to_iceberg.__code__.co_names
        and isinstance(FromInputFile.__dict__.get("table_metadata"), staticmethod)
        and _splits_partitions_by_filtering()
    )


def _splits_partitions_by_filtering() -> bool:
    """Whether pyiceberg's writer splits rows by partition with the function the one-pass
    split replaces: called by its module's name for it, with the arguments and the result
    the replacement takes and gives, filtering the rows once per partition."""
    from pyiceberg.io import pyarrow as pyiceberg_arrow  # noqa: PLC0415

    split = pyiceberg_arrow.__dict__.get("_determine_partitions")
    writes = pyiceberg_arrow.__dict__.get("_dataframe_to_data_files")
    made_of = set(
        getattr(pyiceberg_arrow.__dict__.get("_TablePartition"), "__dataclass_fields__", ())
    )
    return (
        split is not None
        and writes is not None
        and "_determine_partitions" in writes.__code__.co_names
        and split.__code__.co_varnames[:3] == ("spec", "schema", "arrow_table")
        and {"filter", "group_by"} <= set(split.__code__.co_names)
        and made_of == {"partition_key", "arrow_table_partition"}
        and "_get_field_from_arrow_table" in pyiceberg_arrow.__dict__
    )


def apply() -> bool:
    """Make the changes, once per process; whether they are in effect.

    Returns False, changing nothing, where :func:`patchable` says the installed
    pyiceberg is not what they were written against.
    """
    with _APPLYING:
        return _apply_once()


def _apply_once() -> bool:
    global _applied  # noqa: PLW0603 - once per process, whoever opens the lake first
    if _applied:
        return True
    if not patchable():
        return False
    from pyiceberg.avro.file import AvroOutputFile  # noqa: PLC0415
    from pyiceberg.catalog.glue import GlueCatalog  # noqa: PLC0415
    from pyiceberg.io import pyarrow as pyiceberg_arrow  # noqa: PLC0415
    from pyiceberg.io.pyarrow import (  # noqa: PLC0415
        ParquetFormatWriter,
        PyArrowFile,
        PyArrowFileIO,
    )
    from pyiceberg.serializers import FromInputFile  # noqa: PLC0415
    from pyiceberg.table import Transaction  # noqa: PLC0415

    Transaction.table_metadata = property(_staged_metadata)  # type: ignore[method-assign,assignment]
    for frozen in _frozen_models():
        frozen.__deepcopy__ = _shared  # type: ignore[attr-defined]
    _REPLACED.update(
        parquet_close=ParquetFormatWriter.close,
        avro_close=AvroOutputFile.__exit__,
        length=PyArrowFile.__len__,
        s3_file_system=PyArrowFileIO._initialize_s3_fs,
        commit_table=GlueCatalog.commit_table,
        read_metadata=FromInputFile.table_metadata,
        split_partitions=pyiceberg_arrow._determine_partitions,
    )
    ParquetFormatWriter.close = _close_parquet_counting  # type: ignore[method-assign,assignment]
    AvroOutputFile.__exit__ = _close_avro_counting  # type: ignore[method-assign,assignment]
    PyArrowFile.__len__ = _length_written_or_asked  # type: ignore[method-assign]
    GlueCatalog._write_metadata = GlueCatalog.__dict__["_write_metadata_no_exist_check"]  # type: ignore[method-assign]
    PyArrowFileIO._initialize_s3_fs = _s3_writing_in_one_request  # type: ignore[method-assign,assignment]
    GlueCatalog.commit_table = _commit_knowing_the_table  # type: ignore[method-assign,assignment]
    FromInputFile.table_metadata = staticmethod(_metadata_in_hand_or_read)  # type: ignore[method-assign]
    # The writer calls it by its module's name for it.
    pyiceberg_arrow._determine_partitions = _partitions_in_one_pass
    _applied = True
    return True


def _close_parquet_counting(writer: ParquetFormatWriter) -> Any:
    """pyiceberg's close, the bytes written counted once the footer is, before the
    stream closes (pyarrow's Parquet writer leaves a stream it was given open)."""
    parquet, stream = writer._writer, writer._fos
    if writer._result is None and parquet is not None and stream is not None:
        write_footer = parquet.close

        def write_footer_and_count() -> None:
            write_footer()
            writer._output_file.__dict__[_WRITTEN] = stream.tell()
            del parquet.close  # its own again: no cycle through this function

        parquet.close = write_footer_and_count
    return _REPLACED["parquet_close"](writer)


def _close_avro_counting(avro: AvroOutputFile[Record], *exited: Any) -> None:
    """pyiceberg's close of an Avro file (a manifest), the bytes written counted first."""
    avro.output_file.__dict__[_WRITTEN] = avro.output_stream.tell()
    _REPLACED["avro_close"](avro, *exited)


def _length_written_or_asked(file: PyArrowFile) -> int:
    """The bytes this process wrote to the file, or else its size as S3 answers it."""
    written = file.__dict__.get(_WRITTEN)
    return int(written) if written is not None else int(_REPLACED["length"](file))


def _reads_client_properties_only(function: Any) -> bool:
    """Whether every property name ``function`` refers to is a client setting."""
    named = (function.__globals__.get(name) for name in function.__code__.co_names)
    return all(value.startswith(_CLIENT_PROPERTIES) for value in named if isinstance(value, str))


def _s3_writing_in_one_request(io: PyArrowFileIO, netloc: str | None) -> FileSystem:
    """pyiceberg's S3 file system, remade with ``allow_delayed_open`` from the options it
    pickles with (pyarrow's own way of sending a file system elsewhere), made once per
    bucket and client settings (what pyiceberg makes it from).

    Left as made where the remade one would differ otherwise: a pyarrow without the
    option (before 21), or a retry strategy given (it is not among the options pickled).
    """
    from pyiceberg.io import S3_RETRY_STRATEGY_IMPL  # noqa: PLC0415

    settings = sorted(
        (name, value)
        for name, value in io.properties.items()
        if name.startswith(_CLIENT_PROPERTIES)
    )
    key = (netloc, *settings)
    with _MAKING:
        shared: FileSystem | None = _FILE_SYSTEMS.get(key)
        if shared is None:
            shared = made = _REPLACED["s3_file_system"](io, netloc)
            remake, (options,) = made.__reduce__()
            if "allow_delayed_open" in options and S3_RETRY_STRATEGY_IMPL not in io.properties:
                shared = remake({**options, "allow_delayed_open": True})
            _FILE_SYSTEMS[key] = shared
        return shared


def _commit_knowing_the_table(
    catalog: GlueCatalog, table: Table, requirements: Any, updates: Any
) -> Any:
    """pyiceberg's Glue commit, with the table it commits known to its reads."""
    _COMMITTING.table = table
    try:
        return _REPLACED["commit_table"](catalog, table, requirements, updates)
    finally:
        _COMMITTING.table = None


def _metadata_in_hand_or_read(input_file: InputFile, *args: Any, **kwargs: Any) -> TableMetadata:
    """The metadata of the table being committed, if ``input_file`` is the file it was
    loaded from; else the file's, read and parsed (with whatever else pyiceberg passes)."""
    committing = getattr(_COMMITTING, "table", None)
    if committing is not None and input_file.location == committing.metadata_location:
        held: TableMetadata = committing.metadata
        return held
    read: TableMetadata = _REPLACED["read_metadata"](input_file, *args, **kwargs)
    return read


def _partitions_in_one_pass(
    spec: PartitionSpec, schema: Schema, arrow_table: pa.Table
) -> Iterator[_TablePartition]:
    """The rows of each partition of ``arrow_table`` under ``spec``, in their order, with the
    partition's key: what pyiceberg's filter per partition gives, from one sort."""
    from pyiceberg.io.pyarrow import (  # noqa: PLC0415
        _get_field_from_arrow_table,
        _TablePartition,
    )
    from pyiceberg.partitioning import PartitionFieldValue, PartitionKey  # noqa: PLC0415

    if not arrow_table.num_rows:
        return  # no partition, as pyiceberg's split finds none
    names = [f"_partition_{field.name}" for field in spec.fields]
    values = {}
    for field, name in zip(spec.fields, names, strict=True):
        column = schema.find_column_name(field.source_id)
        if column is None:
            raise ValueError(f"Could not find column name for field ID: {field.source_id}")
        transform = field.transform.pyarrow_transform(schema.find_field(field.source_id).field_type)
        values[name] = transform(_get_field_from_arrow_table(arrow_table, column))
    keys = pa.table(values)
    if any(
        pa.types.is_floating(kind) or pa.types.is_dictionary(kind) for kind in keys.schema.types
    ):
        # A NaN equals no value, and -0.0 equals 0.0, so runs would not be partitions;
        # dictionaries do not sort. The lake partitions by text alone: pyiceberg's own.
        yield from _REPLACED["split_partitions"](spec, schema, arrow_table)
        return
    # A stable sort: each partition's rows stay in their order, its first row first.
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in names])
    in_order = keys.take(order)
    starts = pc.indices_nonzero(first_of_each_key(in_order, names)).to_pylist()
    runs = zip(starts, [*starts[1:], keys.num_rows], strict=True)
    for start, end in sorted(runs, key=lambda run: order[run[0]].as_py()):
        key = in_order.slice(start, 1).to_pylist()[0]
        rows = arrow_table.take(order.slice(start, end - start))
        yield _TablePartition(
            partition_key=PartitionKey(
                field_values=[
                    PartitionFieldValue(field=field, value=key[name])
                    for field, name in zip(spec.fields, names, strict=True)
                ],
                partition_spec=spec,
                schema=schema,
            ),
            # Fresh buffers for each partition, as pyiceberg's own split gives them.
            arrow_table_partition=rows.combine_chunks(),
        )


def _frozen_models() -> tuple[type, ...]:
    from pyiceberg.table.snapshots import (  # noqa: PLC0415
        MetadataLogEntry,
        Snapshot,
        SnapshotLogEntry,
    )

    return (Snapshot, SnapshotLogEntry, MetadataLogEntry)


def _staged_metadata(transaction: Transaction) -> TableMetadata:
    """The table's metadata with the transaction's staged updates applied, computed once
    for each pair of (table metadata, staged updates)."""
    # The name pyiceberg's own property calls (its module imported it).
    from pyiceberg.table import update_table_metadata  # type: ignore[attr-defined]  # noqa: PLC0415

    base = transaction._table.metadata
    updates = transaction._updates
    cached = transaction.__dict__.get(_CACHE)
    if cached is not None and cached[0] is base and cached[1] is updates:
        staged: TableMetadata = cached[2]
        return staged
    staged = update_table_metadata(base, updates)
    transaction.__dict__[_CACHE] = (base, updates, staged)
    return staged


def _shared(self: Any, memo: dict[int, Any] | None = None) -> Any:
    return self
