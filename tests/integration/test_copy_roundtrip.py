"""Whatever text the source holds, the COPY path hands PostgreSQL exactly that text."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totes.db import connect, copy_field, copy_lines, with_database
from totes_local.runtime.postgres import PostgresServer

# PostgreSQL text cannot hold NUL; everything else must survive.
texts = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\x00")))
money = st.decimals(min_value=-99_999_999, max_value=99_999_999, places=2)


@pytest.fixture(scope="module")
def scratch(
    pg_server: PostgresServer, database_factory: Callable[..., str]
) -> Iterator[psycopg.Connection[Any]]:
    with connect(with_database(pg_server.admin_dsn, database_factory("copy"))) as conn:
        conn.execute("CREATE TABLE scratch (id integer, label text, amount numeric(10, 2))")
        conn.commit()
        yield conn


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(texts, money), max_size=20))
def test_text_and_money_round_trip_through_copy(
    scratch: psycopg.Connection[Any], rows: list[tuple[str | None, Decimal]]
) -> None:
    scratch.execute("TRUNCATE scratch")
    lines = (
        "\t".join(map(copy_field, (index, label, amount))) + "\n"
        for index, (label, amount) in enumerate(rows)
    )
    copied = copy_lines(scratch, "scratch", ["id", "label", "amount"], lines)
    back = scratch.execute("SELECT label, amount FROM scratch ORDER BY id").fetchall()
    scratch.rollback()
    assert copied == len(rows)
    assert back == rows
