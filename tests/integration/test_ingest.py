"""Ingest: every source row reaches the raw zone exactly as it is, once per version, whatever
happens to the execution (DESIGN.md sections 3 and 4)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from totes.db import connect, row_counts
from totes.errors import (
    AuthenticationFailedError,
    DatabaseUnreachableError,
    NullLastUpdatedError,
    SourceSchemaDriftError,
    SourceTableMissingError,
    TimestampOutOfRangeError,
    WatermarkConflictError,
)
from totes.findings import FindingKind, Stage
from totes.ingest.raw_rows import read_batch
from totes.ingest.stage import IngestRequest, IngestSettings, ingest_table
from totes.ingest.watermarks import DynamoWatermarkStore, Watermark
from totes.names import RAW_MANIFEST_PREFIX, SOURCE_DATABASE
from totes.results import IngestResult
from totes.tables import SOURCE, SOURCE_TABLES
from totes_local.runtime.postgres import PostgresServer

from .pipeline_harness import CrashBeforeAdvance, StaleReader

BUCKET = "totes-ingested"
WATERMARKS = "totes-watermarks"


@dataclass
class Lake:
    """The AWS side of ingest, in moto."""

    s3: Any
    store: DynamoWatermarkStore
    settings: IngestSettings
    runs: int = 0

    def ingest(
        self, dsn: str, table: str, *, max_rows: int | None = None, store: Any = None
    ) -> IngestResult:
        self.runs += 1
        return ingest_table(
            IngestRequest(table=table, run_id=f"run-{self.runs}", max_rows=max_rows),
            self.settings,
            source_dsn=lambda: dsn,
            s3=self.s3,
            watermarks=store or self.store,
        )

    def manifests(self, table: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{RAW_MANIFEST_PREFIX}/{table}/")
            for item in page.get("Contents", [])
        ]
        return sorted(keys)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of every complete batch of ``table``, in batch order."""
        rows: list[dict[str, Any]] = []
        for key in self.manifests(table):
            _, batch = read_batch(self.s3, BUCKET, key)
            rows.extend(batch.to_pylist())
        return rows


