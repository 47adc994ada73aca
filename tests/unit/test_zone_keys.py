"""Each zone's keys: what a stage writes is what the next one parses back.

One module per zone builds and parses its keys (:mod:`totes.zones`); these properties
say the two agree for every table, run id, time and name a stage can produce.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totes.lake.layout import month_text, table_of_key, table_prefix
from totes.tables import GOLD_TABLES, SOURCE_TABLES, WAREHOUSE_TABLES
from totes.zones import raw
from totes.zones.gold import GoldFileKey, gold_key, unsequenced_prefix
from totes.zones.mirror import mirror_key, mirror_of
from totes.zones.rejects import (
    RejectingStage,
    RejectsKey,
    load_rejects_key,
    transform_rejects_key,
)
from totes.zones.state import staged_file, staging_key, state_key, table_of_state

source_tables = st.sampled_from(SOURCE_TABLES)
gold_tables = st.sampled_from(GOLD_TABLES)
#: Run ids as the state machine and a person name them: an execution name, a time.
run_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{4,20}", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


@given(table=source_tables, extracted_at=times, run_id=run_ids)
def test_a_manifest_key_parses_back_to_its_table_and_extraction_time(
    table: str, extracted_at: datetime, run_id: str
) -> None:
    # Given the manifest key ingest writes for a batch
    batch = raw.batch_id_for(extracted_at, run_id)
    key = raw.manifest_key(table, extracted_at, batch)
    # When transform parses it
    parsed = raw.ManifestKey.parse(key)
    # Then it names the table, the batch and the second of extraction
    assert parsed is not None
    assert (parsed.table, parsed.batch_id) == (table, batch)
    assert parsed.extracted_at == extracted_at.replace(microsecond=0, tzinfo=None)
    # And its parts are never taken for a manifest
    assert raw.ManifestKey.parse(raw.part_key(table, extracted_at, batch, 0)) is None


@given(table=source_tables, first=times, later=times, run_id=run_ids)
def test_manifest_keys_sort_in_extraction_order_and_listing_never_skips_a_recent_one(
    table: str, first: datetime, later: datetime, run_id: str
) -> None:
    # Given two batches of one table extracted at two times
    keys = [raw.manifest_key(table, t, raw.batch_id_for(t, run_id)) for t in (first, later)]
    # Then their keys sort as their times do
    if first < later:
        assert keys[0] < keys[1]
    # And a listing that starts after the newest consumed batch, less the remembered
    # window, still sees a batch extracted within that window
    remembered = timedelta(minutes=15)
    newest = max(first, later)
    start = raw.listing_start(table, [keys[0], keys[1]], remembered)
    within = newest - remembered + timedelta(seconds=1)
    assert raw.manifest_key(table, within, raw.batch_id_for(within, run_id)) > start


@given(table=gold_tables, sequence=st.integers(1, 9_999_999_999), run_id=run_ids, digest=digests)
def test_a_gold_key_parses_back_to_its_table_run_and_sequence(
    table: str, sequence: int, run_id: str, digest: str
) -> None:
    # Given the key of a gold file transform commits
    key = gold_key(table, sequence, run_id, digest)
    # When load parses it
    parsed = GoldFileKey.parse(key)
    # Then it names the table, the run and the commit's sequence
    assert parsed is not None
    assert (parsed.key, parsed.table, parsed.run_id, parsed.sequence) == (
        key,
        table,
        run_id,
        sequence,
    )


@given(table=gold_tables, run_id=run_ids, name=names)
def test_a_gold_file_of_an_earlier_release_parses_without_a_sequence(
    table: str, run_id: str, name: str
) -> None:
    parsed = GoldFileKey.parse(f"{unsequenced_prefix(table, run_id)}{name}.parquet")
    assert parsed is not None
    assert (parsed.table, parsed.run_id, parsed.stem) == (table, run_id, name)


@given(table=gold_tables, sequence=st.integers(1, 10**9), run_id=run_ids, digest=digests)
def test_rejects_keys_of_both_stages_parse_back_and_never_collide(
    table: str, sequence: int, run_id: str, digest: str
) -> None:
    # Given the rejects of a transform commit and those load kept from its gold file
    gold = GoldFileKey.parse(gold_key(table, sequence, run_id, digest))
    assert gold is not None
    by_transform = RejectsKey.parse(transform_rejects_key(table, run_id, digest))
    by_load = RejectsKey.parse(load_rejects_key(gold))
    # Then each parses back to its table, run and stage, and the two keys differ
    assert by_transform is not None
    assert by_load is not None
    assert (by_transform.table, by_transform.run_id, by_transform.name) == (table, run_id, digest)
    assert by_transform.stage is RejectingStage.TRANSFORM
    assert (by_load.table, by_load.run_id, by_load.name) == (table, run_id, gold.stem)
    assert by_load.stage is RejectingStage.LOAD
    assert by_load.key != by_transform.key
    # And neither is ever listed as a gold file
    assert GoldFileKey.parse(by_load.key) is None
    assert GoldFileKey.parse(by_transform.key) is None


@given(table=gold_tables, source=source_tables, digest=digests)
def test_a_mirror_key_parses_back_to_its_table_and_source(
    table: str, source: str, digest: str
) -> None:
    key = mirror_key(table, source, digest)
    assert mirror_of(key) == (table, source, digest)
    assert GoldFileKey.parse(key) is None


@given(table=gold_tables, name=names)
def test_state_and_staging_keys_parse_back_and_are_never_gold_files(table: str, name: str) -> None:
    assert table_of_state(state_key(table)) == table
    assert staged_file(staging_key(table, name)) == (table, name)
    assert GoldFileKey.parse(staging_key(table, name)) is None


@given(table=st.sampled_from(WAREHOUSE_TABLES), name=names)
def test_every_key_under_a_lake_tables_folder_names_its_table(table: str, name: str) -> None:
    for inside in ("data", "metadata"):
        assert table_of_key(f"{table_prefix(table)}{inside}/{name}.parquet") == table
    assert GoldFileKey.parse(f"{table_prefix(table)}data/{name}.parquet") is None


@pytest.mark.parametrize(
    "key",
    [
        "dim_staff/part-0.parquet",
        "dim_staff/run=exec-1/part-0.json",
        "dim_staff/run=exec-1/nested/part-0.parquet",
        "rejects/dim_staff/run=exec-1/part-0.parquet",
        "_state/transform/dim_staff.json",
    ],
)
def test_keys_that_are_not_gold_files_are_not_parsed(key: str) -> None:
    assert GoldFileKey.parse(key) is None


@given(
    st.lists(
        st.one_of(st.none(), st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))),
        max_size=60,
    ),
    st.integers(min_value=1, max_value=4),
)
def test_a_facts_lake_month_is_its_last_updated_dates_month_whatever_the_dates(dates, chunks):
    # Given fact dates (repeated, null, from any year Python knows) in one or more chunks
    size = max(1, len(dates) // chunks)
    column = pa.chunked_array(
        [pa.array(dates[i : i + size], pa.date32()) for i in range(0, len(dates), size)],
        type=pa.date32(),
    )

    # When the lake's month is made of them, then each row has its own date's month
    assert month_text(column).to_pylist() == [
        None if day is None else f"{day.year:04d}-{day.month:02d}" for day in dates
    ]
