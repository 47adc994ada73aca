"""The load stage's SQL: composed from the star-schema names, and the dim_date convention."""

from __future__ import annotations

import doctest
import re
from datetime import date, timedelta
from types import ModuleType

import pytest

from totes.load import stage, star_zone, warehouse_sql
from totes.names import DIMENSION_TABLES, FACT_TABLES
from totes.warehouse.star import FACT_REFERENCES, FACT_VERSION_KEYS, STAR_SCHEMAS, dim_date_row


@pytest.mark.parametrize("module", [stage, star_zone, warehouse_sql], ids=lambda m: m.__name__)
def test_the_examples_in_the_docstrings_hold(module: ModuleType) -> None:
    failed, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failed == 0


def _statements(target: str) -> list[str]:
    if target in DIMENSION_TABLES:
        built = [warehouse_sql.upsert_dimension_statement(target)]
    else:
        built = [
            warehouse_sql.count_present_versions_statement(target),
            warehouse_sql.new_positions_statement(target),
            warehouse_sql.extend_dim_date_statement(),
            warehouse_sql.lock_references_statement(target),
            warehouse_sql.missing_references_statement(target),
            warehouse_sql.insert_facts_statement(target),
        ]
    built += [
        warehouse_sql.create_stage_statement(target),
        warehouse_sql.copy_stage_statement(target),
    ]
    return [statement.as_string() for statement in built]


@pytest.mark.parametrize("target", [*DIMENSION_TABLES, *FACT_TABLES])
def test_every_column_name_in_the_statements_is_a_quoted_identifier(target: str) -> None:
    for text in _statements(target):
        code = re.sub(r"'[^']*'", "''", text)  # the text outside string literals
        for column in STAR_SCHEMAS[target].names:
            assert re.findall(rf'(?<![\w"]){re.escape(column)}(?![\w"])', code) == [], text


def test_facts_are_inserted_once_per_version_through_the_natural_key_constraint() -> None:
    for fact in FACT_TABLES:
        text = warehouse_sql.insert_facts_statement(fact).as_string()
        assert text.endswith(f'ON CONFLICT ON CONSTRAINT "{fact}_version" DO NOTHING')
    with pytest.raises(ValueError, match="not a fact table"):
        warehouse_sql.fact_version_constraint("dim_staff")


def test_unchanged_dimension_rows_are_left_alone_by_the_upsert() -> None:
    text = warehouse_sql.upsert_dimension_statement("dim_location").as_string()
    assert 'ON CONFLICT ("location_id") DO UPDATE SET' in text
    assert "IS DISTINCT FROM" in text
    assert '"existing"."address_line_2"' in text


def test_every_reference_of_a_fact_is_checked_and_locked() -> None:
    for fact, references in FACT_REFERENCES.items():
        missing = warehouse_sql.missing_references_statement(fact).as_string()
        locks = warehouse_sql.lock_references_statement(fact).as_string()
        for column, (dimension, _) in references.items():
            assert f"'{column} '" in missing
            assert f'LEFT JOIN "{dimension}"' in missing
            assert f'FROM "{dimension}" WHERE' in locks
        assert locks.count("FOR KEY SHARE") == len(set(references.values())) + 1


def test_present_versions_are_matched_on_the_whole_natural_key() -> None:
    for fact, keys in FACT_VERSION_KEYS.items():
        text = warehouse_sql.count_present_versions_statement(fact).as_string()
        for key in keys:
            assert f'"staged"."{key}" = "present"."{key}"' in text


def test_the_python_dim_date_convention_is_iso_and_english_for_four_years() -> None:
    for offset in range(4 * 366):
        day = date(2023, 1, 1) + timedelta(days=offset)
        row = dim_date_row(day)
        assert row["day_of_week"] == int(day.strftime("%u"))
        assert row["day_name"] == day.strftime("%A")  # the C locale the tests run in
        assert row["month_name"] == day.strftime("%B")
        assert row["quarter"] == {1: 1, 4: 2, 7: 3, 10: 4}[day.month - (day.month - 1) % 3]
