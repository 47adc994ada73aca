"""The ``totes`` command: seed and change a source, create the warehouse, run the product.

Every failure a user can cause (an unreachable host, a wrong password, a schema
already in place, a malformed snapshot) ends in one line on stderr that names
the problem, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from totes.db import (
    connect,
    create_database,
    describe,
    row_counts,
    with_database,
    without_password,
)
from totes.errors import TotesError
from totes.names import (
    LOAD_LEDGER_TABLE,
    SOURCE_DATABASE,
    WAREHOUSE_DATABASE,
)
from totes.tables import (
    SOURCE_TABLES,
    WAREHOUSE_TABLES,
)

if TYPE_CHECKING:
    from totes_local.runtime.workflow import ExecutionReport, LocalWorkflow
    from totes_local.stacks import StackOutputs

EXIT_FAILURE = 1

# soft_wrap: a message stays one line whatever the terminal width, so logs and CI keep it whole.
_console = Console(highlight=False, soft_wrap=True)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def _context_pair(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _progress(table: str, rows: int) -> None:
    _console.print(f"  {table:<16} {rows:>12,} rows")


def _seed(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with connect(args.dsn) as conn:
        if args.from_snapshot:
            # Imported here: the generator and snapshot modules are not needed by other commands.
            from totes_local.source.snapshot import load_snapshot  # noqa: PLC0415

            _console.print(f"Loading snapshot {args.from_snapshot} into {describe(args.dsn)}")
            result = load_snapshot(
                conn, args.from_snapshot, replace=args.replace, on_table=_progress
            )
            for table in result.missing_tables:
                _console.print(f"  {table:<16} not in the snapshot: left empty")
            total = sum(result.rows.values())
        else:
            from totes_local.source.generator import seed_synthetic  # noqa: PLC0415

            _console.print(
                f"Seeding {describe(args.dsn)} at scale {args.scale:g} with seed {args.seed}"
            )
            rows = seed_synthetic(
                conn, scale=args.scale, seed=args.seed, replace=args.replace, on_table=_progress
            )
            total = sum(rows.values())
    _console.print(f"Seeded {total:,} rows in {time.perf_counter() - started:.1f} s")
    return 0


def _mutate(args: argparse.Namespace) -> int:
    from totes_local.source.mutate import mutate  # noqa: PLC0415

    with connect(args.dsn) as conn:
        report = mutate(conn, seed=args.seed, changes=args.changes)
    for kind, count in sorted(report.kinds.items()):
        _console.print(f"  {kind:<22} {count:>6,}")
    _console.print(f"Applied {sum(report.kinds.values()):,} changes to {describe(args.dsn)}")
    return 0


def _warehouse_init(args: argparse.Namespace) -> int:
    from totes.warehouse.schema import init_warehouse  # noqa: PLC0415

    with connect(args.dsn) as conn:
        created = init_warehouse(conn)
    if created:
        _console.print(f"Created {len(created)} warehouse tables in {describe(args.dsn)}")
    else:
        _console.print(f"Warehouse in {describe(args.dsn)} is up to date: nothing to create")
    return 0


def _counts_table(title: str, counts: dict[str, int], tables: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name in tables:
        table.add_row(name, f"{counts[name]:,}" if name in counts else "(missing)")
    return table


def _counts(args: argparse.Namespace) -> int:
    with connect(args.dsn) as conn:
        counts = row_counts(conn, (*SOURCE_TABLES, *WAREHOUSE_TABLES, LOAD_LEDGER_TABLE))
    present = [name for name in (*SOURCE_TABLES, *WAREHOUSE_TABLES) if name in counts]
    _console.print(_counts_table(describe(args.dsn), counts, present or list(SOURCE_TABLES)))
    return 0


def _another_execution(runs: int | None, executed: int, last: ExecutionReport | None) -> bool:
    """Whether ``totes run`` starts another execution.

    ``runs`` None: until caught up (or one fails); 0: until interrupted; N: N of them.
    """
    if runs is None:
        return last is None or (last.succeeded and not last.caught_up)
    return runs == 0 or executed < runs


def _moved_anything(report: ExecutionReport) -> bool:
    return any(rows for counts in report.tables().values() for rows in counts.values())


def _executions(
    args: argparse.Namespace, console: Console, workflow: LocalWorkflow
) -> tuple[int, int, ExecutionReport | None, bool]:
    """Run executions as ``--runs`` says, printing each.

    Returns how many ran, how many failed, the last one, and whether they stalled:
    an execution moved nothing although work remains.
    """
    import json  # noqa: PLC0415

    from totes_local.runtime.console import (  # noqa: PLC0415
        ProgressPrinter,
        print_attention,
        print_notification,
        print_outcome,
        rows_table,
        stages_table,
    )

    executed = failed = 0
    last: ExecutionReport | None = None
    next_start = time.monotonic()
    while _another_execution(args.runs, executed, last):
        if executed and args.every:
            time.sleep(max(0.0, next_start - time.monotonic()))
        next_start = time.monotonic() + (args.every or 0.0)
        executed += 1
        of_runs = f"/{args.runs}" if args.runs else ""
        console.print(f"\n[bold]Execution {executed}{of_runs}[/bold]")
        last = report = workflow.execute(on_progress=ProgressPrinter(console))
        if args.json:
            print(json.dumps(report.to_json()), flush=True)
        console.print(rows_table(report))
        console.print(stages_table(report))
        print_attention(console, report, workflow.processed_bucket)
        print_outcome(console, report)
        for notification in workflow.notifications():
            print_notification(console, notification)
        if args.graph:
            args.graph.parent.mkdir(parents=True, exist_ok=True)
            args.graph.write_text(report.markdown(), encoding="utf-8")
            console.print(f"  execution graph: {args.graph}")
        failed += not report.succeeded
        if report.succeeded and not report.caught_up and not _moved_anything(report):
            return executed, failed, last, True
    return executed, failed, last, False


def _run(args: argparse.Namespace) -> int:  # noqa: PLR0915 (one linear story)
    from totes.source.schema import existing_source_tables  # noqa: PLC0415
    from totes.warehouse.schema import init_warehouse  # noqa: PLC0415
    from totes_local.runtime.assembly import (  # noqa: PLC0415
        CloudAssembly,
        find_project_root,
        is_current,
        synthesise,
    )
    from totes_local.runtime.console import human_duration, print_service  # noqa: PLC0415
    from totes_local.runtime.postgres import start_embedded  # noqa: PLC0415
    from totes_local.runtime.workflow import LocalWorkflow  # noqa: PLC0415
    from totes_local.source.generator import seed_synthetic  # noqa: PLC0415

    # With --json, stdout carries the executions' JSON lines and nothing else.
    console = Console(stderr=True, highlight=False, soft_wrap=True) if args.json else _console

    def seeded(table: str, rows: int) -> None:
        console.print(f"  {table:<16} {rows:>12,} rows")

    server = None
    data_dir = args.data_dir.resolve()
    source_dsn, warehouse_dsn = args.source_dsn, args.warehouse_dsn
    if not (source_dsn and warehouse_dsn):
        server = start_embedded(data_dir / "postgres", keep_running=True)
        console.print(f"Using {server.describe()} (data in {data_dir})")
        for name in (SOURCE_DATABASE, WAREHOUSE_DATABASE):
            create_database(server.admin_dsn, name)
        source_dsn = source_dsn or with_database(server.admin_dsn, SOURCE_DATABASE)
        warehouse_dsn = warehouse_dsn or with_database(server.admin_dsn, WAREHOUSE_DATABASE)
    with connect(source_dsn) as conn:
        if not existing_source_tables(conn) and not args.source_dsn:
            console.print(f"Seeding an empty source at scale {args.scale:g}")
            seed_synthetic(conn, scale=args.scale, seed=args.seed, on_table=seeded)
        source_counts = row_counts(conn, SOURCE_TABLES)
    with connect(warehouse_dsn) as conn:
        init_warehouse(conn)
    console.print(_counts_table(f"source {describe(source_dsn)}", source_counts, SOURCE_TABLES))

    started = time.perf_counter()
    if args.cdk_out:
        assembly = CloudAssembly.read(args.cdk_out)
        console.print(f"Cloud assembly: {args.cdk_out} (given)")
    else:
        project = find_project_root()
        outdir = data_dir / "cdk.out"
        context = dict(args.context)
        reused = is_current(project, outdir, context=context)
        if not reused:
            console.print(f"Synthesising the CDK app ({project / 'app.py'}) ...")
        assembly = synthesise(project, outdir, context=context)
        how = "unchanged since the last run" if reused else "synthesised"
        console.print(f"Cloud assembly: {outdir} ({how}, {time.perf_counter() - started:.1f} s)")
    with LocalWorkflow(
        assembly,
        source_dsn=source_dsn,
        warehouse_dsn=warehouse_dsn,
        data_dir=data_dir,
        fresh=args.fresh,
    ) as workflow:
        log_path = workflow.log_path
        print_service(console, workflow)
        console.print(
            f"State machine {workflow.platform.state_machine.name} "
            f"({workflow.platform.state_machine.type}) from stack {assembly.stack_name}"
        )
        executed, failed, last, stalled = _executions(args, console, workflow)
    if last is not None and args.runs is None:
        if last.caught_up:
            console.print(
                f"\n[green]Caught up[/green] with the source after {executed} "
                f"{'execution' if executed == 1 else 'executions'} in "
                f"{human_duration(time.perf_counter() - started)}"
            )
        elif last.succeeded:
            console.print(f"\n[yellow]Not caught up[/yellow] after {executed} executions")
    with connect(warehouse_dsn) as conn:
        warehouse_counts = row_counts(conn, (*WAREHOUSE_TABLES, LOAD_LEDGER_TABLE))
    console.print(
        _counts_table(f"warehouse {describe(warehouse_dsn)}", warehouse_counts, WAREHOUSE_TABLES)
    )
    console.print(f"Handlers' JSON logs and metrics: {log_path}")
    shown = without_password(warehouse_dsn)
    left_out = " (its password left out)" if conninfo_to_dict(warehouse_dsn).get("password") else ""
    console.print(f"Open the warehouse with: psql '{shown}'{left_out}")
    kept = (
        "the local AWS service and the embedded PostgreSQL keep"
        if server
        else ("the local AWS service keeps")
    )
    console.print(f"State is kept: {kept} running; `totes stop` stops them.")
    if stalled:
        console.print(
            "[red]Stopped: the last execution moved nothing, yet work remains[/red] "
            "(what remains is listed above)"
        )
    if failed:
        console.print(f"[red]{failed} of {executed} executions failed[/red]")
    return EXIT_FAILURE if failed or stalled else 0


def _stop(args: argparse.Namespace) -> int:
    from totes_local.runtime.postgres import stop_embedded  # noqa: PLC0415
    from totes_local.runtime.service import stop_service  # noqa: PLC0415

    data_dir = args.data_dir.resolve()
    stopped = stop_service(data_dir)
    if stopped is not None:
        where = stopped.endpoint if stopped.port else "not answering yet"
        _console.print(
            f"Stopped the local AWS service of {data_dir} (pid {stopped.pid}, "
            f"{where}) and its Lambda workers; its state is gone"
        )
    else:
        _console.print(f"No local AWS service runs for {data_dir}")
    if stop_embedded(data_dir / "postgres"):
        _console.print(f"Stopped the embedded PostgreSQL of {data_dir} (its data is kept)")
    else:
        _console.print(f"No embedded PostgreSQL runs for {data_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from totes_local.runtime.postgres import embedded_status  # noqa: PLC0415
    from totes_local.runtime.service import find_service, unanswering_service  # noqa: PLC0415

    data_dir = args.data_dir.resolve()
    _console.print(f"Data folder: {data_dir}")
    service = find_service(data_dir)
    silent = unanswering_service(data_dir) if service is None else None
    if silent is not None:
        _console.print(
            f"  local AWS service: running (pid {silent or 'not yet known'}) but not answering: "
            "starting, or hung; `totes stop` stops it"
        )
    elif service is None:
        _console.print("  local AWS service: not running")
    else:
        workers = service.worker_pids()
        _console.print(
            f"  local AWS service: running at {service.endpoint} (pid {service.pid}, moto "
            f"{service.moto_version}, since {service.started}), {len(workers)} Lambda workers"
        )
    postgres = embedded_status(data_dir / "postgres")
    _console.print(
        f"  embedded PostgreSQL: {postgres}" if postgres else "  embedded PostgreSQL: not running"
    )
    return 0


def _stack(args: argparse.Namespace) -> StackOutputs:
    """The deployment a reading command is about: ``--stack`` on AWS, else the local one."""
    from totes_local.stacks import deployed_stack, local_stack  # noqa: PLC0415

    if args.stack:
        return deployed_stack(args.stack, region=args.region)
    return local_stack(args.data_dir.resolve())


def _rejects(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from totes_local.rejects import quarantined_rows  # noqa: PLC0415

    stack = _stack(args)
    bucket = stack.output("ProcessedBucketName")
    rows = quarantined_rows(stack.client("s3"), bucket, table=args.table, run_id=args.run)
    if args.json:
        count = 0
        for row in rows:
            print(json.dumps(row.as_json()), flush=True)
            count += 1
        print(f"{count} quarantined rows in s3://{bucket}/", file=sys.stderr)
        return 0
    table = Table(title=f"quarantined rows in s3://{bucket}/ ({stack.name})", title_justify="left")
    for column in ("table", "stage", "run", "source row", "reason"):
        table.add_column(column, overflow="fold")
    listed = list(rows)
    for row in listed:
        # Reasons quote source values, which may look like markup.
        table.add_row(row.table, row.stage, row.run_id, escape(row.source_key), escape(row.reason))
    if listed:
        _console.print(table)
        kept = sorted({row.object_key for row in listed})
        objects = "object" if len(kept) == 1 else "objects"
        _console.print(f"{len(listed)} rows, kept in {len(kept)} {objects}: " + ", ".join(kept))
    else:
        _console.print(f"No quarantined rows in s3://{bucket}/ ({stack.name})")
    return 0


def _json_value(value: object) -> object:
    """A query result's value as JSON: numbers as they are, decimals, dates and times as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _lake_tables(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from totes_local.lake import lake_tables  # noqa: PLC0415

    stack = _stack(args)
    tables = lake_tables(stack)
    if args.json:
        for found in tables:
            print(json.dumps(found.as_json()), flush=True)
        return 0
    database = stack.output("LakeDatabaseName")
    listing = Table(title=f"Iceberg tables in Glue database {database} ({stack.name})")
    for column in ("table", "rows", "files", "partitioned by", "partitions", "snapshots"):
        listing.add_column(column, justify="left" if column == "table" else "right")
    listing.add_column("last commit (UTC), run", overflow="fold")
    for found in tables:
        last = found.snapshots[-1] if found.snapshots else None
        listing.add_row(
            found.name,
            f"{found.rows:,}",
            f"{found.files:,}",
            ", ".join(found.partition_keys) or "(current rows)",
            f"{found.partitions:,}" if found.partition_keys else "",
            f"{len(found.snapshots):,}",
            f"{last.committed_at:%Y-%m-%d %H:%M:%S}, {last.run_id or last.operation}"
            if last
            else "",
        )
    _console.print(listing)
    return 0


