"""Load: every gold file reaches the warehouse exactly once, whatever happens to the execution
(DESIGN.md sections 3, 5 and 7)."""

from __future__ import annotations

import io
import json
import threading
import time as clock
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from totes.db import connect
from totes.errors import (
    AuthenticationFailedError,
    DatabaseUnreachableError,
    GoldFileSchemaError,
    GoldFileUnreadableError,
    WarehouseSchemaMissingError,
)
from totes.findings import FindingKind
from totes.load import warehouse_sql
from totes.load.gold_files import list_gold_files
from totes.load.stage import LoadRequest, LoadSettings, load_target
from totes.names import (
    LOAD_LEDGER_TABLE,
    REJECTS_PREFIX,
    WAREHOUSE_DATABASE,
)
from totes.results import LoadResult
from totes.tables import FACT_TABLES, FACTS, GOLD_DIMENSIONS, WAREHOUSE
from totes.warehouse.star import STAR_SCHEMAS
from totes.zones.gold import gold_key, unsequenced_prefix
from totes.zones.state import committed_sequence, state_key
from totes_local.runtime.postgres import PostgresServer

from .pipeline_harness import load_counts

BUCKET = "totes-processed"
FACT = "fact_sales_order"
DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

# -- gold rows, shaped as transform writes them ------------------------------------------------

UPDATED = (date(2024, 11, 14), time(9, 26, 10, 123_000))
CREATED = (date(2024, 11, 13), time(17, 2, 0))


def _stamps(version: int = 0) -> dict[str, Any]:
    return {
        "created_date": CREATED[0],
        "created_time": CREATED[1],
        "last_updated_date": UPDATED[0] + timedelta(days=version),
        "last_updated_time": UPDATED[1],
    }


def staff(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "staff_id": n,
        "first_name": f"Zoë {n}",
        "last_name": "O'Keefe",
        "department_name": "Sales",
        "location": "Leds",
        "email_address": f"zoe.o'keefe.{n}@terrifictotes.com",
        **changes,
    }


def location(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "location_id": n,
        "address_line_1": f'{n} "Tote" Lane, Østergaard',
        "address_line_2": None if n % 2 else "",
        "district": None,
        "city": "Leeds",
        "postal_code": f"{n:05d}",
        "country": "United Kingdom",
        "phone": "1803 637401",
        **changes,
    }


def counterparty(n: int) -> dict[str, Any]:
    return {
        "counterparty_id": n,
        "counterparty_legal_name": f"Hartmann, Franecki and Ratke {n}",
        "counterparty_legal_address_line_1": "line\nbreak",
        "counterparty_legal_address_line_2": None,
        "counterparty_legal_district": "",
        "counterparty_legal_city": "Aliso Viejo",
        "counterparty_legal_postal_code": "99305-7380",
        "counterparty_legal_country": "San Marino",
        "counterparty_legal_phone_number": "9621 880720",
    }


def currency(n: int) -> dict[str, Any]:
    code, name = [("GBP", "British Pound"), ("USD", "US Dollar"), ("EUR", "Euro")][n - 1]
    return {"currency_id": n, "currency_code": code, "currency_name": name}


def design(n: int) -> dict[str, Any]:
    return {
        "design_id": n,
        "design_name": "Steel",
        "file_location": "/usr/share",
        "file_name": f"steel-{n}.json",
    }


def payment_type(n: int) -> dict[str, Any]:
    names = ["SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT"]
    return {"payment_type_id": n, "payment_type_name": names[n - 1]}


def transaction(n: int) -> dict[str, Any]:
    return {
        "transaction_id": n,
        "transaction_type": "SALE",
        "sales_order_id": n,
        "purchase_order_id": None,
    }


def sales_order(n: int, version: int = 0, **changes: Any) -> dict[str, Any]:
    return {
        "sales_order_id": n,
        **_stamps(version),
        "sales_staff_id": 1,
        "counterparty_id": 2,
        "units_sold": 1_000 * n,
        "unit_price": Decimal("2.50"),
        "currency_id": 1,
        "design_id": 3,
        "agreed_payment_date": date(2024, 12, 2),
        "agreed_delivery_date": date(2024, 11, 29),
        "agreed_delivery_location_id": 2,
        **changes,
    }


def purchase_order(n: int) -> dict[str, Any]:
    return {
        "purchase_order_id": n,
        **_stamps(),
        "staff_id": 2,
        "counterparty_id": 1,
        "item_code": "0ZMQ3O8",
        "item_quantity": 12,
        "item_unit_price": Decimal("0.10"),
        "currency_id": 3,
        "agreed_delivery_date": date(2025, 1, 6),
        "agreed_payment_date": date(2025, 2, 28),
        "agreed_delivery_location_id": 3,
    }


def payment(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "payment_id": n,
        **_stamps(),
        "transaction_id": n,
        "counterparty_id": 1,
        "payment_amount": Decimal("99999999.99"),
        "currency_id": 2,
        "payment_type_id": 1,
        "paid": n % 2 == 0,
        "payment_date": date(2024, 2, 29),
        **changes,
    }


DIMENSION_ROWS: dict[str, Callable[[int], dict[str, Any]]] = {
    "dim_staff": staff,
    "dim_location": location,
    "dim_currency": currency,
    "dim_design": design,
    "dim_counterparty": counterparty,
    "dim_payment_type": payment_type,
    "dim_transaction": transaction,
}
FACT_ROWS: dict[str, Callable[[int], dict[str, Any]]] = {
    "fact_sales_order": sales_order,
    "fact_purchase_order": purchase_order,
    "fact_payment": payment,
}


# -- the processed bucket and the warehouse --------------------------------------------------


