"""Checklist: every column of the new tables, exactly (type and length, NULL, default)."""

import pytest
from sqlalchemy.dialects import postgresql

from verification.catalog import Catalog
from verification.expected import NEW_TABLES, PRIORITY_BACKUP, Column

pytestmark = pytest.mark.expect("upgraded")
TABLES = [*NEW_TABLES, PRIORITY_BACKUP]
COLUMNS = [(t.name, c) for t in TABLES for c in t.columns]
IDS = [f"{table}.{c.name}" for table, c in COLUMNS]


@pytest.mark.parametrize(("table", "column"), COLUMNS, ids=IDS)
def test_column_type(catalog: Catalog, table: str, column: Column) -> None:
    got = catalog.named("column", table, column.name)["type"].compile(dialect=postgresql.dialect())
    assert got == column.type, f"{table}.{column.name} should be {column.type}, found {got}"


@pytest.mark.parametrize(("table", "column"), COLUMNS, ids=IDS)
def test_column_nullability(catalog: Catalog, table: str, column: Column) -> None:
    got = catalog.named("column", table, column.name)["nullable"]
    say = {True: "NULL", False: "NOT NULL"}
    assert got == column.nullable, f"{table}.{column.name} should be {say[column.nullable]}, found {say[got]}"


@pytest.mark.parametrize(("table", "column"), COLUMNS, ids=IDS)
def test_column_default(catalog: Catalog, table: str, column: Column) -> None:
    got = catalog.named("column", table, column.name)["default"]
    assert got == column.default, (
        f"{table}.{column.name} should default to {column.default or 'nothing'}, found {got or 'nothing'}"
    )


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_no_unexpected_columns(catalog: Catalog, table) -> None:
    extra = sorted(set(catalog.columns(table.name)) - {c.name for c in table.columns})
    assert not extra, f"{table.name} should have no columns beyond the contract; found {extra}"
