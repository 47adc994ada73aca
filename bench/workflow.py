"""The whole workflow against a plain COPY, side by side: `make bench-workflow`.

Builds (once, kept as ``totes_bench_workflow_x<N>``) a source of the client's real
snapshot replicated N times (default 20): each table's rows repeated with fresh
keys and foreign keys shifted consistently; without the snapshot, the generator at
scale N. Then, for each repetition (default 3), in this order:

1. the floor: one process streams each source table with binary ``COPY ... TO
   STDOUT`` into ``COPY ... FROM STDIN`` of a bare copy of the table (no key,
   constraint or index: the physical limit);
2. ``totes``'s workflow into an empty warehouse, from fresh local AWS state (a
   backfill), in the local AWS service with its Lambda workers;
3. an execution with no source change;
4. an execution after 1 % of the sales orders changed;
5. the floor again: the repetition's floor is the mean of the two, so that a machine
   whose speed drifts (a shared one does, by a third within a minute) moves the floor
   with the executions between them.

For each execution: its seconds, seconds per stage, handler seconds per function
(summed over invocations, the init phases of cold starts included and also shown
alone), the seconds in which at least one
handler ran (the handlers' critical path, from the workers' own start and end times),
the local runtime's overhead (execution minus that), each function's peak worker RSS,
and the AWS requests the functions made, by service (counted by the local service).
Medians (min-max) are printed last, with the ratios to the floor.

Usage::

    python bench/workflow.py [--scale 20] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import measure, requests_so_far
from psycopg import sql

from totes.db import connect, create_database, drop_database, table_columns, with_database
from totes.source.schema import create_source_tables, existing_source_tables
from totes.tables import SOURCE, SOURCE_TABLES
from totes.warehouse.schema import init_warehouse
from totes_local.runtime.assembly import find_project_root, synthesise
from totes_local.runtime.call_trail import CALL_TRAIL_VARIABLE
from totes_local.runtime.postgres import PostgresServer, find_or_start_server
from totes_local.runtime.service import stop_service
from totes_local.runtime.workflow import LocalWorkflow
from totes_local.source.generator import seed_synthetic
from totes_local.source.snapshot import load_snapshot

SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "totesys-2024-11-14"
_FOREIGN_KEYS = """
SELECT kcu.table_name, kcu.column_name, ccu.table_name
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)
WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'
"""


def replicate(dsn: str, copies: int) -> None:
    """Repeat every table's rows ``copies`` times in all: fresh keys, foreign keys shifted.

    Copy ``k`` of a row gets ``id + k * max(id)`` as its key and, for each foreign
    key, the same shift of the referenced table, so every copy references its own
    copy of the rows it referenced.
    """
    with connect(dsn) as conn:
        references: dict[str, dict[str, str]] = {}
        for table, column, target in conn.execute(_FOREIGN_KEYS).fetchall():
            references.setdefault(table, {})[column] = target
        present = [
            t
            for t in SOURCE_TABLES
            if conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()
            != (0,)
        ]
        largest = {
            table: int(
                conn.execute(
                    sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                        sql.Identifier(SOURCE[table].key), sql.Identifier(table)
                    )
                ).fetchone()[0]  # type: ignore[index]
            )
            for table in SOURCE_TABLES
        }
        conn.execute("SET session_replication_role = replica")
        for table in present:
            columns = table_columns(conn, table)
            shifted = {SOURCE[table].key: table, **references.get(table, {})}
            select = sql.SQL(", ").join(
                sql.SQL("{} + k * {}").format(sql.Identifier(c), sql.Literal(largest[shifted[c]]))
                if c in shifted
                else sql.Identifier(c)
                for c in columns
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {table} ({columns}) SELECT {select} FROM {table}, "
                    "generate_series(1, {last}) AS k"
                ).format(
                    table=sql.Identifier(table),
                    columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    select=select,
                    last=sql.Literal(copies - 1),
                )
            )
            conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({t}, {c}), max({i})) FROM {table}"
                ).format(
                    t=sql.Literal(table),
                    c=sql.Literal(SOURCE[table].key),
                    i=sql.Identifier(SOURCE[table].key),
                    table=sql.Identifier(table),
                )
            )
        conn.execute("SET session_replication_role = origin")


def bench_source(server: PostgresServer, scale: int) -> str:
    """The replicated source, built once and kept for later runs."""
    database = f"totes_bench_workflow_x{scale}"
    create_database(server.admin_dsn, database)
    dsn = with_database(server.admin_dsn, database)
    with connect(dsn) as conn:
        if existing_source_tables(conn):
            return dsn
        if SNAPSHOT.is_dir():
            print(f"building the source: the client snapshot x{scale} (kept) ...", flush=True)
            load_snapshot(conn, SNAPSHOT)
        else:
            print(f"building the source: the generator at scale {scale} (kept) ...", flush=True)
            seed_synthetic(conn, scale=scale, seed=0)
    if SNAPSHOT.is_dir():
        replicate(dsn, scale)
    return dsn


def source_rows(dsn: str) -> dict[str, int]:
    """Rows in each source table."""
    counts = {}
    with connect(dsn) as conn:
        for table in SOURCE_TABLES:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


#: Leaves the tables bare: every primary key, unique and check constraint dropped.
_DROP_CONSTRAINTS = """
DO $$ DECLARE c record; BEGIN
  FOR c IN SELECT conrelid::regclass AS rel, conname FROM pg_constraint
           WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'c', 'f') LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
  END LOOP;
