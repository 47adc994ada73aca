"""`totes seed --from-snapshot` loads the client's snapshot row for row, or refuses clearly."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg.rows import dict_row

from totes.db import connect
from totes.errors import SchemaAlreadyExistsError, SnapshotFormatError
from totes.source.schema import existing_source_tables
from totes.tables import SOURCE_TABLES
from totes_local.source.snapshot import load_snapshot

pytestmark = pytest.mark.snapshot_data


def _as_source_value(value: Any, column: str) -> Any:
    if column in ("created_at", "last_updated"):
        return datetime.fromisoformat(value)
    return value


@pytest.mark.parametrize("table", [t for t in SOURCE_TABLES if t != "payment"])
def test_every_snapshot_row_arrives_with_identical_values(
    snapshot_source_dsn: str, snapshot_dir: Path, table: str
) -> None:
    # Given the snapshot file of a table
    with gzip.open(snapshot_dir / f"{table}.jsonl.gz", "rt", encoding="utf-8") as lines:
        records = [json.loads(line, parse_float=Decimal) for line in lines]
    expected = sorted(
        ({k: _as_source_value(v, k) for k, v in r.items()} for r in records),
        key=lambda r: r[f"{table}_id"],
    )
    # When the loaded table is read back
    with connect(snapshot_source_dsn, row_factory=dict_row) as conn:
        actual = conn.execute(f"SELECT * FROM {table} ORDER BY {table}_id").fetchall()
    # Then it holds exactly those rows, value for value (enums compare as their text)
    assert [
        {
            k: str(v) if k.endswith("_type") or k == "payment_type_name" else v
            for k, v in row.items()
        }
        for row in actual
    ] == expected


def test_money_keeps_its_cents_and_timestamps_their_milliseconds(snapshot_source_dsn: str) -> None:
    with connect(snapshot_source_dsn) as conn:
        price = conn.execute(
            "SELECT unit_price FROM sales_order WHERE sales_order_id = 2"
        ).fetchone()
        stamp = conn.execute("SELECT created_at FROM address WHERE address_id = 1").fetchone()
    assert price == (Decimal("3.94"),)
    assert stamp == (datetime(2022, 11, 3, 14, 20, 49, 962_000),)


def test_a_table_absent_from_the_snapshot_is_left_empty_and_reported(
    source_dsn: str, snapshot_dir: Path
) -> None:
    with connect(source_dsn) as conn:
        result = load_snapshot(conn, snapshot_dir)
        payments = conn.execute("SELECT count(*) FROM payment").fetchone()
    assert result.missing_tables == ["payment"]
    assert payments == (0,)
    assert result.rows["sales_order"] == 11_175


def _snapshot_with(tmp_path: Path, table: str, lines: list[str]) -> Path:
    with gzip.open(tmp_path / f"{table}.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return tmp_path


CURRENCY = (
    '{"currency_id": 1, "currency_code": "GBP", '
    '"created_at": "2022-11-03T14:20:49.962000", "last_updated": "2022-11-03T14:20:49.962000"}'
)


@pytest.mark.parametrize(
    ("lines", "complaint"),
    [
        ([CURRENCY, '{"currency_id": 2, "currency_code": '], "line 2: not a JSON object"),
        ([CURRENCY.replace('"GBP"', '"GBP", "symbol": "£"')], "unexpected: ['symbol']"),
        ([CURRENCY.replace('"currency_code": "GBP", ', "")], "missing: ['currency_code']"),
        (["[1, 2]"], "line 1: not a JSON object"),
    ],
    ids=["truncated line", "unexpected column", "missing column", "not an object"],
)
def test_a_malformed_snapshot_is_refused_by_name_and_leaves_nothing_behind(
    source_dsn: str, tmp_path: Path, lines: list[str], complaint: str
) -> None:
    folder = _snapshot_with(tmp_path, "currency", lines)
    with connect(source_dsn) as conn:
        with pytest.raises(
            SnapshotFormatError, match=rf"currency\.jsonl\.gz .*{re.escape(complaint)}"
        ):
            load_snapshot(conn, folder)
        assert existing_source_tables(conn) == []


def test_a_folder_without_snapshot_files_is_refused(source_dsn: str, tmp_path: Path) -> None:
    with connect(source_dsn) as conn, pytest.raises(SnapshotFormatError, match="holds no"):
        load_snapshot(conn, tmp_path)


def test_loading_over_an_existing_source_is_refused_and_keeps_its_rows(
    seeded_source_dsn: str, snapshot_dir: Path
) -> None:
    with connect(seeded_source_dsn) as conn:
        before = conn.execute("SELECT count(*) FROM sales_order").fetchone()
        with pytest.raises(SchemaAlreadyExistsError):
            load_snapshot(conn, snapshot_dir)
    with connect(seeded_source_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM sales_order").fetchone() == before