def _lake_query(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from totes_local.lake import query  # noqa: PLC0415

    result = query(_stack(args), args.sql, as_of=args.as_of)
    if args.json:
        for row in result.to_pylist():
            print(json.dumps({key: _json_value(value) for key, value in row.items()}), flush=True)
        return 0
    listing = Table(title=f"{result.num_rows:,} rows")
    for field in result.schema:
        listing.add_column(f"{field.name}\n{field.type}", justify="right")
    for row in result.to_pylist():
        listing.add_row(
            *("NULL" if value is None else escape(str(value)) for value in row.values())
        )
    _console.print(listing)
    return 0


def _ui(args: argparse.Namespace) -> int:
    # Imported here: the console's server and pages cost `totes run` nothing.
    from totes_local.runtime.assembly import ProjectNotFoundError, find_project_root  # noqa: PLC0415
    from totes_local.stacks import local_stack  # noqa: PLC0415
    from totes_local.ui.server import ConsoleServer  # noqa: PLC0415

    stack = local_stack(args.data_dir.resolve())
    try:
        project: Path | None = find_project_root()
    except ProjectNotFoundError:
        project = None
    try:
        server = ConsoleServer(stack, port=args.port, project=project).start()
    except OSError as exc:
        raise TotesError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}") from exc
    _console.print(f"totes ui: {stack.name} at [bold]{server.url}[/bold] (Ctrl+C stops it)")
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="a stack deployed to AWS (read with your AWS credentials); default: the local "
        "deployment that `totes run` used last",
    )
    parser.add_argument("--region", help="the deployed stack's region (default: your AWS config)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".totes"), help="the local data folder, as for run"
    )