END $$
"""


def floor_copy(server: PostgresServer, source_dsn: str) -> float:
    """Seconds for binary COPY out of every source table straight into bare copies of the
    tables: no key, constraint or index, the physical limit of moving the rows."""
    target_name = "totes_bench_floor"
    drop_database(server.admin_dsn, target_name)
    create_database(server.admin_dsn, target_name)
    target_dsn = with_database(server.admin_dsn, target_name)
    try:
        with connect(target_dsn) as conn:
            create_source_tables(conn)
            conn.execute(_DROP_CONSTRAINTS)
        started = time.perf_counter()
        with connect(source_dsn) as source, connect(target_dsn) as target:
            for table in SOURCE_TABLES:
                name = sql.Identifier(table)
                with (
                    source.cursor().copy(
                        sql.SQL("COPY {} TO STDOUT (FORMAT BINARY)").format(name)
                    ) as out,
                    target.cursor().copy(
                        sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)
                    ) as into,
                ):
                    for block in out:
                        into.write(block)
        return time.perf_counter() - started
    finally:
        drop_database(server.admin_dsn, target_name)


@contextmanager
def fresh_warehouse(server: PostgresServer, name: str) -> Iterator[str]:
    """An empty warehouse database, dropped afterwards."""
    drop_database(server.admin_dsn, name)
    create_database(server.admin_dsn, name)
    dsn = with_database(server.admin_dsn, name)
    with connect(dsn) as conn:
        init_warehouse(conn)
    try:
        yield dsn
    finally:
        drop_database(server.admin_dsn, name)


def change_orders(source_dsn: str, fraction: float) -> int:
    """Change ``fraction`` of the sales orders (a new version of each); how many."""
    with connect(source_dsn) as conn:
        changed = conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, "
            "last_updated = localtimestamp(3) WHERE sales_order_id %% %s = 0",
            (round(1 / fraction),),
        ).rowcount
    return int(changed)


def measured(workflow: LocalWorkflow, execute: Any) -> dict[str, Any]:
    """One execution's figures (:func:`common.measure`) and the requests its functions made,
    by service."""
    if workflow.service is None:  # pragma: no cover - entering the workflow starts it
        raise RuntimeError("the local AWS service did not start")
    endpoint = workflow.service.service.endpoint
    before = requests_so_far(endpoint)
    figures = measure(workflow, execute())
    by_service: dict[str, int] = {}
    for action, count in (requests_so_far(endpoint) - before).items():
        service = action.partition(":")[0]
        by_service[service] = by_service.get(service, 0) + count
    return figures | {"requests": by_service}


def _summary(values: Sequence[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=20, help="copies of the snapshot")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--json", action="store_true", help="one JSON line with every figure")
    args = parser.parse_args(argv)

    assembly = synthesise(find_project_root(), Path(".totes/cdk.out"))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="totes-bench-") as scratch:
        # The local service counts the functions' requests when it keeps a call trail.
        os.environ[CALL_TRAIL_VARIABLE] = str(Path(scratch) / "call-trail.jsonl")
        server = find_or_start_server(
            Path(scratch) / "pg", environment_variable="TOTES_BENCH_PG_DSN"
        )
        data_dir = Path(scratch) / "data"
        try:
            source_dsn = bench_source(server, args.scale)
            counts = source_rows(source_dsn)
            rows = sum(counts.values())
            # The 2024-11-14 snapshot has no payment file: its table stays empty.
            empty = [table for table, count in counts.items() if not count]
            print(
                f"source: {rows:,} rows in {len(SOURCE_TABLES)} tables"
                + (f" (empty: {', '.join(empty)})" if empty else ""),
                flush=True,
            )
            for repetition in range(1, args.repeat + 1):
                floor_before = floor_copy(server, source_dsn)
                warehouse = fresh_warehouse(server, f"totes_bench_warehouse_{repetition}")
                with (
                    warehouse as wh,
                    LocalWorkflow(
                        assembly, source_dsn=source_dsn, warehouse_dsn=wh, data_dir=data_dir
                    ) as workflow,
                ):
                    backfill = measured(workflow, workflow.execute)
                    idle = measured(workflow, workflow.execute)
                    changed = change_orders(source_dsn, 0.01)
                    after_change = measured(workflow, workflow.execute)
                floor_after = floor_copy(server, source_dsn)
                floor = (floor_before + floor_after) / 2
                run = {
                    "floor_s": floor,
                    "floors_s": [floor_before, floor_after],
                    "backfill": backfill,
                    "idle": idle,
                    "one_percent": after_change | {"orders_changed": changed},
                }
                runs.append(run)
                print(
                    f"run {repetition}: floor {floor:.2f} s ({floor_before:.2f} before, "
                    f"{floor_after:.2f} after), backfill "
                    f"{backfill['execution_s']:.2f} s (overhead {backfill['overhead_s']:.2f} s), "
                    f"idle {idle['execution_s']:.2f} s (overhead {idle['overhead_s']:.2f} s), "
                    f"1 % changed {after_change['execution_s']:.2f} s",
                    flush=True,
                )
        finally:
            stop_service(data_dir)
            server.stop()

    _print_figures(runs, rows)
    if args.json:
        print(json.dumps({"source_rows": rows, "runs": runs}, default=str))
    return 0


def _print_figures(runs: list[dict[str, Any]], rows: int) -> None:
    def series(*path: str) -> list[float]:
        values = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(float(value))
        return values

    print(f"\nmedian (min-max) of {len(runs)} runs, seconds; source {rows:,} rows")
    print(f"  floor (binary COPY to COPY)        {_summary(series('floor_s'))}")
    for kind in ("backfill", "idle", "one_percent"):
        print(f"  {kind:<12} execution             {_summary(series(kind, 'execution_s'))}")
        critical = _summary(series(kind, "handlers_critical_path_s"))
        print(f"  {'':<12} handlers' critical path {critical}")
        print(f"  {'':<12} local runtime overhead  {_summary(series(kind, 'overhead_s'))}")
    for stage in runs[0]["backfill"]["stages_s"]:
        print(f"  backfill stage {stage:<20} {_summary(series('backfill', 'stages_s', stage))}")
    for function in runs[0]["backfill"]["functions"]:
        handler = series("backfill", "functions", function, "handler_s")
        init = series("backfill", "functions", function, "init_s")
        cpu = series("backfill", "functions", function, "cpu_s")
        rss = series("backfill", "functions", function, "peak_rss_mb")
        print(
            f"  backfill {function:<10} handler s (sum) {_summary(handler)} "
            f"(init {statistics.median(init):.2f}, CPU {statistics.median(cpu):.2f}), "
            f"peak worker RSS MB {statistics.median(rss):.0f} (max {max(rss):.0f})"
        )
    for kind in ("backfill", "idle", "one_percent"):
        services = sorted({s for run in runs for s in run[kind]["requests"]})
        counts = ", ".join(
            f"{service} {statistics.median(r[kind]['requests'].get(service, 0) for r in runs):g}"
            for service in services
        )
        total = statistics.median(sum(r[kind]["requests"].values()) for r in runs)
        print(f"  {kind:<12} AWS requests          {total:7g} ({counts})")
    overhead_share = [r["backfill"]["overhead_s"] / r["backfill"]["execution_s"] for r in runs]
    print(f"  backfill overhead share            {_summary(overhead_share)}")
    # Last, each execution in floors: the goals read the same on a faster or slower machine.
    for kind in ("backfill", "idle", "one_percent"):
        ratios = [r[kind]["execution_s"] / r["floor_s"] for r in runs]
        print(f"  {kind + ' / floor':<34} {_summary(ratios)}")
    # What Lambda bills (every invocation's seconds) and what users wait for, in floors.
    summed = [
        sum(f["handler_s"] for f in r["backfill"]["functions"].values()) / r["floor_s"]
        for r in runs
    ]
    print(f"  {'backfill handler s (sum) / floor':<34} {_summary(summed)}")
    # Of them, the handlers' own work: waits for the local service and for a core it
    # shares do not count.
    cpu = [
        sum(f["cpu_s"] for f in r["backfill"]["functions"].values()) / r["floor_s"] for r in runs
    ]
    print(f"  {'backfill handler CPU s (sum) / floor':<34} {_summary(cpu)}")
    waited = [r["backfill"]["handlers_critical_path_s"] / r["floor_s"] for r in runs]
    print(f"  {'backfill critical path / floor':<34} {_summary(waited)}")


if __name__ == "__main__":
    sys.exit(main())
