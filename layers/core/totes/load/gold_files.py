"""The gold zone as the load stage reads it: listing, reading and quarantining files.

Keys are :mod:`totes.zones.gold`'s (gold files) and :mod:`totes.zones.rejects`'s
(fact rows load could not apply).
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from totes.errors import GoldFileSchemaError, GoldFileUnreadableError
from totes.key_runs import consecutive
from totes.parquet_objects import parquet_bytes, parquet_table
from totes.tables import WAREHOUSE
from totes.warehouse.star import STAR_SCHEMAS
from totes.zones.gold import GoldFileKey, table_prefix
from totes.zones.rejects import RejectingStage, RejectsKey, rejects_prefix

#: The column load adds to every staged row: its position in the file.
FILE_ROW: Final = "file_row"
#: The column a rejects file adds to the star schema: why the row was not applied.
REJECT_REASON: Final = "reject_reason"
#: Rows rendered per COPY write (CSV or binary): bounds memory whatever the file size.
_ROWS_PER_CHUNK = 65_536
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


class RejectedRow(NamedTuple):
    """A staged fact row that cannot be applied: its position in the file and why.

    ``reason`` names each missing reference with its value (``design_id 9 not in
    dim_design``); ``cause`` says the same without the values, so rows of one cause
    can be counted together (``design_id not in dim_design``).
    """

    position: int
    reason: str
    cause: str


def fact_references(target: str) -> dict[tuple[str, str], list[str]]:
    """Each dimension (table, key) a fact references, with the fact columns that reference it.

    dim_date comes first, referenced by every date column.

    Examples
    --------
    >>> fact_references("fact_payment")[("dim_date", "date_id")]
    ['created_date', 'last_updated_date', 'payment_date']
    """
    fact = WAREHOUSE[target]
    referencing: dict[tuple[str, str], list[str]] = {
        ("dim_date", WAREHOUSE["dim_date"].key): list(fact.date_columns)
    }
    for column, dimension in fact.references.items():
        referencing.setdefault((dimension, WAREHOUSE[dimension].key), []).append(column)
    return referencing


def referenced_values(table: pa.Table, target: str) -> dict[tuple[str, str], list[Any]]:
    """The distinct keys fact rows reference, per dimension, in ascending order.

    Computed on the Arrow columns, a hash pass each, before the rows are sent.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from datetime import date
    >>> rows = pa.table({"created_date": [date(2024, 1, 2)], "last_updated_date":
    ...     [date(2024, 1, 3)], "payment_date": [date(2024, 1, 2)], "transaction_id": [7],
    ...     "counterparty_id": [1], "currency_id": [1], "payment_type_id": [3]})
    >>> referenced_values(rows, "fact_payment")[("dim_date", "date_id")]
    [datetime.date(2024, 1, 2), datetime.date(2024, 1, 3)]
    """
    return {
        dimension: referenced_keys(table, target, dimension)
        for dimension in fact_references(target)
    }


def referenced_keys(table: pa.Table, target: str, dimension: tuple[str, str]) -> list[Any]:
    """The distinct keys of one dimension that fact rows reference, in ascending order.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from datetime import date
    >>> rows = pa.table({"created_date": [date(2024, 1, 2)], "last_updated_date":
    ...     [date(2024, 1, 3)], "payment_date": [date(2024, 1, 2)]})
    >>> referenced_keys(rows, "fact_payment", ("dim_date", "date_id"))
    [datetime.date(2024, 1, 2), datetime.date(2024, 1, 3)]
    """
    columns = fact_references(target)[dimension]
    column = pa.chunked_array(
        [chunk for name in columns for chunk in table.column(name).chunks],
        type=table.schema.field(columns[0]).type,
    )
    return list(pc.unique(column).sort().to_pylist())


def list_gold_files(
    s3: Any, bucket: str, table: str, *, start_after: str | None = None
) -> list[GoldFileKey]:
    """The gold files of ``table`` in the bucket (those after ``start_after`` when given),
    in the order transform wrote them.

    Keys under the table's folder that are not a gold file's are ignored.

    Examples
    --------
    >>> from totes.parquet_objects import parquet_bytes
    >>> from totes.zones.gold import gold_key
    >>> for sequence in (2, 1):
    ...     key = gold_key("fact_payment", sequence, f"exec-{sequence}", "ab12")
    ...     _ = s3.put_object(Bucket="processed", Key=key, Body=parquet_bytes(payments))
    >>> _ = s3.put_object(Bucket="processed", Key="fact_payment/notes.txt", Body=b"")
    >>> [(file.sequence, file.run_id) for file in list_gold_files(s3, "processed", "fact_payment")]
    [(1, 'exec-1'), (2, 'exec-2')]
    """
    paginator = s3.get_paginator("list_objects_v2")
    found: list[GoldFileKey] = []
    listing = {"Bucket": bucket, "Prefix": table_prefix(table)}
    if start_after is not None:
        listing["StartAfter"] = start_after
    for page in paginator.paginate(**listing):
        for item in page.get("Contents", []):
            parsed = GoldFileKey.parse(item["Key"])
            if parsed is not None and parsed.table == table:
                found.append(replace(parsed, written_at=item.get("LastModified")))
    # Transform names a target's files with its commit sequence first: that is the order.
    return sorted(found, key=lambda file: (file.stem, file.key))


def listed_through(
    cursor: GoldFileKey | None, listed: Sequence[GoldFileKey], loaded: set[str]
) -> GoldFileKey | None:
    """The file after which the next listing may start: the last of an unbroken run of
    loaded commits from ``cursor`` on (or ``cursor`` itself, when the next is not loaded).

    Every commit up to the one returned is loaded, and every commit after it has a key
    sorting after its key; so no file that is not loaded sorts before it. A file without
    a sequence (put by hand) sorts before every sequenced key: while one is not loaded,
    the cursor stays where it is.

    Examples
    --------
    >>> files = [GoldFileKey.parse(f"t/seq={n:010d}/run=r/{n:010d}-ab.parquet") for n in (1, 2, 4)]
    >>> listed_through(None, files, {f.key for f in files}).sequence  # 3 is not there yet
    2
    """
    if any(file.sequence is None and file.key not in loaded for file in listed):
        return cursor
    by_sequence: dict[int, list[GoldFileKey]] = {}
    for file in listed:
        if file.sequence is not None:
            by_sequence.setdefault(file.sequence, []).append(file)
    through = cursor
    following = (cursor.sequence or 0) + 1 if cursor is not None else 1
    while following in by_sequence and all(f.key in loaded for f in by_sequence[following]):
        through = max(by_sequence[following], key=lambda file: file.key)
        following += 1
    return through


def read_gold_file(s3: Any, bucket: str, file: GoldFileKey) -> pa.Table:
    """Read one gold file and return it with exactly the star schema of its table.

    Columns are put in the warehouse table's order and cast to the star types (an
    ``int64`` id written by a writer that widened it is accepted if every value fits).

    Raises
    ------
    GoldFileUnreadableError
        The object is not a Parquet file.
    GoldFileSchemaError
        A column is missing or extra, cannot be cast, or a required column holds nulls.

    Examples
    --------
    >>> from totes.parquet_objects import parquet_bytes
    >>> key = "fact_payment/run=exec-1/part-0.parquet"
    >>> _ = s3.put_object(Bucket="processed", Key=key, Body=parquet_bytes(payments))
    >>> read_gold_file(s3, "processed", GoldFileKey.parse(key)).num_rows
    3
    """
    body = s3.get_object(Bucket=bucket, Key=file.key)["Body"].read()
    try:
        table = parquet_table(body)
    except (pa.ArrowInvalid, OSError) as exc:
        raise GoldFileUnreadableError(f"{file.key} is not a readable Parquet file") from exc
    return conform(table, file.table, where=file.key)


def conform(table: pa.Table, warehouse_table: str, *, where: str) -> pa.Table:
    """Return ``table`` with the star schema of ``warehouse_table`` (order, types, nullability).

    Raises
    ------
    GoldFileSchemaError
        A column is missing or extra, cannot be cast, or a required column holds nulls.

    Examples
    --------
    >>> import pyarrow as pa
    >>> conform(pa.table({"payment_type_name": ["SALES_RECEIPT"], "payment_type_id": [1]}),
    ...         "dim_payment_type", where="example").column_names
    ['payment_type_id', 'payment_type_name']
    """
    schema = STAR_SCHEMAS[warehouse_table]
    names = set(table.column_names)
    missing = [name for name in schema.names if name not in names]
    extra = sorted(names - set(schema.names))
    if missing or extra:
        raise GoldFileSchemaError(
            f"{where} does not match {warehouse_table}: "
            f"missing columns {missing or 'none'}, unexpected columns {extra or 'none'}"
        )
    for star_field in schema:
        if not star_field.nullable and table.column(star_field.name).null_count:
            raise GoldFileSchemaError(
                f"{where} has nulls in {star_field.name}, which {warehouse_table} requires"
            )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise GoldFileSchemaError(
            f"{where} has columns whose types do not fit {warehouse_table}"
        ) from exc


def csv_chunks(table: pa.Table, positions: pa.Array | None = None) -> Iterator[pa.Buffer]:
    """Render the rows, each followed by its position in the file, as COPY CSV chunks.

    NULL is an unquoted empty field and every string is quoted, so NULL and the empty
    string stay apart; dates, times and decimals use the ISO forms PostgreSQL reads.

    Parameters
    ----------
    table
        The rows to render.
    positions
        Each row's position in its file, when ``table`` holds only some of the file's
        rows (``int64``); by default the rows are the whole file, in order.

    Examples
    --------
    >>> import pyarrow as pa
    >>> for chunk in csv_chunks(pa.table({"name": ["Zoë's", "", None]})):
    ...     print(bytes(chunk).decode())
    "Zoë's",0
    "",1
    ,2
    <BLANKLINE>
    """
    if positions is None:
        positions = consecutive(0, table.num_rows)
    return rows_as_csv(table.append_column(FILE_ROW, positions))


def rows_as_csv(table: pa.Table) -> Iterator[pa.Buffer]:
    """Render the rows as they are, as COPY CSV chunks (the forms :func:`csv_chunks` uses).

    Examples
    --------
    >>> import pyarrow as pa
    >>> print(b"".join(bytes(c) for c in rows_as_csv(pa.table({"k": [1], "v": [None]}))).decode())
    1,
    <BLANKLINE>
    """
    for start in range(0, table.num_rows, _ROWS_PER_CHUNK):
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table.slice(start, _ROWS_PER_CHUNK), sink, _CSV_OPTIONS)
        yield sink.getvalue()


#: PostgreSQL's binary COPY header (signature, flags, extension length) and trailer.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_BINARY_TRAILER = struct.pack(">h", -1)
#: Days from 1970-01-01 (Arrow's date epoch) to 2000-01-01 (PostgreSQL's).
_POSTGRES_EPOCH_DAYS = 10_957


def _big_endian(values: pa.Array, typecode: str) -> bytes:
    """The values of a null-free fixed-width integer array, big-endian, back to back."""
    out = array.array(typecode)
    width = out.itemsize
    start = values.offset * width
    out.frombytes(values.buffers()[1].to_pybytes()[start : start + len(values) * width])
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


class _BinaryField(NamedTuple):
    """How one column's values look in binary COPY: every value the same size.

    ``constant`` is a value's bytes with its varying parts zeroed; each part is an offset
    in the value, the parts' bytes of every row back to back, and the part's width.
    """

    constant: bytes
    parts: list[tuple[int, bytes, int]]


def _single_part(data: bytes, width: int) -> _BinaryField:
    """A value that is one part: the column's values, ``width`` bytes each."""
    return _BinaryField(bytes(width), [(0, data, width)])


