"""Checklist: FOREIGN KEY constraints (Foreign Key 제약조건 확인)."""

import pytest
import sqlalchemy as sa
from sqlalchemy import Select

from verification.catalog import Catalog
from verification.db import Target
from verification.expected import NEW_TABLES, ForeignKey

pytestmark = pytest.mark.expect("upgraded")
FKS = [(t.name, fk) for t in NEW_TABLES for fk in t.foreign_keys]
IDS = [fk.name for _, fk in FKS]


def orphans(table: str) -> Select:
    """The runbook's troubleshooting query: stock codes missing from stocks (at most 10)."""
    child, stocks = sa.table(table, sa.column("stock_code")), sa.table("stocks", sa.column("code"))
    missing = ~sa.exists().where(stocks.c.code == child.c.stock_code)
    return (
        sa.select(child.c.stock_code, sa.func.count())
        .where(missing)
        .group_by(child.c.stock_code)
        .order_by(child.c.stock_code)
        .limit(10)
    )


@pytest.mark.parametrize(("table", "fk"), FKS, ids=IDS)
def test_foreign_key_columns(catalog: Catalog, table: str, fk: ForeignKey) -> None:
    got = tuple(catalog.named("foreign key", table, fk.name)["constrained_columns"])
    assert got == fk.columns, f"{fk.name} should be on {table}{fk.columns}, found {got}"


@pytest.mark.parametrize(("table", "fk"), FKS, ids=IDS)
def test_foreign_key_target(catalog: Catalog, table: str, fk: ForeignKey) -> None:
    got = catalog.named("foreign key", table, fk.name)
    found_target = (got["referred_table"], tuple(got["referred_columns"]))
    assert found_target == (fk.target_table, fk.target_columns), (
        f"{fk.name} should reference {fk.target_table}{fk.target_columns}, found {found_target}"
    )


@pytest.mark.parametrize(("table", "fk"), FKS, ids=IDS)
def test_foreign_key_on_delete(catalog: Catalog, table: str, fk: ForeignKey) -> None:
    got = (catalog.named("foreign key", table, fk.name)["options"].get("ondelete") or "NO ACTION").upper()
    assert got == fk.on_delete, f"{fk.name} should be ON DELETE {fk.on_delete}, found ON DELETE {got}"


@pytest.mark.parametrize(("table", "fk"), FKS, ids=IDS)
def test_foreign_key_validated(catalog: Catalog, target: Target, table: str, fk: ForeignKey) -> None:
    catalog.named("foreign key", table, fk.name)
    if catalog.validated(table, fk.name):
        return
    shown = ", ".join(f"{code!r} ({n} rows)" for code, n in target.rows(orphans(table))) or "none found"
    pytest.fail(
        f"{fk.name} should be validated, found NOT VALID; stock codes in {table} missing from stocks: {shown}"
    )
