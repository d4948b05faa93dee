"""Work done by hand is judged, never trusted nor destroyed: a table made by hand exactly as its
migration makes it is adopted (also where a later migration changes an earlier table), one that
differs is refused naming the difference, and a rollback leaves a table it did not make in
place, naming it."""

from __future__ import annotations

import re

import pytest

from migrations.steps import EXTRA_ENV
from tests.changes import product_listing, product_names
from tests.conftest import Db, ok
from tests.helpers import refused


def test_table_created_by_hand_that_matches_is_adopted(app_db: Db) -> None:
    """A table made by hand with its migration's own SQL is adopted: recorded, not re-made."""
    from migrations import add_product_info_table

    app_db.execute(add_product_info_table.UPGRADE[0].sql)
    done = app_db.cli("upgrade")
    assert done.returncode == 0, done.stderr
    assert "adopted add_product_info_table" in done.stdout
    assert app_db.verify().returncode == 0


def test_table_created_by_hand_that_differs_is_refused(app_db: Db) -> None:
    """A table made by hand otherwise stops the upgrade before any change, naming the column."""
    app_db.execute("CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(12))")
    err = refused(app_db)
    assert (
        "add_product_info_table: column product_info.stock_code: expected 'character varying(10) not null',"
        " found 'character varying(12) null'"
    ) in err


def test_a_later_migration_that_changes_an_earlier_fact_is_adopted_when_made_by_hand(
    app_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending migration that changes an earlier table (widen_and_list widens
    product_info.prdt_name and hangs product_listing off it), applied by hand exactly as its
    SQL says, is adopted: the applied migrations are judged with the pending one's changes."""
    from tests.changes.product_listing.widen_and_list import UPGRADE

    monkeypatch.setenv(EXTRA_ENV, f"{product_names.__name__},{product_listing.__name__}")
    ok(app_db.cli("upgrade", "--to", "normalise_product_names"))
    app_db.execute(UPGRADE[0].sql)  # the DBA ran the reviewed SQL by hand
    done = app_db.cli("upgrade")
    assert done.returncode == 0 and "adopted widen_and_list" in done.stdout, done.stdout + done.stderr


def test_a_rollback_leaves_a_table_made_by_hand_and_names_it(app_db: Db) -> None:
    """With product_info made by hand (not as its migration makes it) and no ledger, `downgrade
    --to base` drops nothing it did not make and names the table it left in place; `status`
    names it as existing without its ledger row."""
    app_db.execute("CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(10), note text)")
    down = ok(app_db.cli("downgrade", "--to", "base"))
    assert "left in place, not recorded in the ledger (made by hand?): product_info\n" in down, down
    assert app_db.value("SELECT to_regclass('public.product_info') IS NOT NULL")  # kept: not the kit's
    status = ok(app_db.cli("status"))
    named = re.search(r"add_product_info_table +pending, but product_info exist\(s\) without it", status)
    assert named, status