@dataclass
class Warehouse:
    """The processed bucket (moto) and the warehouse (PostgreSQL) that load joins."""

    s3: Any
    dsn: str

    def put(
        self, target: str, run_id: str, rows: list[dict[str, Any]], name: str = "part-0"
    ) -> str:
        key = f"{unsequenced_prefix(target, run_id)}{name}.parquet"
        self.put_table(key, pa.Table.from_pylist(rows, schema=STAR_SCHEMAS[target]))
        return key

    def put_table(self, key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue())

    def load(self, target: str, run_id: str = "load-run", **settings: Any) -> LoadResult:
        # Files here are written a moment before they load; unless a test says otherwise,
        # let missing references be quarantined at once instead of waiting for them.
        settings.setdefault("reject_after", timedelta(0))
        return load_target(
            LoadRequest(target=target, run_id=run_id),
            LoadSettings(bucket=BUCKET, **settings),
            warehouse_dsn=lambda: self.dsn,
            s3=self.s3,
        )

    def load_dimensions(self, ids: tuple[int, ...] = (1, 2, 3)) -> None:
        for target, build in DIMENSION_ROWS.items():
            self.put(target, "run-0", [build(n) for n in ids])
            self.load(target, "run-0")

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The table's rows as the files hold them (no surrogate key), in natural order."""
        columns = STAR_SCHEMAS[table].names
        described = WAREHOUSE[table]
        order = ", ".join(described.version_key) if described.record_key else described.key
        with connect(self.dsn, row_factory=dict_row) as conn:
            return conn.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
            ).fetchall()

    def versions(self, table: str) -> dict[Any, int]:
        """Each row's xmin: the transaction that last wrote it."""
        key = WAREHOUSE[table].key
        with connect(self.dsn) as conn:
            rows = conn.execute(f"SELECT {key}, xmin::text::bigint FROM {table}").fetchall()
        return {row[0]: row[1] for row in rows}

    def count(self, table: str) -> int:
        with connect(self.dsn) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def ledger(self, table: str | None = None) -> list[dict[str, Any]]:
        with connect(self.dsn, row_factory=dict_row) as conn:
            rows = conn.execute(
                "SELECT file_key, warehouse_table, run_id, rows_in_file, rows_applied "
                f"FROM {LOAD_LEDGER_TABLE} ORDER BY file_key"
            ).fetchall()
        return [row for row in rows if table in (None, row["warehouse_table"])]

    def snapshot(self) -> dict[str, Any]:
        """Everything load may write: every table's rows and xmins, the ledger, the rejects."""
        tables = {table: (self.rows(table), self.versions(table)) for table in STAR_SCHEMAS}
        return {"tables": tables, "ledger": self.ledger(), "rejects": self.keys(REJECTS_PREFIX)}

    def keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def read(self, key: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        rows: list[dict[str, Any]] = pq.read_table(pa.BufferReader(body)).to_pylist()
        return rows


@pytest.fixture
def warehouse(s3: Any, warehouse_dsn: str) -> Warehouse:
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    return Warehouse(s3=s3, dsn=warehouse_dsn)


def _orphans(dsn: str) -> int:
    """Fact rows whose dimension or date row is missing (what the foreign keys forbid)."""
    total = 0
    with connect(dsn) as conn:
        for described in FACTS:
            fact = described.name
            pairs = [
                (column, (dimension, WAREHOUSE[dimension].key))
                for column, dimension in described.references.items()
            ] + [(column, ("dim_date", "date_id")) for column in described.date_columns]
            for column, (dimension, key) in pairs:
                row = conn.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {f} WHERE NOT EXISTS "
                        "(SELECT 1 FROM {d} WHERE {d}.{k} = {f}.{c})"
                    ).format(
                        f=sql.Identifier(fact),
                        d=sql.Identifier(dimension),
                        k=sql.Identifier(key),
                        c=sql.Identifier(column),
                    )
                ).fetchone()
                total += int(row[0]) if row else 0
    return total


# -- tests ------------------------------------------------------------------------------------


