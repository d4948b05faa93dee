"""Checklist: the tables exist (테이블 생성 확인)."""

import pytest

from verification.catalog import Catalog
from verification.expected import NEW_TABLES, PRIORITY_BACKUP, Table

pytestmark = pytest.mark.expect("upgraded")
TABLES = [*NEW_TABLES, PRIORITY_BACKUP]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_table_exists(catalog: Catalog, table: Table) -> None:
    assert catalog.has_table(table.name), f"table {table.name} should exist; it does not"


@pytest.mark.parametrize("table", [t for t in TABLES if t.has_comment], ids=lambda t: t.name)
def test_table_has_comment(catalog: Catalog, table: Table) -> None:
    assert catalog.table_comment(table.name), f"table {table.name} should carry a COMMENT; found none"