def _add_reading_commands(commands: Any) -> None:
    """``totes rejects`` and ``totes lake``: what a deployment keeps, read back."""
    rejects = commands.add_parser(
        "rejects",
        help="list the quarantined rows: each with its reason, source row and run",
        description="List the rows a stage kept aside, with the reason, the source row's "
        "version and the run. Rows transform could not shape wait for a fixed source row; "
        "fact rows load held back for a missing dimension row are replayed automatically "
        "once it arrives (and then leave this list).",
    )
    rejects.add_argument("--table", help="only this warehouse table (e.g. fact_sales_order)")
    rejects.add_argument("--run", metavar="RUN_ID", help="only rows of this run")
    rejects.add_argument("--json", action="store_true", help="one JSON object per row on stdout")
    _add_stack_options(rejects)
    rejects.set_defaults(handler=_rejects)

    lake = commands.add_parser(
        "lake", help="the lakehouse: its tables, and SQL over them (DuckDB here, Athena on AWS)"
    )
    lake_commands = lake.add_subparsers(dest="lake_command", required=True, metavar="COMMAND")
    tables = lake_commands.add_parser(
        "tables",
        help="the lake's Iceberg tables: rows, files, partitions and snapshots (--json: "
        "columns and every snapshot, with the run that made it)",
    )
    tables.add_argument("--json", action="store_true", help="one JSON object per table")
    _add_stack_options(tables)
    tables.set_defaults(handler=_lake_tables)
    lake_query = lake_commands.add_parser(
        "query",
        help="run SQL over the lake",
        description="Run SQL over the lake's Iceberg tables: with DuckDB over pyiceberg scans "
        "of the local service's tables, or with Athena (--stack) in the stack's workgroup. "
        "Facts hold every version, dimensions their current rows; times of day are text "
        "(HH:MM:SS.mmm), as Athena has no TIME column type.",
    )
    lake_query.add_argument("sql", help='the statement, e.g. "SELECT count(*) FROM fact_payment"')
    lake_query.add_argument(
        "--as-of",
        metavar="TIME|RUN_ID",
        help="read every table as it was at a time (ISO 8601, UTC unless it says) or when a "
        "run last committed to the lake (its run id, as `totes run` prints it)",
    )
    lake_query.add_argument("--json", action="store_true", help="one JSON object per row")
    _add_stack_options(lake_query)
    lake_query.set_defaults(handler=_lake_query)


