"""Checklist: primary keys."""

import pytest

from verification.catalog import Catalog
from verification.expected import NEW_TABLES, PRIORITY_BACKUP, Table

pytestmark = pytest.mark.expect("upgraded")


@pytest.mark.parametrize("table", [*NEW_TABLES, PRIORITY_BACKUP], ids=lambda t: t.name)
def test_primary_key(catalog: Catalog, table: Table) -> None:
    got = catalog.primary_key(table.name)
    assert got == table.primary_key, (
        f"{table.name} should have PRIMARY KEY {table.primary_key}, found {got or 'none'}"
    )
