"""The kit carries later changes, each a folder under tests/changes that edits no US-001 file:
the next change (a new table, a US-001 foreign key dropped) deploys, verifies at every state and
rolls back with no drift refusal; a change that rewrites a US-001 table's data round-trips, its
rollback is verified value by value, and its data phases are attacked by the kill tests."""

from __future__ import annotations

import signal

import pytest

from migrations.steps import EXTRA_ENV, load_all
from tests.changes import next_change as next_change_package
from tests.changes import product_names
from tests.conftest import US001_HEAD, Db, ledger, ok
from tests.helpers import catalog_image, fault_points

NEXT = next_change_package.__name__


@pytest.fixture
def next_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain with the next change (the CLI and verification inherit the variable)."""
    monkeypatch.setenv(EXTRA_ENV, NEXT)


@pytest.mark.usefixtures("next_change")
def test_next_change_upgrades_verifies_and_rolls_back(app_db: Db) -> None:
    """At the head, at US-001's head (`--to` and `--to=ledger`) and at base: verified; a second
    upgrade at the head does nothing; back at base, the database is as before."""
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
    """US-001 alone is not the next change's head: verification at head names its missing
    table, the foreign key it drops, and the ledger row it lacks."""
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
    contracts = [m.contract for m in load_all() if m.change == next_change_package.TITLE]
    assert len(contracts) == 2
    for contract in contracts:
        assert [k for k in (*contract.removes, *contract.changes) if k not in before] == []
        assert [k for k in contract.removes if k in after] == []
        assert [k for k in contract.adds if k in before or k not in after] == []


MESSY = {"005930": "  Samsung Elec  ", "000660": "sk hynix", "035420": "Naver ", "051910": None}


@pytest.fixture
def names_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain with the product-names change after US-001 (the CLI and verification inherit
    the variable): normalise_product_names rewrites product_info.prdt_name in batches."""
    monkeypatch.setenv(EXTRA_ENV, product_names.__name__)


def with_products(db: Db) -> dict[str, str | None]:
    """US-001 deployed, then the application fills product_info (names as the API sends them)."""
    ok(db.cli("upgrade", "--to", US001_HEAD))
    for code, name in MESSY.items():
        db.execute("INSERT INTO product_info (stock_code, prdt_name) VALUES (%s, %s)", (code, name))
    return names(db)


def names(db: Db) -> dict[str, str | None]:
    """product_info's names by stock code."""
    return dict(db.execute("SELECT stock_code, prdt_name FROM product_info ORDER BY stock_code"))


@pytest.mark.usefixtures("names_change")
def test_a_change_that_rewrites_data_round_trips(app_db: Db) -> None:
    """A change rewriting a US-001 table's data upgrades, verifies, rolls back to US-001's
    head with every original value back, and verifies there."""
    assert [m.name for m in load_all()][-1] == "normalise_product_names"
    original = with_products(app_db)
    ok(app_db.cli("upgrade", "--batch-size", "1"))
    assert names(app_db)["005930"] == "SAMSUNG ELEC"
    head = app_db.verify()
    assert head.returncode == 0, head.output[-3000:]
    ok(app_db.cli("downgrade", "--to", US001_HEAD, "--batch-size", "1"))
    assert names(app_db) == original
    back = app_db.verify(f"--to={US001_HEAD}")
    assert back.returncode == 0, back.output[-3000:]


@pytest.mark.usefixtures("names_change")
def test_a_later_migrations_rewrite_not_given_back_fails_verification(app_db: Db) -> None:
    """A column a contract declares rewritten (`rewrites=`) is judged value by value after the
    rollback, against the image of just before its migration, whichever column it is: with the
    saved originals lost, the rollback keeps the rewritten names and verification fails."""
    original = with_products(app_db)
    ok(app_db.cli("upgrade"))
    app_db.execute("DELETE FROM product_name_backup")  # the originals the rollback needs: gone
    ok(app_db.cli("downgrade", "--to", US001_HEAD))
    assert names(app_db) != original  # the rollback did not give the names back
    result = app_db.verify(f"--to={US001_HEAD}")
    assert result.returncode == 1, (
        "verification passed a rollback that lost every rewritten product name:\n" + result.output[-1500:]
    )


@pytest.mark.usefixtures("names_change")
def test_downgrade_killed_in_a_first_data_phase_is_not_left_marked_applied(app_db: Db) -> None:
    """A rollback whose first phase is a data phase is marked 'reverting' before its first
    batch: killed after it, with part of the data given back, the ledger says so."""
    with_products(app_db)
    ok(app_db.cli("upgrade"))
    killed = app_db.cli(
        "downgrade",
        "--to",
        US001_HEAD,
        "--batch-size",
        "1",
        env={"AZAK_FAULT_AT": "after-batch:normalise_product_names:1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert app_db.value("SELECT count(*) FROM product_name_backup") < 3  # part of it is reverted
    assert ledger(app_db)["normalise_product_names"] == "reverting", (
        f"a half-reverted migration is recorded as {ledger(app_db)['normalise_product_names']!r}; "
        f"status: {app_db.cli('status').stdout}"
    )


@pytest.mark.usefixtures("names_change")
def test_a_later_changes_batches_are_attacked_by_the_kill_tests(app_db: Db) -> None:
    """The kill tests' fault points name their migration: the points listed for a later data
    phase kill that migration's batch, not US-001's, and no point is listed twice."""
    points = fault_points("up")
    start = points.index("before:normalise_product_names:up:1")  # its Batches phase
    inside = points[start + 1]
    killed = app_db.cli("upgrade", "--batch-size", "64", env={"AZAK_FAULT_AT": inside})  # as that test runs
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert ledger(app_db).get("normalise_product_names") == "applying", (
        f"the point {inside!r}, listed for normalise_product_names, killed the run elsewhere: "
        f"ledger {ledger(app_db)}; fault points listed twice: "
        f"{sorted({p for p in points if points.count(p) > 1})}"
    )
    assert len(points) == len(set(points))
