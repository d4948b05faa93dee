"""The kit carries the next change: a change folder under tests/ that edits no US-001 file
(a new table, a US-001 foreign key dropped) is deployed, verified at every state and rolled
back, with no drift refusal."""

from __future__ import annotations

import pytest

from migrations.steps import EXTRA_ENV, load_all
from tests.changes.next_change import TITLE as NEXT_TITLE
from tests.conftest import US001_HEAD, Db, ok
from tests.helpers import catalog_image

NEXT = "tests.changes.next_change"


@pytest.fixture
def next_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain with the next change (the CLI and verification inherit the variable)."""
    monkeypatch.setenv(EXTRA_ENV, NEXT)


@pytest.mark.usefixtures("next_change")
def test_next_change_upgrades_verifies_and_rolls_back(app_db: Db) -> None:
    assert [m.name for m in load_all()][-2:] == ["add_stock_news_table", "drop_financial_stock_key"]
    before = app_db.snapshot()
    ok(app_db.cli("upgrade"))
    head = app_db.verify()
    assert head.returncode == 0, head.output[-3000:]
    assert "test_tables::test_tables_and_columns_are_as_expected" in head.passed
    assert "nothing to do" in ok(app_db.cli("upgrade"))  # no drift refusal at the new head
    ok(app_db.cli("downgrade", "--to", US001_HEAD))
    at_us001 = app_db.verify(f"--to={US001_HEAD}")
    assert at_us001.returncode == 0, at_us001.output[-3000:]
    as_recorded = app_db.verify("--to=ledger")  # the state the ledger says: US-001's head
    assert as_recorded.returncode == 0 and as_recorded.passed == at_us001.passed, as_recorded.output[-3000:]
    ok(app_db.cli("downgrade", "--to", "base"))
    at_base = app_db.verify("--to=base")
    assert at_base.returncode == 0, at_base.output[-3000:]
    assert app_db.snapshot().differences(before) == []


@pytest.mark.usefixtures("next_change")
def test_verification_at_head_expects_the_next_change(deployed_db: Db) -> None:
    """US-001 alone is not the head any more: its table is missing, its dropped FK is there."""
    result = deployed_db.verify("--to=head")
    assert result.returncode == 1
    assert "table stock_news: expected" in (result.output)
    assert "constraint financial_ratios.fk_financial_stock: expected nothing (absent)" in result.output
    assert "the ledger should record" in result.output


@pytest.mark.usefixtures("next_change")
def test_the_next_contracts_name_facts_as_the_catalog_reads_them(deployed_db: Db) -> None:
    """What the next change's contracts remove or change exists under that key in the catalog
    at US-001's head, and what they remove is gone after; what they add is new and there."""
    before = catalog_image(deployed_db)
    ok(deployed_db.cli("upgrade"))
    after = catalog_image(deployed_db)
    contracts = [m.contract for m in load_all() if m.change == NEXT_TITLE]
    assert len(contracts) == 2
    for contract in contracts:
        assert [k for k in (*contract.removes, *contract.changes) if k not in before] == []
        assert [k for k in contract.removes if k in after] == []
        assert [k for k in contract.adds if k in before or k not in after] == []