def test_loading_gold_files_fills_every_warehouse_table_with_identical_values(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a gold file for every dimension and every fact, holding awkward values
    files = {
        target: [build(n) for n in (1, 2, 3)]
        for target, build in {**DIMENSION_ROWS, **FACT_ROWS}.items()
    }
    keys = {target: warehouse.put(target, "exec-1", rows) for target, rows in files.items()}
    copied_as: dict[str, str] = {}
    real_statement = warehouse_sql.copy_rows_statement

    def recorded(target: str, columns: Any, *, binary: bool) -> Any:
        copied_as[target] = "binary" if binary else "csv"
        return real_statement(target, columns, binary=binary)

    monkeypatch.setattr(warehouse_sql, "copy_rows_statement", recorded)
    # When the dimensions and then the facts are loaded
    results = {target: warehouse.load(target, "exec-1") for target in files}
    # Then the facts without text went in as binary COPY, every other table as CSV
    assert copied_as == {
        target: "binary" if target in {"fact_sales_order", "fact_payment"} else "csv"
        for target in files
    }
    # Then every table holds exactly the file's rows: NULL vs '', Decimal, milliseconds, UTF-8
    for target, rows in files.items():
        assert warehouse.rows(target) == rows, target
        assert load_counts(results[target].payload()) == {
            "table": target,
            "run_id": "exec-1",
            "files": 1,
            "rows_loaded": 3,
            "rows_skipped": 0,
            "rows_rejected": 0,
            "files_waiting": 0,
            "has_more": False,
            "files_remaining": 0,
            "rows_replayed": 0,
            "findings": [],
        }
    # And the ledger records each file once, with the run that loaded it
    assert warehouse.ledger() == sorted(
        (
            {
                "file_key": key,
                "warehouse_table": target,
                "run_id": "exec-1",
                "rows_in_file": 3,
                "rows_applied": 3,
            }
            for target, key in keys.items()
        ),
        key=lambda row: row["file_key"],
    )
    # And every reference of every fact holds
    assert _orphans(warehouse.dsn) == 0
    assert {row["date_id"] for row in warehouse.rows("dim_date")} == {
        CREATED[0],
        UPDATED[0],
        date(2024, 12, 2),
        date(2024, 11, 29),
        date(2025, 1, 6),
        date(2025, 2, 28),
        date(2024, 2, 29),
    }


def test_a_connection_that_does_not_verify_the_warehouse_is_named(
    warehouse: Warehouse,
) -> None:
    # Given a warehouse DSN with sslmode=allow (a secret's explicit choice)
    warehouse.dsn = make_conninfo(warehouse.dsn, sslmode="allow")

    # When a dimension loads
    warehouse.put("dim_currency", "exec-1", [DIMENSION_ROWS["dim_currency"](1)])
    result = warehouse.load("dim_currency", "exec-1")

    # Then the load's findings (and so the run's summary) name it
    assert result.rows_loaded == 1
    assert [(f.kind, f.table, f.detail.split(":")[0]) for f in result.findings] == [
        (FindingKind.UNVERIFIED_TLS, WAREHOUSE_DATABASE, "sslmode=allow")
    ]


def _commit(warehouse: Warehouse, target: str, sequence: int, rows: list[dict[str, Any]]) -> str:
    """A gold file as transform commits it: keyed by the table's commit sequence, which its
    state counts, then published."""
    committed = committed_sequence(warehouse.s3, BUCKET, target) or 0
    _transform_committed(warehouse, target, max(committed, sequence))
    key = gold_key(target, sequence, f"2026-12-06T10:{sequence:02d}:00.000Z-exec", "ab12")
    warehouse.put_table(key, pa.Table.from_pylist(rows, schema=STAR_SCHEMAS[target]))
    return key


def _transform_committed(warehouse: Warehouse, target: str, sequence: int) -> None:
    """Transform's state of ``target`` as it is once its ``sequence``-th file is committed."""
    warehouse.s3.put_object(
        Bucket=BUCKET, Key=state_key(target), Body=json.dumps({"sequence": sequence}).encode()
    )


def test_a_load_lists_what_is_new_not_the_history_behind_it(warehouse: Warehouse) -> None:
    # Given dimensions, then 20 commits of fact files, each loaded as it arrives
    warehouse.load_dimensions()
    listed = []
    for sequence in range(1, 21):
        _commit(warehouse, "fact_sales_order", sequence, [sales_order(sequence)])
        listed.append(warehouse.load("fact_sales_order", f"exec-{sequence}").files_listed)
    # Then each load listed the one new file, not the files before it
    assert listed == [1] * 20
    # And an idle load lists nothing
    assert warehouse.load("fact_sales_order", "exec-idle").files_listed == 0
    assert len(warehouse.rows("fact_sales_order")) == 20


def test_a_load_lists_gold_files_only_when_transform_committed_one_it_has_not_loaded(
    warehouse: Warehouse,
) -> None:
    # Given dimensions, and transform's first fact file committed and loaded
    warehouse.load_dimensions()
    _commit(warehouse, "fact_sales_order", 1, [sales_order(1)])
    assert warehouse.load("fact_sales_order", "exec-1").files_listed == 1
    listings: list[str] = []
    warehouse.s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2",
        lambda params, **_: listings.append(params["Prefix"]),
    )

    # When a load finds transform's state at the file it loaded last
    warehouse.load("fact_sales_order", "exec-2")
    # Then it does not list the gold files
    assert "fact_sales_order/" not in listings

    # When transform has committed a second file but not published it yet
    _transform_committed(warehouse, "fact_sales_order", 2)
    early = warehouse.load("fact_sales_order", "exec-3")
    # Then the load lists, finds nothing new, and the next one lists again once it is there
    assert (listings.count("fact_sales_order/"), early.files_listed) == (1, 0)
    _commit(warehouse, "fact_sales_order", 2, [sales_order(2)])
    late = warehouse.load("fact_sales_order", "exec-4")
    assert (listings.count("fact_sales_order/"), late.files_listed, late.rows_loaded) == (2, 1, 1)
    assert sorted(row["sales_order_id"] for row in warehouse.rows("fact_sales_order")) == [1, 2]


def test_a_file_that_waits_and_one_published_late_are_still_listed_until_loaded(
    warehouse: Warehouse,
) -> None:
    # Given commit 1 loaded, commit 2 waiting for a design, commit 3 loaded, and commit 4
    # published after commit 5 (a run that crashed before publishing it, resumed later)
    warehouse.load_dimensions()
    wait = {"reject_after": timedelta(minutes=30)}
    _commit(warehouse, "fact_sales_order", 1, [sales_order(1)])
    _commit(warehouse, "fact_sales_order", 2, [sales_order(2, design_id=4)])
    _commit(warehouse, "fact_sales_order", 3, [sales_order(3)])
    _commit(warehouse, "fact_sales_order", 5, [sales_order(5)])
    first = warehouse.load("fact_sales_order", "exec-1", **wait)
    assert [o.deferred for o in first.file_outcomes] == [False, True, False, False]
    _commit(warehouse, "fact_sales_order", 4, [sales_order(4)])

    # When the design arrives and facts load again
    warehouse.put("dim_design", "run-1", [design(4)])
    warehouse.load("dim_design", "run-1")
    later = warehouse.load("fact_sales_order", "exec-2", **wait)

    # Then the waiting file and the late one are found (listing starts after commit 1)
    assert later.files_listed == 4
    assert sorted(row["sales_order_id"] for row in warehouse.rows("fact_sales_order")) == [
        1,
        2,
        3,
        4,
        5,
    ]
    # And from then on the listing starts after commit 5
    assert warehouse.load("fact_sales_order", "exec-3", **wait).files_listed == 0


def test_loading_the_same_file_again_changes_nothing(warehouse: Warehouse) -> None:
    # Given dimensions and a fact file already loaded
    warehouse.load_dimensions()
    warehouse.put("fact_sales_order", "exec-1", [sales_order(n) for n in (1, 2, 3)])
    warehouse.load("fact_sales_order", "exec-1")
    before = warehouse.snapshot()
    # When every table is loaded again, by the same run and by a later one
    again = [
        warehouse.load(target, run)
        for run in ("exec-1", "exec-2")
        for target in (*GOLD_DIMENSIONS, *FACT_TABLES)
    ]
    # Then no file is applied, no row is written (same xmin), and the ledger is unchanged
    assert {result.payload()["files"] for result in again} == {0}
    assert {result.rows_loaded for result in again} == {0}
    assert warehouse.snapshot() == before


