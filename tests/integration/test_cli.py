"""What a user sees from `totes` against real servers: results, or one clear line of error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from totes.db import connect, with_database
from totes_local.cli import EXIT_FAILURE, main
from totes_local.runtime.postgres import PostgresServer

USAGE_ERROR = 2


def _only_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {lines}"
    return lines[0]


def _sales_orders(dsn: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM sales_order").fetchone()
    assert row is not None
    return int(row[0])


def test_seed_fills_an_empty_database_and_reports_each_table(
    source_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["seed", "--dsn", source_dsn, "--scale", "0.01", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 0
    assert "sales_order" in out
    assert "Seeded 507 rows" in out
    assert _sales_orders(source_dsn) == 112


def test_seed_refuses_a_database_that_already_holds_totesys_and_keeps_its_data(
    seeded_source_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(seeded_source_dsn) as conn:
        conn.execute("DELETE FROM payment WHERE payment_id = 1")
    status = main(["seed", "--dsn", seeded_source_dsn, "--scale", "0.02"])
    error = _only_line(capsys.readouterr().err)
    assert status == EXIT_FAILURE
    assert error.startswith("totes: error: database already holds a totesys schema")
    assert "--replace" in error
    with connect(seeded_source_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM payment WHERE payment_id = 1").fetchone() == (0,)
    assert _sales_orders(seeded_source_dsn) == 112


def test_seed_with_replace_drops_the_old_source_and_seeds_anew(seeded_source_dsn: str) -> None:
    status = main(["seed", "--dsn", seeded_source_dsn, "--scale", "0.02", "--replace"])
    assert status == 0
    assert _sales_orders(seeded_source_dsn) == 224


def test_seed_against_an_unreachable_host_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["seed", "--dsn", "postgresql://postgres@127.0.0.1:9/totesys"])
    error = _only_line(capsys.readouterr().err)
    assert status == EXIT_FAILURE
    assert error == (
        "totes: error: cannot reach PostgreSQL at postgres@127.0.0.1:9/totesys: "
        "nothing listens there"
    )


def test_seed_against_a_missing_database_names_it(
    pg_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = with_database(pg_server.admin_dsn, "no_such_totesys")
    status = main(["seed", "--dsn", dsn])
    error = _only_line(capsys.readouterr().err)
    assert status == EXIT_FAILURE
    assert "database 'no_such_totesys' does not exist" in error


@pytest.mark.slow
def test_seed_with_a_wrong_password_says_the_login_was_refused(
    password_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = make_conninfo(
        password_server.admin_dsn, user="ann", password="Hunter2-typo", dbname="totesys"
    )
    status = main(["seed", "--dsn", wrong])
    error = _only_line(capsys.readouterr().err)
    assert status == EXIT_FAILURE
    assert "refused the login: check the user name and password" in error
    assert "Hunter2" not in error


def test_bad_arguments_are_refused_before_anything_is_touched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["seed", "--dsn", "postgresql://127.0.0.1:9/x", "--scale", "-1"])
    assert exit_info.value.code == USAGE_ERROR
    assert "--scale: must be a positive number, got -1" in capsys.readouterr().err


def test_a_context_value_without_a_key_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "-c", "ingest_max_rows"])
    assert exit_info.value.code == USAGE_ERROR
    assert "expected KEY=VALUE, got 'ingest_max_rows'" in capsys.readouterr().err


def test_a_context_value_that_cannot_be_deployed_stops_the_run_naming_it(
    seeded_source_dsn: str,
    fresh_database: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a transform bite smaller than the ingest batch (synthesis refuses it)
    arguments = [
        *("run", "--source-dsn", seeded_source_dsn, "--warehouse-dsn", fresh_database("wh")),
        *("--data-dir", str(tmp_path), "-c", "transform_max_rows=10"),
    ]

    # When `totes run` synthesises the app, Then it stops with the setting's own message
    assert main(arguments) == EXIT_FAILURE
    error = capsys.readouterr().err
    assert "transform_max_rows (10) must be at least ingest_max_rows (500000)" in error


def test_warehouse_init_is_idempotent_and_says_what_it_did(
    fresh_database: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = fresh_database("warehouse")
    assert main(["warehouse", "init", "--dsn", dsn]) == 0
    assert "Created 14 warehouse tables" in capsys.readouterr().out
    assert main(["warehouse", "init", "--dsn", dsn]) == 0
    assert "up to date: nothing to create" in capsys.readouterr().out


def test_mutate_reports_how_many_changes_of_each_kind(
    seeded_source_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mutate", "--dsn", seeded_source_dsn, "--seed", "4", "--changes", "25"]) == 0
    out = capsys.readouterr().out
    assert "Applied 25 changes" in out
    assert "new_sales_order" in out


def test_counts_lists_every_source_table(
    seeded_source_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["counts", "--dsn", seeded_source_dsn]) == 0
    out = capsys.readouterr().out
    assert "sales_order" in out
    assert "112" in out


@pytest.mark.slow
def test_run_without_dsns_prepares_both_databases_in_an_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no server of the user's: only a data folder
    data_dir = tmp_path / "totes-data"
    try:
        # When `totes run` starts
        status = main(["run", "--data-dir", str(data_dir), "--scale", "0.01"])
        out = capsys.readouterr().out
        # Then an embedded server holds a seeded source and a loaded warehouse
        assert status == 0
        assert "embedded PostgreSQL" in out
        assert "Open the warehouse with: psql" in out
        socket_dir = data_dir / "postgres"
        source = f"host={socket_dir} user=postgres dbname=totesys"
        warehouse = f"host={socket_dir} user=postgres dbname=warehouse"
        assert _sales_orders(source) == 112
        with connect(warehouse) as conn:
            assert conn.execute("SELECT count(*) FROM fact_sales_order").fetchone() == (112,)
        # And a second run reuses the source instead of seeding it again, and adds no fact twice
        assert main(["run", "--data-dir", str(data_dir), "--scale", "0.02"]) == 0
        assert "Seeding" not in capsys.readouterr().out
        assert _sales_orders(source) == 112
        with connect(warehouse) as conn:
            assert conn.execute("SELECT count(*) FROM fact_sales_order").fetchone() == (112,)
    finally:
        main(["stop", "--data-dir", str(data_dir)])
    assert "Stopped the embedded PostgreSQL" in capsys.readouterr().out
