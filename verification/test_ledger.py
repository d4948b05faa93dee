"""Checklist: the ledger records each US-001 migration as applied."""

import pytest

from verification.catalog import Catalog
from verification.db import Target
from verification.expected import LEDGER_TABLE, MIGRATIONS

pytestmark = pytest.mark.expect("upgraded")


@pytest.mark.parametrize("name", MIGRATIONS)
def test_ledger_records_migration_applied(catalog: Catalog, target: Target, name: str) -> None:
    assert catalog.has_table(LEDGER_TABLE), f"the ledger table {LEDGER_TABLE} should exist; it does not"
    rows = target.rows("SELECT state FROM schema_migrations WHERE name = :n", n=name)
    got = rows[0][0] if rows else "no row"
    assert got == "applied", f"the ledger should record {name} as applied, found {got}"
