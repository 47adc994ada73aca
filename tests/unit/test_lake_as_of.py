"""`totes lake query --as-of` on Athena: every table the statement names is read as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from totes_local.lake import as_of_statement

MOMENT = datetime(2024, 11, 14, 9, 30, 15, 250_000, tzinfo=UTC)


def test_each_named_table_becomes_a_with_clause_reading_it_at_the_moment() -> None:
    # Given a statement over two tables, and a moment
    statement = "SELECT count(*) FROM fact_payment JOIN dim_currency USING (currency_id)"
    # When it is rewritten for Athena
    rewritten = as_of_statement(statement, "totes_lake", ["fact_payment", "dim_currency"], MOMENT)
    # Then each table is read from the lake's database as of that moment, in UTC to the
    # millisecond, and the statement follows unchanged
    assert rewritten == (
        'WITH fact_payment AS (SELECT * FROM "totes_lake"."fact_payment" '
        "FOR TIMESTAMP AS OF TIMESTAMP '2024-11-14 09:30:15.250 UTC'), "
        'dim_currency AS (SELECT * FROM "totes_lake"."dim_currency" '
        "FOR TIMESTAMP AS OF TIMESTAMP '2024-11-14 09:30:15.250 UTC')\n" + statement
    )


def test_a_statement_with_its_own_with_clause_keeps_it_after_the_tables() -> None:
    # Given a statement that starts with WITH (in any case), and a moment with an offset
    statement = "with recent AS (SELECT * FROM fact_payment) SELECT count(*) FROM recent"
    moment = MOMENT.astimezone(timezone(timedelta(hours=2)))
    # When it is rewritten
    rewritten = as_of_statement(statement, "lake", ["fact_payment"], moment)
    # Then one WITH holds the table's clause, then the statement's own, and the moment is
    # the same instant in UTC
    assert rewritten == (
        'WITH fact_payment AS (SELECT * FROM "lake"."fact_payment" '
        "FOR TIMESTAMP AS OF TIMESTAMP '2024-11-14 09:30:15.250 UTC'),\n"
        "recent AS (SELECT * FROM fact_payment) SELECT count(*) FROM recent"
    )


def test_a_statement_that_names_no_lake_table_is_left_as_it_is() -> None:
    assert as_of_statement("SELECT 1", "lake", [], MOMENT) == "SELECT 1"