#: The largest precision whose unscaled values an ``int64`` holds (decimals as PostgreSQL
#: numerics are rendered from them).
_INT64_DIGITS = 18
_NUMERIC_BASE_DIGITS = 4
_NUMERIC_NEGATIVE = 0x4000


def _unscaled(column: pa.Array) -> pa.Array:
    """A decimal128 column's unscaled values (precision at most 18) as ``int64``."""
    data = column.buffers()[1]
    # Each value is a little-endian 128-bit integer whose low half holds it whole.
    words = pa.Array.from_buffers(
        pa.int64(), 2 * len(column), [None, data], offset=2 * column.offset
    )
    return pc.take(words, pc.multiply(consecutive(0, len(column)), pa.scalar(2, pa.int64())))


def _numeric_field(column: pa.Array) -> _BinaryField:
    """Decimals as PostgreSQL numerics: sign, then base-10000 digits of a fixed layout.

    Every value gets the groups its type can need (leading and trailing zero groups
    included), which PostgreSQL strips on receipt: each value is then the same size.
    """
    kind = column.type
    scale, integer_digits = kind.scale, kind.precision - kind.scale
    integer_groups = -(-integer_digits // _NUMERIC_BASE_DIGITS)
    fraction_groups = -(-scale // _NUMERIC_BASE_DIGITS)
    groups = integer_groups + fraction_groups
    unscaled = _unscaled(column)
    magnitude = pc.abs_checked(unscaled)
    power = pa.scalar(10**scale, pa.int64())
    whole = pc.divide(magnitude, power)
    fraction = pc.subtract(magnitude, pc.multiply(whole, power))
    digits = [
        _digit_group(whole, 4 * (integer_groups - 1 - group), 0) for group in range(integer_groups)
    ] + [
        # Group g holds the fraction's decimal places 4g+1 to 4g+4; the last may hold fewer,
        # which count as its leading places.
        _digit_group(fraction, max(0, scale - 4 * group - 4), max(0, 4 * group + 4 - scale))
        for group in range(fraction_groups)
    ]
    sign = pc.if_else(
        pc.less(unscaled, pa.scalar(0, pa.int64())),
        pa.scalar(_NUMERIC_NEGATIVE, pa.int16()),
        pa.scalar(0, pa.int16()),
    )
    constant = struct.pack(">hhhh", groups, integer_groups - 1, 0, scale) + bytes(2 * groups)
    parts = [(4, _big_endian(sign, "h"), 2)] + [
        (8 + 2 * position, _big_endian(digit, "h"), 2) for position, digit in enumerate(digits)
    ]
    return _BinaryField(constant, parts)


def _digit_group(values: pa.Array, below: int, padding: int) -> pa.Array:
    """One base-10000 digit of each non-negative value.

    The digit is made of the ``4 - padding`` decimal digits above the lowest ``below``,
    followed by ``padding`` zeros (the last group of a fraction whose places do not fill
    it).
    """
    shifted = pc.divide(values, pa.scalar(10**below, pa.int64()))
    kept = 10 ** (4 - padding)
    above = pc.multiply(
        pc.divide(shifted, pa.scalar(kept, pa.int64())), pa.scalar(kept, pa.int64())
    )
    group = pc.multiply(pc.subtract(shifted, above), pa.scalar(10**padding, pa.int64()))
    return group.cast(pa.int16())


def _binary_field(column: pa.Array) -> _BinaryField:
    """One column in PostgreSQL's binary representation."""
    kind = column.type
    if column.null_count:
        raise ValueError("binary COPY of fixed-width columns takes no nulls")
    if kind == pa.int32():
        return _single_part(_big_endian(column, "i"), 4)
    if kind == pa.int64():
        return _single_part(_big_endian(column, "q"), 8)
    if kind == pa.bool_():
        return _single_part(_big_endian(column.cast(pa.int8()), "b"), 1)
    if kind == pa.date32():
        days = pc.subtract(column.cast(pa.int32()), pa.scalar(_POSTGRES_EPOCH_DAYS, pa.int32()))
        return _single_part(_big_endian(days, "i"), 4)
    if kind == pa.time32("ms"):
        micros = pc.multiply(column.cast(pa.int32()).cast(pa.int64()), pa.scalar(1000, pa.int64()))
        return _single_part(_big_endian(micros, "q"), 8)
    if _has_numeric_form(kind):
        return _numeric_field(column)
    raise TypeError(f"no fixed-width binary COPY form for {kind}")


def _has_numeric_form(kind: pa.DataType) -> bool:
    return (
        pa.types.is_decimal128(kind)
        and kind.precision <= _INT64_DIGITS
        and kind.scale >= 0
        and sys.byteorder == "little"
    )


def has_binary_form(schema: pa.Schema) -> bool:
    """Tell whether rows of ``schema`` can go to PostgreSQL as binary COPY.

    Every column must have a form of one size: ``int32``, ``int64``, ``bool``,
    ``date32``, ``time32[ms]`` or ``decimal128`` of precision up to 18 (a fact's; on a
    little-endian machine, as Lambda's are, whose decimals hold their values in the low
    half), and none may be nullable.

    Examples
    --------
    >>> from totes.warehouse.star import STAR_SCHEMAS
    >>> has_binary_form(STAR_SCHEMAS["fact_sales_order"])
    True
    >>> has_binary_form(STAR_SCHEMAS["fact_purchase_order"])  # item_code is text
    False
    """
    fixed = (pa.int32(), pa.int64(), pa.bool_(), pa.date32(), pa.time32("ms"))
    return all(
        not field.nullable and (field.type in fixed or _has_numeric_form(field.type))
        for field in schema
    )


def binary_chunks(table: pa.Table, positions: pa.Array | None = None) -> Iterator[bytes]:
    """Render rows, each followed by its file position, as binary COPY (see
    :func:`rows_as_binary`).

    Examples
    --------
    >>> import pyarrow as pa
    >>> b"".join(binary_chunks(pa.table({"id": pa.array([7], pa.int32())}))).hex()
    ... # doctest: +NORMALIZE_WHITESPACE
    '5047434f50590aff0d0a00000000000000000000020000000400000007000000080000000000000000ffff'
    """
    if positions is None:
        positions = consecutive(0, table.num_rows)
    return rows_as_binary(table.append_column(FILE_ROW, positions))


def rows_as_binary(table: pa.Table) -> Iterator[bytes]:
    """Render the rows as they are as binary COPY, which costs PostgreSQL a fraction of
    parsing CSV.

    Every column must have a binary form of one size (:func:`has_binary_form`) and no
    nulls: each row is then the same size, so rows are assembled a byte column at a time
    with strided slices instead of value by value.

    Raises
    ------
    TypeError
        A column has no binary form of one size (text, or a decimal beyond 18 digits).
    ValueError
        A column holds nulls.

    Examples
    --------
    A numeric(10, 2) of -3.50 after the header (19 bytes), the row's field count and the
    field's length: three base-10000 digits (weight 1: the first is of 10000s), negative,
    two decimal places, 0 3 5000:

    >>> import struct
    >>> import pyarrow as pa
    >>> from decimal import Decimal
    >>> prices = pa.array([Decimal("-3.5")], pa.decimal128(10, 2))
    >>> struct.unpack(">hhHh3h", b"".join(rows_as_binary(pa.table({"price": prices})))[25:-2])
    (3, 1, 16384, 2, 0, 3, 5000)
    """
    yield _BINARY_HEADER
    for start in range(0, table.num_rows, _ROWS_PER_CHUNK):
        # A chunk's columns at a time: memory stays bounded whatever the file's size.
        chunk = table.slice(start, _ROWS_PER_CHUNK)
        fields = [_binary_field(column.combine_chunks()) for column in chunk.columns]
        template = struct.pack(">h", len(fields)) + b"".join(
            struct.pack(">i", len(field.constant)) + field.constant for field in fields
        )
        width = len(template)
        rows = bytearray(template * chunk.num_rows)
        at = 2
        for field in fields:
            at += 4
            for offset, data, size in field.parts:
                for byte in range(size):
                    rows[at + offset + byte :: width] = data[byte::size]
            at += len(field.constant)
        yield bytes(rows)
    yield _BINARY_TRAILER


def write_rejects(
    s3: Any, bucket: str, key: str, table: pa.Table, rejected: Sequence[RejectedRow]
) -> str:
    """Quarantine the rejected rows of a file at ``key``, each with the reason it was not applied.

    Parameters
    ----------
    key
        Where: the file's :attr:`GoldFileKey.rejects_key`, or the key of the quarantine
        object being replayed (rewritten with the rows still missing a dimension row).
    table
        The file's rows, as :func:`read_gold_file` returned them.
    rejected
        The rejected rows (position in ``table``, reason).

    Returns
    -------
    str
        ``key``.

    Examples
    --------
    >>> from totes.zones.rejects import load_rejects_key
    >>> file = GoldFileKey.parse("fact_payment/run=exec-1/part-0.parquet")
    >>> write_rejects(s3, "processed", load_rejects_key(file), payments,
    ...     [RejectedRow(2, "transaction_id 9 not in dim_transaction",
    ...                  "transaction_id not in dim_transaction")])
    'rejects/fact_payment/run=exec-1/part-0.load.parquet'
    """
    ordered = sorted(rejected)
    rows = table.take(pa.array([row.position for row in ordered], pa.int64()))
    rows = rows.append_column(
        pa.field(REJECT_REASON, pa.string(), nullable=False),
        pa.array([row.reason for row in ordered], pa.string()),
    )
    s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(rows))
    return key


def list_quarantined(s3: Any, bucket: str, table: str) -> list[RejectsKey]:
    """The quarantine objects of a fact table (rows load held back), oldest run first.

    Each is named after the gold file its rows came from; rejects that transform wrote
    (rows it could not shape) live beside them without the ``.load`` suffix and are not
    listed: a new version of the source row is what brings those back.

    Examples
    --------
    >>> from totes.parquet_objects import parquet_bytes
    >>> for key in ("rejects/fact_payment/run=exec-1/part-0.load.parquet",  # load's
    ...             "rejects/fact_payment/run=exec-1/9f2c.parquet"):  # transform's
    ...     _ = s3.put_object(Bucket="processed", Key=key, Body=parquet_bytes(payments))
    >>> [file.key for file in list_quarantined(s3, "processed", "fact_payment")]
    ['rejects/fact_payment/run=exec-1/part-0.load.parquet']
    """
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=rejects_prefix(table)
    )
    for page in pages:
        for item in page.get("Contents", []):
            rejects = RejectsKey.parse(item["Key"])
            if rejects is not None and rejects.stage is RejectingStage.LOAD:
                found.append(rejects)
    return sorted(found, key=lambda file: (file.run_id, file.name))


def read_quarantined(s3: Any, bucket: str, file: RejectsKey) -> pa.Table:
    """The rows of a quarantine object, with exactly the star schema of its table.

    Raises
    ------
    GoldFileUnreadableError, GoldFileSchemaError
        As :func:`read_gold_file`.
    """
    body = s3.get_object(Bucket=bucket, Key=file.key)["Body"].read()
    try:
        table = parquet_table(body)
    except (pa.ArrowInvalid, OSError) as exc:
        raise GoldFileUnreadableError(f"{file.key} is not a readable Parquet file") from exc
    return conform(table.drop_columns([REJECT_REASON]), file.table, where=file.key)
