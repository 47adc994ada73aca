"""Connection strings shown to people never carry a secret; COPY rendering is exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from totes import errors, names
from totes.db import copy_field, describe, with_database

passwords = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=4, max_size=30
)


@given(password=passwords)
def test_describe_never_shows_the_password(password: str) -> None:
    dsn = make_conninfo(
        host="db.internal", port=6543, user="etl", password=password, dbname="totesys"
    )
    shown = describe(dsn)
    assert shown == "etl@db.internal:6543/totesys"


def test_describe_fills_in_the_libpq_defaults() -> None:
    assert describe("dbname=warehouse") == "localhost:5432/warehouse"


def test_with_database_keeps_everything_but_the_database() -> None:
    moved = with_database("postgresql://etl:pw@db.internal:6543/postgres", "warehouse")
    assert describe(moved) == "etl@db.internal:6543/warehouse"
    assert "password=pw" in moved


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (None, "\\N"),
        ("", ""),
        (True, "t"),
        (False, "f"),
        ("O'Keefe", "O'Keefe"),
        ("Hartmann, Franecki and Ratke", "Hartmann, Franecki and Ratke"),
        ("tab\there", "tab\\there"),
        ("line\nbreak\r", "line\\nbreak\\r"),
        ("back\\slash", "back\\\\slash"),
        ("\\N", "\\\\N"),
    ],
)
def test_copy_field_escapes_what_copy_text_format_would_misread(
    value: object, rendered: str
) -> None:
    assert copy_field(value) == rendered


def test_retryable_error_names_match_the_exceptions_the_runtime_raises() -> None:
    # Step Functions matches Retry rules on the exception's class name.
    assert errors.WatermarkConflictError.__name__ == names.WATERMARK_CONFLICT_ERROR
    assert errors.TransformStateConflictError.__name__ == names.TRANSFORM_STATE_CONFLICT_ERROR
