"""Over every migration of the configured chain: upgrade then downgrade leaves the database
exactly as it was (schema, rows, priorities), at every prefix and step by step; and each
migration does exactly what its contract declares, no more (the contract is the proof of the
SQL, never the other way round)."""

import pytest

from migrations import catalog
from migrations.contract import fold
from migrations.steps import load_all
from tests.conftest import Db
from tests.helpers import catalog_image

CHAIN = load_all()
NAMES = [m.name for m in CHAIN]


@pytest.mark.parametrize("upto", range(len(CHAIN)), ids=[m.name for m in CHAIN])
def test_each_migration_does_exactly_what_its_contract_declares(app_db: Db, upto: int) -> None:
    before = catalog_image(app_db)
    with app_db.runner() as runner:
        runner.upgrade(to=CHAIN[upto].name)
    expected = fold([m.contract for m in CHAIN[: upto + 1]], before)  # the ledger: in its registry
    found = catalog_image(app_db)
    assert catalog.differences(expected, found) == []
    extra = sorted(str(k) for k in set(found) - set(expected))
    assert extra == [], "objects no contract declares"


def test_up_down_consistency(app_db: Db) -> None:
    before = app_db.snapshot()
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


@pytest.mark.parametrize("last", NAMES)
def test_every_prefix_round_trips(app_db: Db, last: str) -> None:
    before = app_db.snapshot()
    with app_db.runner() as runner:
        runner.upgrade(to=last)
        assert [n for n, state in runner.status() if state.startswith("applied")] == list(
            NAMES[: NAMES.index(last) + 1]
        )
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


def test_step_by_step_rollback_restores_each_state(app_db: Db) -> None:
    states = [app_db.snapshot()]
    with app_db.runner() as runner:
        for name in NAMES:
            runner.upgrade(to=name)
            states.append(app_db.snapshot())
        for index in range(len(NAMES) - 1, -1, -1):
            runner.downgrade(NAMES[index - 1] if index else "base")
            assert app_db.snapshot().differences(states[index]) == [], f"after rolling back {NAMES[index]}"


def test_upgrade_after_rollback_works(app_db: Db) -> None:
    with app_db.runner() as runner:
        runner.upgrade()
        first = app_db.snapshot()
        runner.downgrade("base")
        runner.upgrade()
    assert app_db.value("SELECT count(*) FROM stocks WHERE priority <> 1") == 0
    assert app_db.snapshot().schema == first.schema


def test_second_upgrade_changes_nothing(head_db: Db) -> None:
    before = head_db.snapshot()
    with head_db.runner() as runner:
        assert runner.upgrade() == []
    assert head_db.snapshot().differences(before) == []


def test_rollback_restores_every_priority(app_db: Db) -> None:
    before = app_db.execute("SELECT code, priority FROM stocks ORDER BY code")
    with app_db.runner() as runner:
        runner.upgrade()
        assert app_db.value("SELECT count(DISTINCT priority) FROM stocks") == 1
        runner.downgrade("base")
    assert app_db.execute("SELECT code, priority FROM stocks ORDER BY code") == before


def test_stock_with_an_empty_code_is_deprecated_and_restored_too(app_db: Db) -> None:
    """Keyset batches start before the smallest code: '' is a code like any other."""
    app_db.execute(
        "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
        " VALUES ('', 'no code', 4, true, now(), now())"
    )
    with app_db.runner() as runner:
        runner.upgrade()
        assert app_db.value("SELECT priority FROM stocks WHERE code = ''") == 1
        runner.downgrade("base")
    assert app_db.value("SELECT priority FROM stocks WHERE code = ''") == 4


def test_a_rollback_something_else_depends_on_is_refused_before_anything_changes(head_db: Db) -> None:
    """A view on a table the migrations created: PostgreSQL would refuse to drop the table half
    way through the rollback; the runner refuses before its first step, naming the view."""
    head_db.execute("CREATE VIEW product_names AS SELECT stock_code, prdt_name FROM product_info")
    before = head_db.snapshot()
    done = head_db.cli("downgrade", "--to", "base")
    assert done.returncode == 1 and "refusing to roll back: view public.product_names" in done.stderr, (
        done.stderr
    )
    assert head_db.snapshot().differences(before) == []
    head_db.execute("DROP VIEW product_names")
    assert head_db.cli("downgrade", "--to", "base").returncode == 0


def test_what_blocks_a_rollback_is_found_for_functions_with_named_arguments(app_db: Db) -> None:
    """A later change's function `f(a integer)` (the catalog's key names its arguments) and another
    table's default that calls it: named as what blocks that change's rollback (PostgreSQL's
    `to_regprocedure` would not even parse the key)."""
    from types import SimpleNamespace

    from migrations.blockers import blockers
    from migrations.catalog import Key
    from migrations.dburl import KIT_PATH, connect

    app_db.execute(
        "CREATE FUNCTION public.azak_named(a integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';"
        " CREATE TABLE public.azak_uses (x integer DEFAULT public.azak_named(1));"
    )
    change = SimpleNamespace(
        contract=SimpleNamespace(adds={Key("function", "", "azak_named(a integer)"): "x"})
    )
    conn = connect(app_db.url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            found = blockers(cur, [change])  # type: ignore[list-item]
    finally:
        conn.close()
    assert found == [
        "default value for column x of table public.azak_uses (on function public.azak_named(integer))"
    ]