@pytest.fixture
def lake(s3: Any, dynamodb: Any) -> Lake:
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    dynamodb.create_table(
        TableName=WATERMARKS,
        KeySchema=[{"AttributeName": "table_name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "table_name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return Lake(
        s3=s3,
        store=DynamoWatermarkStore(dynamodb, WATERMARKS),
        settings=IngestSettings(bucket=BUCKET, watermark_table=WATERMARKS),
    )


def _source_rows(dsn: str, table: str) -> list[dict[str, Any]]:
    with connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY last_updated, {table}_id").fetchall()


def _keys(rows: list[dict[str, Any]], table: str) -> list[int]:
    return [row[SOURCE[table].key] for row in rows]


def test_first_run_ingests_every_row_and_an_idle_run_writes_nothing(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given a seeded source and an empty raw zone
    with connect(seeded_source_dsn) as conn:
        counts = row_counts(conn, SOURCE_TABLES)
    # When every table is ingested
    first = {table: lake.ingest(seeded_source_dsn, table) for table in SOURCE_TABLES}
    marks = {table: lake.store.read(table) for table in SOURCE_TABLES}
    # Then every row is in the raw zone, in cursor order
    assert {table: result.rows for table, result in first.items()} == counts
    for table in SOURCE_TABLES:
        assert _keys(lake.rows(table), table) == _keys(
            _source_rows(seeded_source_dsn, table), table
        )
        assert not first[table].has_more
    # When nothing changed and ingest runs again, Then nothing is written and no mark moves
    again = {table: lake.ingest(seeded_source_dsn, table) for table in SOURCE_TABLES}
    assert {result.rows for result in again.values()} == {0}
    assert {result.manifest_key for result in again.values()} == {None}
    assert {table: lake.store.read(table) for table in SOURCE_TABLES} == marks


def test_rows_sharing_one_timestamp_are_each_ingested_once_across_batches(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given a table already ingested, then 5,000 new designs that all share one last_updated
    lake.ingest(seeded_source_dsn, "design")
    stamp = datetime(2030, 1, 1, 12, 0, 0, 123_000)
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "INSERT INTO design (design_name, file_location, file_name, created_at, "
            "last_updated) SELECT 'Steel', '/usr', 'steel-' || n || '.json', %s, %s "
            "FROM generate_series(1, 5000) AS n",
            (stamp, stamp),
        )
    # When ingest runs with at most 1,000 rows per batch
    results = [lake.ingest(seeded_source_dsn, "design", max_rows=1_000) for _ in range(6)]
    # Then five batches of 1,000 take every row exactly once, and the sixth finds nothing
    assert [r.rows for r in results] == [1_000] * 5 + [0]
    assert [r.has_more for r in results] == [True] * 4 + [False] * 2
    keys = _keys(lake.rows("design"), "design")
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(_keys(_source_rows(seeded_source_dsn, "design"), "design"))


def test_a_crash_before_the_watermark_advances_costs_a_reread_and_loses_nothing(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given a batch fully written to S3 whose watermark never advanced
    with pytest.raises(SystemExit):
        lake.ingest(seeded_source_dsn, "sales_order", store=CrashBeforeAdvance(lake.store))
    assert lake.store.read("sales_order") == Watermark()
    # When the next execution runs
    retry = lake.ingest(seeded_source_dsn, "sales_order")
    # Then it extracts the same rows again; every row is present, duplicated at most once
    source = _keys(_source_rows(seeded_source_dsn, "sales_order"), "sales_order")
    assert retry.rows == len(source)
    copies = Counter(_keys(lake.rows("sales_order"), "sales_order"))
    assert set(copies) == set(source)
    assert set(copies.values()) == {2}
    assert lake.ingest(seeded_source_dsn, "sales_order").rows == 0


def test_of_two_racing_ingests_exactly_one_advances_the_watermark(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given two executions that both read the initial watermark
    seen = lake.store.read("staff")
    winner = lake.ingest(seeded_source_dsn, "staff", store=StaleReader(lake.store, seen))
    after_winner = lake.store.read("staff")
    # When the slower one tries to advance from the same starting point
    with pytest.raises(WatermarkConflictError, match="another execution advanced it"):
        lake.ingest(seeded_source_dsn, "staff", store=StaleReader(lake.store, seen))
    # Then the winner's watermark stands, and no row is skipped
    assert lake.store.read("staff") == after_winner
    assert winner.rows == len(_source_rows(seeded_source_dsn, "staff"))
    assert lake.ingest(seeded_source_dsn, "staff").rows == 0


def test_values_come_back_from_the_raw_zone_identical_to_the_source(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given rows holding every awkward value the source can hold
    awkward = [
        ("Line\nbreak", None, "Leeds", "01234", 'Zoë\'s "Tote" Café, Ltd'),
        ("O'Keefe", "", "Leds", "00000-0001", "Hartmann, Franecki and Ratke"),
        ("\\N", " ", "", "0", "tab\there"),
    ]
    with connect(seeded_source_dsn) as conn:
        for line_1, line_2, city, postal_code, country in awkward:
            conn.execute(
                "INSERT INTO address (address_line_1, address_line_2, district, city, "
                "postal_code, country, phone, created_at, last_updated) "
                "VALUES (%s, %s, NULL, %s, %s, %s, '0123 456789', "
                "'2030-01-01 00:00:00', '2030-01-01 00:00:00.001')",
                (line_1, line_2, city, postal_code, country),
            )
        conn.execute(
            "UPDATE sales_order SET unit_price = 0.10, last_updated = '2030-01-02 09:26:10' "
            "WHERE sales_order_id = 1"
        )
        conn.execute(
            "UPDATE sales_order SET last_updated = '2030-01-02 09:26:10.123' "
            "WHERE sales_order_id = 2"
        )
    # When the tables are ingested and read back
    for table in ("address", "sales_order", "payment", "transaction"):
        lake.ingest(seeded_source_dsn, table)
        # Then every value is identical: NULL vs '', numerics as the source's text,
        # microseconds, quotes, newlines
        assert lake.rows(table) == [
            {
                k: (str(v) if k == "transaction_type" or isinstance(v, Decimal) else v)
                for k, v in row.items()
            }
            for row in _source_rows(seeded_source_dsn, table)
        ]
    by_key = {row["sales_order_id"]: row for row in lake.rows("sales_order")}
    assert by_key[1]["unit_price"] == "0.10"
    assert by_key[1]["last_updated"] == datetime(2030, 1, 2, 9, 26, 10)
    assert by_key[2]["last_updated"] == datetime(2030, 1, 2, 9, 26, 10, 123_000)


def test_a_late_commit_behind_the_watermark_is_read_within_the_lookback_window(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given a table ingested up to its newest row
    lake.ingest(seeded_source_dsn, "currency")
    mark = lake.store.read("currency")
    assert mark.last_updated is not None
    # When a transaction commits late with a last_updated 5 minutes behind the watermark
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "INSERT INTO currency (currency_code, created_at, last_updated) VALUES ('JPY', %s, %s)",
            (mark.last_updated - timedelta(minutes=5),) * 2,
        )
    result = lake.ingest(seeded_source_dsn, "currency")
    # Then the next ingest re-reads the window and the late row reaches the raw zone
    assert result.rereads_window
    assert "JPY" in {row["currency_code"] for row in lake.rows("currency")}
    # And once read, an idle run writes nothing again
    assert lake.ingest(seeded_source_dsn, "currency").rows == 0


def test_an_unexpected_column_is_ingested_and_recorded_in_the_manifest(
    lake: Lake, seeded_source_dsn: str
) -> None:
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE staff ADD COLUMN nickname text DEFAULT 'Tote'")
    result = lake.ingest(seeded_source_dsn, "staff")
    manifest, batch = read_batch(lake.s3, BUCKET, lake.manifests("staff")[0])
    assert result.unexpected_columns == ["nickname"]
    assert manifest.unexpected_columns == ["nickname"]
    assert set(batch.column("nickname").to_pylist()) == {"Tote"}
    # And it is reported as long as it is there, even by runs that find nothing new
    idle = lake.ingest(seeded_source_dsn, "staff")
    assert idle.rows == 0
    assert [finding.detail for finding in idle.findings] == [
        "new source column nickname: kept in the raw zone, not loaded"
    ]


def test_a_column_a_transform_needs_that_is_gone_stops_the_batch_before_anything_is_written(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given sales orders ingested once, then new orders and a renamed column
    lake.ingest(seeded_source_dsn, "sales_order")
    mark, written = lake.store.read("sales_order"), lake.manifests("sales_order")
    with connect(seeded_source_dsn) as conn:
        conn.execute("UPDATE sales_order SET last_updated = now() WHERE sales_order_id <= 3")
        conn.execute("ALTER TABLE sales_order RENAME COLUMN units_sold TO units")
    # When ingest runs, Then it stops with a named error that says which column
    with pytest.raises(SourceSchemaDriftError, match="sales_order lacks units_sold") as stopped:
        lake.ingest(seeded_source_dsn, "sales_order")
    assert stopped.value.drift.missing == ["units_sold"]
    # And nothing was written and the watermark did not move
    assert lake.manifests("sales_order") == written
    assert lake.store.read("sales_order") == mark
    # When the column is back, Then the next run extracts the changed orders
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE sales_order RENAME COLUMN units TO units_sold")
    assert lake.ingest(seeded_source_dsn, "sales_order").rows == 3


def test_a_column_no_transform_reads_may_go_with_a_warning(
    lake: Lake, seeded_source_dsn: str
) -> None:
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE department DROP COLUMN manager")
    result = lake.ingest(seeded_source_dsn, "department")
    assert result.rows > 0
    assert result.missing_columns == ["manager"]
    assert [finding.kind for finding in result.findings] == ["missing_columns"]


def test_rows_without_last_updated_stop_the_table_and_keep_the_watermark(
    lake: Lake, seeded_source_dsn: str
) -> None:
    lake.ingest(seeded_source_dsn, "department")
    mark, written = lake.store.read("department"), lake.manifests("department")
    with connect(seeded_source_dsn) as conn:
        conn.execute("ALTER TABLE department ALTER COLUMN last_updated DROP NOT NULL")
        conn.execute("INSERT INTO department (department_name) VALUES ('Returns')")
    with pytest.raises(NullLastUpdatedError, match="1 rows of department have no last_updated"):
        lake.ingest(seeded_source_dsn, "department")
    assert lake.store.read("department") == mark
    assert lake.manifests("department") == written


@pytest.mark.parametrize("column", ["created_at", "last_updated"])
@pytest.mark.parametrize("stamp", ["infinity", "-infinity", "0044-03-15 BC", "12000-01-01"])
def test_rows_with_a_timestamp_nothing_downstream_reads_stop_the_table_and_keep_the_watermark(
    lake: Lake, seeded_source_dsn: str, stamp: str, column: str
) -> None:
    # Given a table ingested once, then a row with a timestamp PostgreSQL stores but no
    # later stage can read (Arrow, Python and the warehouse's dates stop at 9999), in
    # its creation time or in the column the watermark follows
    lake.ingest(seeded_source_dsn, "department")
    mark, written = lake.store.read("department"), lake.manifests("department")
    with connect(seeded_source_dsn) as conn:
        other = "last_updated" if column == "created_at" else "created_at"
        conn.execute(
            f"UPDATE department SET {column} = %s, {other} = now() WHERE department_id = 1",
            (stamp,),
        )

    # When it is ingested, then the named error says how many rows and why, and nothing moved
    with pytest.raises(
        TimestampOutOfRangeError,
        match="1 rows of department have a timestamp outside years 1 to 9999",
    ):
        lake.ingest(seeded_source_dsn, "department")
    assert lake.store.read("department") == mark
    assert lake.manifests("department") == written

    # When the row is fixed, then the next ingest carries it and the watermark moves on
    with connect(seeded_source_dsn) as conn:
        conn.execute(
            "UPDATE department SET created_at = now(), last_updated = now() WHERE department_id = 1"
        )
    lake.ingest(seeded_source_dsn, "department")
    fixed = [row for row in lake.rows("department") if row["department_id"] == 1]
    assert fixed[-1]["created_at"].year == datetime.now().year
    assert lake.store.read("department") != mark


def test_a_table_missing_from_the_source_is_named_and_nothing_moves(
    lake: Lake, seeded_source_dsn: str
) -> None:
    with connect(seeded_source_dsn) as conn:
        conn.execute("DROP TABLE payment")
    with pytest.raises(SourceTableMissingError, match="no table payment"):
        lake.ingest(seeded_source_dsn, "payment")
    assert lake.store.read("payment") == Watermark()


@pytest.mark.parametrize("table", ["_prisma_migrations", "customers"])
def test_tables_outside_the_pipeline_are_skipped_without_touching_the_source(
    lake: Lake, table: str
) -> None:
    result = lake.ingest("postgresql://nobody@127.0.0.1:9/none", table)
    assert result.skipped == "not a table the pipeline extracts"
    assert result.rows == 0


def test_an_unreachable_source_fails_by_name_and_writes_nothing(lake: Lake) -> None:
    with pytest.raises(DatabaseUnreachableError):
        lake.ingest("postgresql://etl@127.0.0.1:9/totesys", "staff")
    assert lake.manifests("staff") == []
    assert lake.store.read("staff") == Watermark()


@pytest.mark.slow
def test_a_wrong_password_fails_by_name_and_writes_nothing(
    lake: Lake, password_server: PostgresServer
) -> None:
    dsn = make_conninfo(password_server.admin_dsn, user="ann", password="nope", dbname="totesys")
    with pytest.raises(AuthenticationFailedError):
        lake.ingest(dsn, "staff")
    assert lake.manifests("staff") == []
    assert lake.store.read("staff") == Watermark()


def test_a_batch_is_read_from_one_consistent_snapshot(lake: Lake, seeded_source_dsn: str) -> None:
    # The manifest's cursor range and row count agree with what the parts hold.
    result = lake.ingest(seeded_source_dsn, "transaction")
    manifest, batch = read_batch(lake.s3, BUCKET, lake.manifests("transaction")[0])
    assert manifest.rows == batch.num_rows == result.rows
    newest = max(batch.column("last_updated").to_pylist())
    assert manifest.cursor_to is not None
    assert datetime.fromisoformat(str(manifest.cursor_to[0])) == newest
    assert all(part.sha256 and part.key.endswith(".csv.gz") for part in manifest.parts)
    assert manifest.parts[0].key.startswith(f"transaction/{datetime.now(UTC):%Y/%m/%d}/")


def test_a_connection_that_does_not_verify_the_source_is_named_in_every_result(
    lake: Lake, seeded_source_dsn: str
) -> None:
    # Given a source DSN whose sslmode (a secret's explicit choice) verifies nothing
    dsn = make_conninfo(seeded_source_dsn, sslmode="prefer")

    # When a table is ingested, and again with nothing new
    results = [lake.ingest(dsn, "currency") for _ in range(2)]

    # Then each result names the unverified connection, for the summary and the log
    for result in results:
        (finding,) = result.findings
        assert (finding.kind, finding.table, finding.stage) == (
            FindingKind.UNVERIFIED_TLS,
            SOURCE_DATABASE,
            Stage.INGEST,
        )
        assert finding.detail.startswith("sslmode=prefer: the connection to 127.0.0.1 may")


def test_watermark_store_refuses_to_move_backwards(lake: Lake) -> None:
    start = Watermark()
    first = start.advanced_to(datetime(2030, 1, 1), 10, 0, 0)
    lake.store.advance("address", start, first)
    with pytest.raises(ValueError, match="backwards"):
        lake.store.advance("address", first, first.advanced_to(datetime(2029, 1, 1), 1, 0, 0))
    assert lake.store.read("address") == first
