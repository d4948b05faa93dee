"""After a rollback (롤백 후 확인사항): US-001 is gone and stocks is as it was before."""

import pytest

from verification.catalog import Catalog
from verification.db import Target
from verification.expected import (
    FUNCTIONS,
    LEDGER_TABLE,
    MIGRATIONS,
    PRIORITY_COMMENT_BEFORE,
    PRIORITY_DEFAULT_BEFORE,
    PRIORITY_RANGE_BEFORE,
    PRIORITY_TRIGGER,
    US001_TABLES,
)

pytestmark = pytest.mark.expect("rolled-back")


@pytest.mark.parametrize("table", US001_TABLES)
def test_table_is_gone(catalog: Catalog, table: str) -> None:
    assert not catalog.has_table(table), f"table {table} should be gone after the rollback; it exists"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_is_gone(catalog: Catalog, function: str) -> None:
    assert not catalog.function_exists(function), f"function {function}() should be gone; it exists"


def test_priority_trigger_is_gone(catalog: Catalog) -> None:
    assert catalog.trigger("stocks", PRIORITY_TRIGGER.name) is None, (
        f"trigger {PRIORITY_TRIGGER.name} should be gone from stocks; it exists"
    )


@pytest.mark.parametrize("name", MIGRATIONS)
def test_ledger_row_is_gone(catalog: Catalog, target: Target, name: str) -> None:
    rows = (
        target.rows("SELECT state FROM schema_migrations WHERE name = :n", n=name)
        if catalog.has_table(LEDGER_TABLE)
        else []
    )
    assert not rows, f"the ledger should not record {name} after the rollback; it says {rows[0][0]}"


def test_priority_default_is_restored(catalog: Catalog) -> None:
    got = catalog.columns("stocks")["priority"]["default"]
    assert got == PRIORITY_DEFAULT_BEFORE, (
        f"stocks.priority should have its old default ({PRIORITY_DEFAULT_BEFORE or 'none'}), found {got}"
    )


def test_priority_comment_is_restored(catalog: Catalog) -> None:
    got = catalog.columns("stocks")["priority"]["comment"]
    assert got == PRIORITY_COMMENT_BEFORE, (
        f"the comment on stocks.priority should be {PRIORITY_COMMENT_BEFORE!r} again, found {got!r}"
    )


def test_priorities_are_back_in_range(target: Target) -> None:
    low, high = PRIORITY_RANGE_BEFORE
    rows = target.rows(
        "SELECT priority, count(*) FROM stocks WHERE priority IS NULL OR priority NOT BETWEEN :lo AND :hi"
        " GROUP BY priority ORDER BY priority",
        lo=low,
        hi=high,
    )
    assert not rows, f"every stocks.priority should be {low}..{high} again; outside: " + ", ".join(
        f"{p} → {n}" for p, n in rows
    )