def build_parser() -> argparse.ArgumentParser:
    """The ``totes`` argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="totes",
        description="Move the totesys operational database into a star-schema warehouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seed = commands.add_parser("seed", help="create the totesys schema and fill it")
    seed.add_argument("--dsn", required=True, help="the source database (libpq DSN or URI)")
    seed.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        help="1 = the client's real volumes (default), 0.01 small, 100 large",
    )
    seed.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows)")
    seed.add_argument(
        "--from-snapshot",
        type=Path,
        metavar="DIR",
        help="load a folder of <table>.jsonl.gz files instead of generating data",
    )
    seed.add_argument(
        "--replace",
        action="store_true",
        help="drop an existing totesys schema first (its data is lost)",
    )
    seed.set_defaults(handler=_seed)

    mutate = commands.add_parser("mutate", help="apply realistic changes to a seeded source")
    mutate.add_argument("--dsn", required=True, help="the source database")
    mutate.add_argument("--seed", type=int, default=0, help="chooses the changes")
    mutate.add_argument("--changes", type=_non_negative_int, default=100, help="how many")
    mutate.set_defaults(handler=_mutate)

    warehouse = commands.add_parser("warehouse", help="manage the warehouse schema")
    warehouse_commands = warehouse.add_subparsers(dest="warehouse_command", required=True)
    init = warehouse_commands.add_parser("init", help="create the star schema (idempotent)")
    init.add_argument("--dsn", required=True, help="the warehouse database")
    init.set_defaults(handler=_warehouse_init)

    counts = commands.add_parser("counts", help="row counts of the totesys and warehouse tables")
    counts.add_argument("--dsn", required=True, help="a source or warehouse database")
    counts.set_defaults(handler=_counts)

    run = commands.add_parser("run", help="run the product on this machine")
    run.add_argument("--source-dsn", help="an existing totesys source (no seeding)")
    run.add_argument("--warehouse-dsn", help="an existing warehouse database")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".totes"),
        help="where the embedded PostgreSQL, the synthesised app (cdk.out) and the handlers' "
        "logs (logs/pipeline.jsonl) live (default .totes)",
    )
    run.add_argument("--scale", type=_positive_float, default=1.0, help="scale of a new source")
    run.add_argument("--seed", type=int, default=0, help="random seed of a new source")
    run.add_argument(
        "--runs",
        type=_non_negative_int,
        metavar="N",
        help="executions to run, one after the other (default: until the warehouse has "
        "caught up with the source; 0 = until interrupted)",
    )
    run.add_argument(
        "--every",
        type=_positive_float,
        metavar="SECONDS",
        help="start an execution every SECONDS, like the schedule (default: back to back)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per execution on stdout as it ends (progress goes to stderr)",
    )
    run.add_argument(
        "--graph",
        type=Path,
        metavar="FILE",
        help="write the state machine as a Mermaid flowchart in Markdown, coloured by the "
        "outcome of each state in the last execution",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="discard the local AWS state of this source and warehouse first (buckets, "
        "watermarks, history); the warehouse is kept and stays exact",
    )
    run.add_argument(
        "-c",
        "--context",
        type=_context_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a CDK context value for the synthesised app, as `cdk synth -c` takes it, e.g. "
        "-c ingest_max_rows=100000 (repeatable; ignored with --cdk-out)",
    )
    run.add_argument(
        "--cdk-out",
        type=Path,
        metavar="DIR",
        help="run the state machine of this synthesised cloud assembly instead of "
        "synthesising app.py (default: synthesised into DATA_DIR/cdk.out, reused while unchanged)",
    )
    run.set_defaults(handler=_run)

    _add_reading_commands(commands)

    ui = commands.add_parser(
        "ui",
        help="a web console of the local deployment: executions, their graphs, health, sales",
        description="Serve a web console on 127.0.0.1 (never another interface): the "
        "executions of the local deployment, each one's graph and history, the pipeline's "
        "health and the sales questions answered from the lake. Every asset is served by "
        "the console itself.",
    )
    ui.add_argument("--port", type=_non_negative_int, default=8321, help="default 8321; 0: any")
    ui.add_argument("--data-dir", type=Path, default=Path(".totes"), help="as given to run")
    ui.set_defaults(handler=_ui)

    stop = commands.add_parser(
        "stop", help="stop the local AWS service and the embedded PostgreSQL that `run` started"
    )
    stop.add_argument("--data-dir", type=Path, default=Path(".totes"), help="as given to run")
    stop.set_defaults(handler=_stop)

    status = commands.add_parser("status", help="what runs where: PostgreSQL, the local service")
    status.add_argument("--data-dir", type=Path, default=Path(".totes"), help="as given to run")
    status.set_defaults(handler=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``totes`` console script."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except TotesError as exc:
        sys.stdout.flush()
        print(f"totes: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("totes: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