def test_the_same_versions_in_another_file_insert_no_duplicate_facts(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged_as: list[tuple[str, bool]] = []
    real_statement = warehouse_sql.copy_stage_statement

    def recorded(target: str, *, binary: bool, keys_only: bool = False) -> Any:
        staged_as.append(("keys" if keys_only else "rows", binary))
        return real_statement(target, binary=binary, keys_only=keys_only)

    monkeypatch.setattr(warehouse_sql, "copy_stage_statement", recorded)
    # Given three sales order versions loaded from one file
    warehouse.load_dimensions()
    warehouse.put("fact_sales_order", "exec-1", [sales_order(n) for n in (1, 2, 3)])
    warehouse.load("fact_sales_order", "exec-1")
    xmins = warehouse.versions("fact_sales_order")
    # When another file repeats them (a re-emitted overlap), and a third mixes repeats with
    # a new version of order 2 and holds that new version twice
    warehouse.put("fact_sales_order", "exec-2", [sales_order(n) for n in (1, 2, 3)])
    repeat = warehouse.load("fact_sales_order", "exec-2")
    mixed_rows = [sales_order(1), sales_order(2, version=1, units_sold=7), sales_order(3)]
    warehouse.put("fact_sales_order", "exec-3", [*mixed_rows, mixed_rows[1]])
    mixed = warehouse.load("fact_sales_order", "exec-3")
    # Then the repeat inserts nothing and counts every row as skipped
    assert (repeat.rows_loaded, repeat.rows_skipped) == (0, 3)
    # And the mixed file inserts the one new version, once
    assert (mixed.rows_loaded, mixed.rows_skipped) == (1, 3)
    rows = warehouse.rows("fact_sales_order")
    assert [(row["sales_order_id"], row["last_updated_date"]) for row in rows] == [
        (1, UPDATED[0]),
        (2, UPDATED[0]),
        (2, UPDATED[0] + timedelta(days=1)),
        (3, UPDATED[0]),
    ]
    assert rows[2]["units_sold"] == 7
    # And the versions loaded first were never rewritten
    assert {k: v for k, v in warehouse.versions("fact_sales_order").items() if k != 2} == {
        k: v for k, v in xmins.items() if k != 2
    }
    assert [row["rows_applied"] for row in warehouse.ledger("fact_sales_order")] == [3, 0, 1]
    # And the keys of both later files, then the mixed file's rows, were staged in binary
    assert staged_as == [("keys", True), ("keys", True), ("rows", True)]


def test_a_changed_dimension_row_is_updated_and_unchanged_rows_are_not_rewritten(
    warehouse: Warehouse,
) -> None:
    # Given three staff loaded
    warehouse.put("dim_staff", "exec-1", [staff(n) for n in (1, 2, 3)])
    warehouse.load("dim_staff", "exec-1")
    before = warehouse.versions("dim_staff")
    # When a later file holds all three, one of them moved to Manchester, and a new one
    # whose row appears twice (the last one wins)
    warehouse.put(
        "dim_staff",
        "exec-2",
        [
            staff(1),
            staff(2, location="Manchester"),
            staff(3),
            staff(4, first_name="Ann"),
            staff(4),
        ],
    )
    result = warehouse.load("dim_staff", "exec-2")
    # Then the moved row is updated, the new one inserted, and the others not written at all
    assert warehouse.rows("dim_staff") == [
        staff(1),
        staff(2, location="Manchester"),
        staff(3),
        staff(4),
    ]
    after = warehouse.versions("dim_staff")
    assert after[1] == before[1]
    assert after[3] == before[3]
    assert after[2] != before[2]
    assert (result.rows_loaded, result.rows_skipped) == (2, 3)


def test_an_empty_dimension_takes_a_file_whole_and_a_key_it_holds_twice_once(
    warehouse: Warehouse,
) -> None:
    # Given an empty dim_staff, and a first file whose last row repeats a key with a change
    warehouse.put("dim_staff", "exec-1", [staff(1), staff(2), staff(2, location="Leeds")])
    # When it is loaded
    result = warehouse.load("dim_staff", "exec-1")
    # Then every key is there once, the last row of the repeated one winning
    assert warehouse.rows("dim_staff") == [staff(1), staff(2, location="Leeds")]
    assert (result.rows_loaded, result.rows_skipped) == (2, 1)
    # And a second file into the table, now not empty, is upserted as before
    warehouse.put("dim_staff", "exec-2", [staff(1, last_name="Moved"), staff(3)])
    second = warehouse.load("dim_staff", "exec-2")
    assert warehouse.rows("dim_staff") == [
        staff(1, last_name="Moved"),
        staff(2, location="Leeds"),
        staff(3),
    ]
    assert (second.rows_loaded, second.rows_skipped) == (2, 0)


@pytest.mark.parametrize(
    ("target", "step"),
    [
        ("fact_sales_order", "copy_rows"),
        ("fact_sales_order", "insert_facts"),
        ("dim_staff", "upsert_dimension"),
    ],
)
def test_a_crash_between_the_copy_and_the_commit_leaves_nothing_and_the_next_load_completes_it(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, target: str, step: str
) -> None:
    # Given dimensions in place and a new file whose load dies after its rows were written
    warehouse.load_dimensions()
    rows = [sales_order(n, agreed_payment_date=date(2031, 1, 1)) for n in (1, 2)]
    if step == "insert_facts":  # a version twice: the rows go through the stage
        rows = [*rows, rows[-1]]
    if target == "dim_staff":
        rows = [staff(1, last_name="Moved"), staff(9)]
    key = warehouse.put(target, "exec-1", rows)
    before = warehouse.snapshot()
    real_step = getattr(warehouse_sql, step)

    def crash(*args: Any, **kwargs: Any) -> int:
        real_step(*args, **kwargs)
        raise SystemExit("crash injected between the COPY and the commit")

    monkeypatch.setattr(warehouse_sql, step, crash)
    with pytest.raises(SystemExit, match="crash injected"):
        warehouse.load(target, "exec-1")
    # Then the warehouse and the ledger are exactly as before, but for the file's dates,
    # committed to dim_date before its load began (its retry adds the same ones)
    after = warehouse.snapshot()
    added = {row["date_id"] for row in warehouse.rows("dim_date")} - {
        row["date_id"] for row in before["tables"]["dim_date"][0]
    }
    assert added <= {value for row in rows for value in row.values() if type(value) is date}
    for snapshot in (before, after):
        del snapshot["tables"]["dim_date"]
    assert after == before
    # When the next execution loads the table
    monkeypatch.setattr(warehouse_sql, step, real_step)
    result = warehouse.load(target, "exec-2")
    # Then it applies the file, once
    assert result.rows_loaded == 2
    assert (key, "exec-2") in [(row["file_key"], row["run_id"]) for row in warehouse.ledger()]
    assert warehouse.load(target, "exec-3").payload()["files"] == 0


def test_files_an_earlier_failed_run_left_behind_are_loaded_in_key_order(
    warehouse: Warehouse,
) -> None:
    # Given files of run 1, whose load never happened, and newer files of run 2
    warehouse.load_dimensions()
    warehouse.put("dim_staff", "run-2024-11-14T09-00", [staff(1, location="Leeds")])
    warehouse.put("dim_staff", "run-2024-11-14T09-05", [staff(1, location="Manchester")])
    warehouse.put("fact_sales_order", "run-2024-11-14T09-00", [sales_order(1)])
    warehouse.put("fact_sales_order", "run-2024-11-14T09-05", [sales_order(2)])
    # When run 2 loads
    dims = warehouse.load("dim_staff", "run-2024-11-14T09-05")
    facts = warehouse.load("fact_sales_order", "run-2024-11-14T09-05")
    # Then it applies both runs' files, oldest first: the newer staff row wins
    assert [outcome.key for outcome in dims.file_outcomes] == [
        "dim_staff/run=run-2024-11-14T09-00/part-0.parquet",
        "dim_staff/run=run-2024-11-14T09-05/part-0.parquet",
    ]
    assert warehouse.rows("dim_staff")[0]["location"] == "Manchester"
    assert [row["sales_order_id"] for row in warehouse.rows("fact_sales_order")] == [1, 2]
    assert facts.payload()["files"] == 2


def test_facts_whose_dimension_row_is_missing_are_quarantined_and_the_rest_loaded(
    warehouse: Warehouse,
) -> None:
    # Given dimensions 1-3 and a fact file in which two rows reference rows that do not exist
    warehouse.load_dimensions()
    rows = [
        sales_order(1),
        sales_order(2, design_id=9),
        sales_order(3),
        sales_order(4, sales_staff_id=7, agreed_delivery_location_id=8),
    ]
    key = warehouse.put("fact_sales_order", "exec-1", rows)
    # When it is loaded
    result = warehouse.load("fact_sales_order", "exec-2")
    # Then the other rows are loaded and the file is recorded as applied
    assert [row["sales_order_id"] for row in warehouse.rows("fact_sales_order")] == [1, 3]
    assert load_counts(result.payload()) == {
        "table": "fact_sales_order",
        "run_id": "exec-2",
        "files": 1,
        "rows_loaded": 2,
        "rows_skipped": 0,
        "rows_rejected": 2,
        "files_waiting": 0,
        "has_more": False,
        "files_remaining": 0,
        "rows_replayed": 0,
        "findings": [
            {
                "kind": "rows_rejected",
                "table": "fact_sales_order",
                "stage": "load",
                "detail": "design_id not in dim_design (kept, and replayed when it arrives)",
                "count": 1,
                "examples": ["sales_order_id 2"],
                "where": [f"{REJECTS_PREFIX}/fact_sales_order/run=exec-1/part-0.load.parquet"],
            },
            {
                "kind": "rows_rejected",
                "table": "fact_sales_order",
                "stage": "load",
                "detail": "sales_staff_id not in dim_staff; agreed_delivery_location_id not in "
                "dim_location (kept, and replayed when it arrives)",
                "count": 1,
                "examples": ["sales_order_id 4"],
                "where": [f"{REJECTS_PREFIX}/fact_sales_order/run=exec-1/part-0.load.parquet"],
            },
        ],
    }
    assert [(row["file_key"], row["rows_applied"]) for row in warehouse.ledger(FACT)] == [(key, 2)]
    # And the two rows wait, unchanged, in the rejects zone with the reason
    rejects_key = f"{REJECTS_PREFIX}/fact_sales_order/run=exec-1/part-0.load.parquet"
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == [rejects_key]
    assert result.file_outcomes[0].rejects_key == rejects_key
    assert warehouse.read(rejects_key) == [
        {**rows[1], "reject_reason": "design_id 9 not in dim_design"},
        {
            **rows[3],
            "reject_reason": "sales_staff_id 7 not in dim_staff; "
            "agreed_delivery_location_id 8 not in dim_location",
        },
    ]
    assert _orphans(warehouse.dsn) == 0


def test_a_fresh_fact_file_waits_for_a_dimension_row_that_may_still_arrive(
    warehouse: Warehouse,
) -> None:
    # Given dimensions 1-3 and a new fact file whose row 2 references design 4, not loaded yet
    warehouse.load_dimensions()
    warehouse.put("fact_sales_order", "exec-1", [sales_order(1), sales_order(2, design_id=4)])
    # When it is loaded within the waiting time
    waiting = warehouse.load("fact_sales_order", "exec-2", reject_after=timedelta(minutes=30))
    # Then nothing of it is applied or quarantined, and it stays pending
    assert [outcome.deferred for outcome in waiting.file_outcomes] == [True]
    assert waiting.payload()["files"] == 0
    # And the row that waits is reported, with what it waits for
    (finding,) = waiting.findings
    assert (finding.kind, finding.count, finding.examples) == (
        "waiting_for_dimension",
        1,
        ["sales_order_id 2"],
    )
    assert finding.detail.startswith("design_id not in dim_design")
    assert warehouse.rows("fact_sales_order") == []
    assert warehouse.ledger(FACT) == []
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == []
    # When the design arrives (the next run's dimension load) and facts load again
    warehouse.put("dim_design", "run-1", [design(4)])
    warehouse.load("dim_design", "run-1")
    later = warehouse.load("fact_sales_order", "exec-3", reject_after=timedelta(minutes=30))
    # Then every row is applied, none rejected
    assert later.rows_loaded == 2
    assert later.rows_rejected == 0
    assert [row["sales_order_id"] for row in warehouse.rows("fact_sales_order")] == [1, 2]


def test_the_freshness_lag_counts_the_rows_that_went_in_and_not_those_rejected(
    warehouse: Warehouse,
) -> None:
    # Given facts loaded, then a file whose newest row references a design that does not exist
    warehouse.load_dimensions()
    warehouse.put("fact_sales_order", "exec-1", [sales_order(1), sales_order(2, version=1)])
    first = warehouse.load("fact_sales_order", "exec-1")
    warehouse.put(
        "fact_sales_order", "exec-2", [sales_order(3, version=2), sales_order(4, 5, design_id=9)]
    )
    # When it is loaded, and a run with nothing new follows
    second = warehouse.load("fact_sales_order", "exec-2")
    idle = warehouse.load("fact_sales_order", "exec-3")
    # Then the newest version is that of the newest row in the warehouse, run after run
    newest = datetime.combine(UPDATED[0], UPDATED[1])
    assert first.newest_last_updated == newest + timedelta(days=1)
    assert second.rows_rejected == 1
    assert second.newest_last_updated == idle.newest_last_updated == newest + timedelta(days=2)


def test_quarantined_facts_are_replayed_as_soon_as_their_dimension_rows_arrive(
    warehouse: Warehouse,
) -> None:
    # Given facts quarantined: one for a missing design, one for a design and a staff member
    warehouse.load_dimensions()
    rows = [
        sales_order(1),
        sales_order(2, design_id=9),
        sales_order(3, design_id=9, sales_staff_id=7),
    ]
    warehouse.put(FACT, "exec-1", rows)
    warehouse.load(FACT, "exec-1")
    [quarantine] = warehouse.keys(f"{REJECTS_PREFIX}/")
    kept = warehouse.read(quarantine)
    # When facts load again while nothing has arrived
    idle = warehouse.load(FACT, "exec-2")
    # Then nothing is replayed, the quarantine is left as it was, and it is still reported
    assert idle.rows_replayed == 0
    assert warehouse.read(quarantine) == kept
    assert [(f.kind, f.count, f.examples, f.where) for f in idle.findings] == [
        ("quarantined", 1, ["sales_order_id 2"], [quarantine]),
        ("quarantined", 1, ["sales_order_id 3"], [quarantine]),
    ]
    # When design 9 arrives and facts load again
    warehouse.put("dim_design", "run-3", [design(9)])
    warehouse.load("dim_design", "run-3")
    first = warehouse.load(FACT, "exec-3")
    # Then the order that waited only for the design goes in, and only the other stays
    assert [row["sales_order_id"] for row in warehouse.rows(FACT)] == [1, 2]
    assert first.payload()["rows_replayed"] == 1
    assert [(f.kind, f.count, f.where) for f in first.findings] == [
        ("rows_replayed", 1, [quarantine]),
        ("quarantined", 1, [quarantine]),
    ]
    assert warehouse.read(quarantine) == [
        {**rows[2], "reject_reason": "sales_staff_id 7 not in dim_staff"}
    ]
    # When the staff member arrives too
    warehouse.put("dim_staff", "run-4", [staff(7)])
    warehouse.load("dim_staff", "run-4")
    second = warehouse.load(FACT, "exec-4")
    # Then the last order goes in, the quarantine is empty, and every reference holds
    assert second.rows_replayed == 1
    assert [row["sales_order_id"] for row in warehouse.rows(FACT)] == [1, 2, 3]
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == []
    assert _orphans(warehouse.dsn) == 0
    # And the gold file is still loaded exactly once
    assert len(warehouse.ledger(FACT)) == 1


def test_an_unreadable_quarantine_object_is_reported_and_the_others_are_still_replayed(
    warehouse: Warehouse,
) -> None:
    # Given two quarantined orders, and one of the two quarantine objects damaged
    warehouse.load_dimensions()
    warehouse.put(FACT, "exec-1", [sales_order(1, design_id=9)])
    warehouse.put(FACT, "exec-2", [sales_order(2, design_id=9)])
    warehouse.load(FACT, "exec-3")
    damaged, intact = warehouse.keys(f"{REJECTS_PREFIX}/")
    warehouse.s3.put_object(Bucket=BUCKET, Key=damaged, Body=b"not parquet")
    # When the design arrives and facts load again
    warehouse.put("dim_design", "run-4", [design(9)])
    warehouse.load("dim_design", "run-4")
    result = warehouse.load(FACT, "exec-5")
    # Then the intact one is replayed, and the damaged one is reported, not a failure
    assert [row["sales_order_id"] for row in warehouse.rows(FACT)] == [2]
    assert result.rows_replayed == 1
    (problem,) = [f for f in result.findings if f.kind == "quarantined"]
    assert problem.where == [damaged]
    assert "cannot be replayed" in problem.detail
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == [damaged]
    assert intact not in warehouse.keys(f"{REJECTS_PREFIX}/")


def test_a_quarantined_version_the_warehouse_holds_by_now_leaves_the_quarantine(
    warehouse: Warehouse,
) -> None:
    # Given an order quarantined for a missing design, then the same version in a later
    # file, loaded once the design arrived (a re-ingest, say)
    warehouse.load_dimensions()
    warehouse.put(FACT, "exec-1", [sales_order(1, design_id=9)])
    warehouse.load(FACT, "exec-1")
    warehouse.put("dim_design", "run-2", [design(9)])
    warehouse.load("dim_design", "run-2")
    warehouse.put(FACT, "exec-2", [sales_order(1, design_id=9)], name="part-1")
    # When facts load: the new file first, then the replay
    result = warehouse.load(FACT, "exec-3")
    # Then the version is in once, and the quarantine is gone without a second copy
    assert [row["sales_order_id"] for row in warehouse.rows(FACT)] == [1]
    assert (result.rows_loaded, result.rows_replayed) == (1, 0)
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == []


def test_files_waiting_for_a_dimension_row_do_not_use_up_the_file_limit(
    warehouse: Warehouse,
) -> None:
    # Given two fresh fact files: the older waits for design 4, the newer is complete
    warehouse.load_dimensions()
    waiting_key = warehouse.put("fact_sales_order", "exec-1", [sales_order(1, design_id=4)])
    ready_key = warehouse.put("fact_sales_order", "exec-2", [sales_order(2)])

    # When load may apply one file
    result = warehouse.load(
        "fact_sales_order", "exec-3", reject_after=timedelta(minutes=30), max_files=1
    )

    # Then the complete file is applied past the waiting one, and nothing is left untried
    assert [outcome.key for outcome in result.applied] == [ready_key]
    assert [outcome.key for outcome in result.deferred] == [waiting_key]
    payload = result.payload()
    assert (payload["files_waiting"], payload["has_more"], payload["files_remaining"]) == (
        1,
        False,
        0,
    )
    assert [row["sales_order_id"] for row in warehouse.rows("fact_sales_order")] == [2]


def test_dim_date_gains_every_date_the_facts_reference_by_the_iso_convention(
    warehouse: Warehouse,
) -> None:
    # Given facts referencing dates across year ends, a leap day and every weekday
    warehouse.load_dimensions()
    days = [date(2023, 12, 25) + timedelta(days=n) for n in range(800)]
    warehouse.put(
        "fact_sales_order",
        "exec-1",
        [
            sales_order(n, agreed_payment_date=day, agreed_delivery_date=day)
            for n, day in enumerate(days, start=1)
        ],
    )
    # When they are loaded
    warehouse.load("fact_sales_order", "exec-1")
    # Then dim_date holds each date with ISO weekdays (1 = Monday) and unpadded English names
    by_day = {row["date_id"]: row for row in warehouse.rows("dim_date")}
    assert set(days) <= set(by_day)
    for day in days:
        assert by_day[day] == {
            "date_id": day,
            "year": day.year,
            "month": day.month,
            "day": day.day,
            "day_of_week": day.isoweekday(),
            "day_name": DAY_NAMES[day.weekday()],
            "month_name": MONTH_NAMES[day.month - 1],
            "quarter": (day.month - 1) // 3 + 1,
        }
    assert by_day[date(2024, 1, 1)]["day_of_week"] == 1
    assert by_day[date(2023, 12, 31)]["day_name"] == "Sunday"
    assert by_day[date(2024, 2, 29)]["month_name"] == "February"
    assert by_day[date(2024, 9, 30)]["quarter"] == 3


def _hold_first_copy_into(
    monkeypatch: pytest.MonkeyPatch, table: str
) -> tuple[threading.Event, threading.Event]:
    """Hold the first load that copies rows into ``table`` inside its transaction.

    Returns the event set once it is held, and the event that lets it go on.
    """
    inside, release = threading.Event(), threading.Event()
    real_copy = warehouse_sql.copy_rows

    def held(conn: Any, target: str, *args: Any, **kwargs: Any) -> int:
        inserted = real_copy(conn, target, *args, **kwargs)
        if target == table and not inside.is_set():
            inside.set()
            release.wait(timeout=30)
        return inserted

    monkeypatch.setattr(warehouse_sql, "copy_rows", held)
    return inside, release


def test_of_two_loaders_racing_on_one_file_exactly_one_applies_it(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a new fact file, and a first loader held inside its transaction after inserting
    warehouse.load_dimensions()
    warehouse.put("fact_sales_order", "exec-1", [sales_order(n) for n in (1, 2, 3)])
    inside, release = _hold_first_copy_into(monkeypatch, "fact_sales_order")
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(warehouse.load, "fact_sales_order", "exec-a")
        assert inside.wait(timeout=30)
        # When a second loader lists the file before the first commits, and waits for it
        second = pool.submit(warehouse.load, "fact_sales_order", "exec-b")
        _wait_for_a_blocked_session(warehouse.dsn)
        release.set()
        won, lost = first.result(timeout=30), second.result(timeout=30)
    # Then the first applies the file and the second finds it in the ledger and writes nothing
    assert (won.payload()["files"], won.rows_loaded) == (1, 3)
    assert load_counts(lost.payload()) == {
        "table": "fact_sales_order",
        "run_id": "exec-b",
        "files": 0,
        "rows_loaded": 0,
        "rows_skipped": 0,
        "rows_rejected": 0,
        "files_waiting": 0,
        "has_more": False,
        "files_remaining": 0,
        "rows_replayed": 0,
        "findings": [],
    }
    assert [outcome.applied_elsewhere for outcome in lost.file_outcomes] == [True]
    assert warehouse.count("fact_sales_order") == 3
    assert [row["run_id"] for row in warehouse.ledger(FACT)] == ["exec-a"]


def test_a_fact_load_does_not_wait_for_another_fact_load_that_added_the_same_new_date(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sales order and a payment on a date dim_date lacks, and the sales order's
    # load held inside its transaction after its rows went in
    warehouse.load_dimensions()
    new_day = date(2031, 3, 3)
    warehouse.put("fact_sales_order", "exec-1", [sales_order(1, agreed_payment_date=new_day)])
    warehouse.put("fact_payment", "exec-1", [payment(1, payment_date=new_day)])
    inside, release = _hold_first_copy_into(monkeypatch, "fact_sales_order")
    with ThreadPoolExecutor(max_workers=2) as pool:
        orders = pool.submit(warehouse.load, "fact_sales_order", "exec-1")
        assert inside.wait(timeout=30)
        try:
            # When the payment loads meanwhile
            payments = pool.submit(warehouse.load, "fact_payment", "exec-1")
            # Then it commits while the sales order's load still holds its transaction
            assert payments.result(timeout=10).rows_loaded == 1
        finally:
            release.set()
        assert orders.result(timeout=30).rows_loaded == 1
    assert new_day in {row["date_id"] for row in warehouse.rows("dim_date")}
    assert warehouse.count("fact_payment") == warehouse.count("fact_sales_order") == 1


def _wait_for_a_blocked_session(dsn: str) -> None:
    deadline = clock.monotonic() + 30
    with connect(dsn, autocommit=True) as conn:
        while clock.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return
            clock.sleep(0.02)
    raise AssertionError("the second loader never waited for the first")


def test_a_role_that_may_not_skip_triggers_loads_the_same_rows_through_the_foreign_keys(
    warehouse: Warehouse,
) -> None:
    # Given a loader role that is not a superuser (it may not set session_replication_role)
    role = f"totes_loader_{uuid.uuid4().hex[:8]}"
    with connect(warehouse.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
        conn.execute(
            sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        warehouse.load_dimensions()
        limited = Warehouse(s3=warehouse.s3, dsn=make_conninfo(warehouse.dsn, user=role))
        rows = [sales_order(1), sales_order(2, currency_id=9)]
        warehouse.put("fact_sales_order", "exec-1", rows)
        # When it loads facts
        result = limited.load("fact_sales_order", "exec-1")
        # Then the foreign-key triggers stay on, and the outcome is the same
        assert result.fk_triggers
        assert (result.rows_loaded, result.rows_rejected) == (1, 1)
        assert warehouse.rows("fact_sales_order") == [rows[0]]
    finally:
        with connect(warehouse.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_fact_loads_keep_the_foreign_key_triggers_when_told_to(warehouse: Warehouse) -> None:
    warehouse.load_dimensions()
    warehouse.put("fact_payment", "exec-1", [payment(1), payment(2, transaction_id=9)])
    result = warehouse.load("fact_payment", "exec-1", fk_triggers="always")
    assert result.fk_triggers
    assert (result.rows_loaded, result.rows_rejected) == (1, 1)
    assert warehouse.load("fact_purchase_order", "exec-1").fk_triggers is False


def test_a_file_that_does_not_fit_its_table_is_refused_by_name_and_stays_pending(
    warehouse: Warehouse,
) -> None:
    # Given a good file, then a file missing a column, then one that is not Parquet
    good = warehouse.put("dim_currency", "run-1", [currency(1)])
    bad = pa.Table.from_pylist([currency(2)], schema=STAR_SCHEMAS["dim_currency"])
    warehouse.put_table("dim_currency/run=run-2/part-0.parquet", bad.drop(["currency_name"]))
    # When the table is loaded
    with pytest.raises(GoldFileSchemaError, match=r"missing columns \['currency_name'\]"):
        warehouse.load("dim_currency", "run-2")
    # Then the good file is loaded and the bad one is not recorded
    assert [row["file_key"] for row in warehouse.ledger()] == [good]
    # And a file that is not Parquet at all is named too
    warehouse.s3.put_object(Bucket=BUCKET, Key="dim_currency/run=run-2/part-0.parquet", Body=b"{")
    with pytest.raises(GoldFileUnreadableError, match="not a readable Parquet file"):
        warehouse.load("dim_currency", "run-3")
    assert [row["file_key"] for row in warehouse.ledger()] == [good]


def test_required_values_missing_from_a_file_are_refused_by_name(warehouse: Warehouse) -> None:
    table = pa.table(
        {
            "currency_id": pa.array([1], pa.int64()),
            "currency_code": ["GBP"],
            "currency_name": pa.array([None], pa.string()),
        }
    )
    warehouse.put_table("dim_currency/run=run-1/part-0.parquet", table)
    with pytest.raises(GoldFileSchemaError, match="nulls in currency_name"):
        warehouse.load("dim_currency", "run-1")
    assert warehouse.ledger() == []


def test_listing_finds_every_gold_file_beyond_a_thousand_and_ignores_other_keys(
    warehouse: Warehouse,
) -> None:
    for n in range(1_005):
        warehouse.s3.put_object(
            Bucket=BUCKET, Key=f"dim_design/run=run-{n:04d}/part-0.parquet", Body=b""
        )
    for key in ("dim_design/_tmp/x.parquet", "dim_design/run=run-1/x.json", "dim_designs/a"):
        warehouse.s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    files = list_gold_files(warehouse.s3, BUCKET, "dim_design")
    assert len(files) == 1_005
    assert files[0].key == "dim_design/run=run-0000/part-0.parquet"
    assert files == sorted(files)


def test_an_unreachable_warehouse_fails_by_name_and_writes_nothing(warehouse: Warehouse) -> None:
    warehouse.put("fact_sales_order", "exec-1", [sales_order(1, design_id=9)])
    unreachable = Warehouse(s3=warehouse.s3, dsn="postgresql://etl@127.0.0.1:9/warehouse")
    with pytest.raises(DatabaseUnreachableError, match="nothing listens there"):
        unreachable.load("fact_sales_order", "exec-1")
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == []
    assert warehouse.ledger() == []


@pytest.mark.slow
def test_a_wrong_password_fails_by_name_and_writes_nothing(
    warehouse: Warehouse, password_server: PostgresServer
) -> None:
    warehouse.put("dim_staff", "exec-1", [staff(1)])
    dsn = make_conninfo(password_server.admin_dsn, user="ann", password="nope", dbname="totesys")
    with pytest.raises(AuthenticationFailedError):
        Warehouse(s3=warehouse.s3, dsn=dsn).load("dim_staff", "exec-1")
    assert warehouse.keys(f"{REJECTS_PREFIX}/") == []


def test_a_database_without_the_star_schema_is_named(
    warehouse: Warehouse, fresh_database: Callable[..., str]
) -> None:
    warehouse.put("dim_staff", "exec-1", [staff(1)])
    empty = Warehouse(s3=warehouse.s3, dsn=fresh_database("empty"))
    with pytest.raises(WarehouseSchemaMissingError, match="no table dim_staff, load_ledger"):
        empty.load("dim_staff", "exec-1")


def test_an_empty_table_folder_loads_nothing_and_facts_report_no_freshness(
    warehouse: Warehouse,
) -> None:
    results = [warehouse.load(target) for target in (*GOLD_DIMENSIONS, *FACT_TABLES)]
    assert {result.payload()["files"] for result in results} == {0}
    assert {result.freshness_lag_seconds for result in results} == {None}


def test_an_empty_gold_file_is_recorded_once_and_changes_nothing(warehouse: Warehouse) -> None:
    warehouse.load_dimensions()
    warehouse.put(FACT, "exec-1", [sales_order(1)])
    warehouse.load(FACT, "exec-1")
    before = warehouse.snapshot()
    for target in ("dim_staff", "fact_sales_order"):
        key = warehouse.put(target, "exec-9", [])
        assert warehouse.load(target, "exec-9").payload()["files"] == 1
        assert [row for row in warehouse.ledger(target) if row["file_key"] == key] == [
            {
                "file_key": key,
                "warehouse_table": target,
                "run_id": "exec-9",
                "rows_in_file": 0,
                "rows_applied": 0,
            }
        ]
    assert warehouse.snapshot()["tables"] == before["tables"]
