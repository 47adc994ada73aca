"""The load stage's SQL, composed from the star-schema names."""

from __future__ import annotations

import re

import pytest

from totes.load import warehouse_sql
from totes.tables import DIMENSION_TABLES, FACT_TABLES, FACTS, GOLD_DIMENSIONS
from totes.warehouse.star import STAR_SCHEMAS


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
        warehouse_sql.copy_stage_statement(target, binary=False),
    ]
    return [statement.as_string() for statement in built]


@pytest.mark.parametrize("target", [*GOLD_DIMENSIONS, *FACT_TABLES])
def test_every_column_name_in_the_statements_is_a_quoted_identifier(target: str) -> None:
    for text in _statements(target):
        code = re.sub(r"'[^']*'", "''", text)  # the text outside string literals
        for column in STAR_SCHEMAS[target].names:
            assert re.findall(rf'(?<![\w"]){re.escape(column)}(?![\w"])', code) == [], text


def test_facts_are_inserted_once_per_version_of_their_natural_key() -> None:
    for fact in FACTS:
        text = warehouse_sql.insert_facts_statement(fact.name).as_string()
        version = ", ".join(f'"{key}"' for key in fact.version_key)
        assert f"SELECT DISTINCT ON ({version})" in text
        assert text.endswith(f"ORDER BY {version}")
        assert "ON CONFLICT" not in text


def test_unchanged_dimension_rows_are_left_alone_by_the_upsert() -> None:
    text = warehouse_sql.upsert_dimension_statement("dim_location").as_string()
    assert 'ON CONFLICT ("location_id") DO UPDATE SET' in text
    assert "IS DISTINCT FROM" in text
    assert '"existing"."address_line_2"' in text


def test_every_reference_of_a_fact_is_checked_and_locked() -> None:
    for fact in FACTS:
        references = fact.references
        missing = warehouse_sql.missing_references_statement(fact.name).as_string()
        locks = warehouse_sql.lock_references_statement(fact.name).as_string()
        for column, dimension in references.items():
            assert f"'{column} '" in missing
            assert f'LEFT JOIN "{dimension}"' in missing
            assert f'FROM "{dimension}" WHERE' in locks
        assert locks.count("FOR KEY SHARE") == len(set(references.values())) + 1


def test_present_versions_are_matched_on_the_whole_natural_key() -> None:
    for fact in FACTS:
        text = warehouse_sql.count_present_versions_statement(fact.name).as_string()
        for key in fact.version_key:
            assert f'"staged"."{key}" = "present"."{key}"' in text
