"""Checklist: UNIQUE and CHECK constraints (UNIQUE 제약조건 확인)."""

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Select

from verification.catalog import Catalog
from verification.db import Target
from verification.expected import NEW_TABLES, Check

pytestmark = pytest.mark.expect("upgraded")
UNIQUES = [(t.name, name, cols) for t in NEW_TABLES for name, cols in t.unique.items()]
CHECKS = [(t.name, c) for t in NEW_TABLES for c in t.checks]


def duplicates(table: str, columns: tuple[str, ...]) -> Select:
    """The runbook's troubleshooting query: duplicate groups (at most 10)."""
    keys: list[sa.ColumnClause[Any]] = [sa.column(c) for c in columns]
    return (
        sa.select(*keys, sa.func.count())
        .select_from(sa.table(table, *keys))
        .group_by(*keys)
        .having(sa.func.count() > 1)
        .limit(10)
    )


@pytest.mark.parametrize(("table", "name", "columns"), UNIQUES, ids=[u[1] for u in UNIQUES])
def test_unique_constraint(catalog: Catalog, target: Target, table: str, name: str, columns) -> None:
    got = catalog.unique_constraints(table).get(name)
    if got == columns:
        return
    shown = "not checked"
    if catalog.has_table(table) and set(columns) <= set(catalog.columns(table)):
        rows = target.rows(duplicates(table, columns))
        shown = "; ".join(str(tuple(r)) for r in rows) or "none"
    pytest.fail(
        f"{table} should have UNIQUE {name} on {columns}, found {got or 'no such constraint'}; "
        f"duplicate groups of {columns}: {shown}"
    )


@pytest.mark.parametrize(("table", "check"), CHECKS, ids=[c.name for _, c in CHECKS])
def test_check_constraint_columns(catalog: Catalog, table: str, check: Check) -> None:
    assert check.name in catalog.check_constraints(table), (
        f"{table} should have CHECK {check.name}; found {sorted(catalog.check_constraints(table))}"
    )
    got = catalog.check_columns(table, check.name)
    assert got == check.columns, f"CHECK {check.name} should read {check.columns}, found {got}"


@pytest.mark.parametrize(("table", "check"), CHECKS, ids=[c.name for _, c in CHECKS])
def test_check_constraint_validated(catalog: Catalog, table: str, check: Check) -> None:
    got = catalog.validated(table, check.name)
    assert got, f"CHECK {check.name} should be validated, found {'NOT VALID' if got is False else 'missing'}"
