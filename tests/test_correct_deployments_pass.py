"""Verification passes a correct deployment however it was reached: in steps with the
application writing between them, verified at an intermediate migration, from another time
zone, after a sequence resync, with a public-first search_path beside a login role's own
schema, beside another server's image of a database of the same name; in a fleet, only the
broken database is blamed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrations import image
from migrations.dburl import connect, dbname, mask, run_outside_transaction
from migrations.steps import load_all
from tests.checks import AHEAD, AS_BEFORE
from tests.conftest import US001_HEAD, Db, ok, throwaway_role
from tests.helpers import shown


def test_stepwise_upgrade_with_a_priority_written_between_steps_verifies(app_db: Db) -> None:
    """Deployed step by step, with the application setting a priority (still a live column)
    between steps 2 and 3: step 3 saves that value, and verification judges by the image of
    just before step 3, not the stale one of step 1."""
    ok(app_db.cli("upgrade", "--to", "add_financial_ratios_table"))
    app_db.execute("UPDATE stocks SET priority = 2 WHERE code = '005930'")  # was 5
    ok(app_db.cli("upgrade", "--to", US001_HEAD))
    assert app_db.value("SELECT priority FROM stocks_priority_backup WHERE code = '005930'") == 2
    result = app_db.verify(f"--to={US001_HEAD}")
    assert result.returncode == 0, shown(result)


def test_stepwise_rollback_after_a_priority_written_between_steps_verifies(app_db: Db) -> None:
    """The same deployment rolled back gives 005930 its value when step 3 ran (2), and
    verification `--to base` expects exactly that."""
    ok(app_db.cli("upgrade", "--to", "add_financial_ratios_table"))
    app_db.execute("UPDATE stocks SET priority = 2 WHERE code = '005930'")
    ok(app_db.cli("upgrade", "--to", US001_HEAD))
    ok(app_db.cli("downgrade", "--to", "base"))
    assert app_db.value("SELECT priority FROM stocks WHERE code = '005930'") == 2
    result = app_db.verify("--to=base")
    assert result.returncode == 0 and AS_BEFORE not in result.failed, shown(result)


def test_sequence_set_with_is_called_false_is_not_behind(deployed_db: Db) -> None:
    """A sequence resynced with `setval(seq, max+1, false)` (the usual idiom) gives max+1 next:
    verification counts it ahead of its ids."""
    deployed_db.execute(
        "INSERT INTO product_info (id, stock_code) SELECT n, code FROM"
        " (SELECT code, row_number() OVER (ORDER BY code) AS n FROM stocks) s WHERE n <= 50;"
        " SELECT setval('product_info_id_seq', 51, false);"
    )
    assert deployed_db.value("SELECT nextval('product_info_id_seq')") == 51
    deployed_db.execute("SELECT setval('product_info_id_seq', 51, false)")
    result = deployed_db.verify()
    assert result.returncode == 0 and AHEAD not in result.failed, shown(result)


def test_fleet_blames_only_the_database_that_failed(deployed_db: Db) -> None:
    """Of shards `X` and `X0` (one name a prefix of the other), only the broken X0 is named
    FAILED; the correct X is not."""
    second = f"{dbname(deployed_db.url)}0"
    run_outside_transaction(
        deployed_db.url, f'CREATE DATABASE "{second}" TEMPLATE "{dbname(deployed_db.url)}"'
    )
    try:
        broken = deployed_db.at(deployed_db.url.set(database=second))
        broken.execute("ALTER TABLE product_info DROP COLUMN prdt_name")
        first_url = mask(deployed_db.url)
        result = deployed_db.verify(f"--db-url={deployed_db.text_url}", f"--db-url={broken.text_url}")
        assert result.returncode == 1, shown(result)
        assert f"FAILED on {first_url}:" not in result.output, shown(result)
        assert f"FAILED on {mask(broken.url)}: " in result.output, shown(result)
    finally:
        run_outside_transaction(deployed_db.url, f'DROP DATABASE IF EXISTS "{second}"')


def test_an_image_of_another_database_of_the_same_name_is_not_the_yardstick(
    deployed_db: Db, app_db: Db
) -> None:
    """A newer image file of another server's database of the same name, in the images folder,
    decides nothing: the yardstick is the database's own registry."""
    app_db.execute("UPDATE stocks SET priority = 3")
    conn = connect(app_db.url)
    try:
        with conn, conn.cursor() as cur:
            rewrites = [rw for m in load_all() for rw in m.contract.rewrites]
            other = image.keep(cur, rewrites, [])
    finally:
        conn.close()
    name = dbname(deployed_db.url)
    planted = image.BeforeImage(
        name, "2999-01-01T00:00:00", other.catalog, other.digests, [], f"{name} on server 1"
    )
    image.write(planted, lambda out: None, image.directory())  # newest, of another server
    result = deployed_db.verify()
    assert result.returncode == 0, shown(result)


@pytest.fixture
def etl_role(deployed_db: Db) -> Iterator[str]:
    """A login role with its own schema, as an ETL job has: a staging copy of stocks in it."""
    staging = "CREATE SCHEMA {role} AUTHORIZATION {role}; CREATE TABLE {role}.stocks (code varchar(10));"
    with throwaway_role(deployed_db, "azak_etl", staging, "DROP SCHEMA {role} CASCADE;") as name:
        yield name


def test_database_search_path_with_public_first_does_not_blame_a_login_roles_schema(
    deployed_db: Db, etl_role: str
) -> None:
    """With the database's search_path `public, "$user"`, every session finds the deployment's
    tables in public whatever schemas login roles own: a role's own `stocks` is no finding."""
    db = dbname_of(deployed_db)
    deployed_db.execute(f'ALTER DATABASE {db} SET search_path = public, "$user"')
    result = deployed_db.verify()
    assert result.returncode == 0, "a correct deployment failed:\n" + result.output[-1500:]


def dbname_of(db: Db) -> str:
    """The database's name (a URL of the test server always has one)."""
    assert db.url.database is not None
    return db.url.database


def test_verifying_from_another_time_zone_is_not_a_difference(
    app_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timestamptz default (rendered in the session's TimeZone) kept in the before-image in
    UTC is the same default when verification runs in Asia/Seoul: the catalog is read with its
    settings pinned."""
    app_db.execute("ALTER TABLE stocks ADD COLUMN listed_since timestamptz DEFAULT '2000-01-01 00:00+00'")
    monkeypatch.setenv("PGTZ", "UTC")
    ok(app_db.cli("upgrade"))
    monkeypatch.setenv("PGTZ", "Asia/Seoul")
    result = app_db.verify()
    assert result.returncode == 0, "a correct deployment failed:\n" + result.output[-1500:]


def test_verification_at_the_first_migration_passes(app_db: Db) -> None:
    """Deployed and verified `--to add_product_info_table` (a deploy in steps): each probe
    touches only tables of the verified state, and every check passes."""
    ok(app_db.cli("upgrade", "--to", "add_product_info_table"))
    result = app_db.verify("--to=add_product_info_table")
    assert "test_changes::test_deleting_a_stock_cascades[product_info]" not in result.failed, result.output[
        -1500:
    ]
    assert result.returncode == 0, result.output[-1500:]


def test_priority_written_while_the_column_is_still_live_is_not_blamed(app_db: Db) -> None:
    """Before deprecate_priority_column, `stocks.priority` is the application's live column: a
    priority it sets after step 1 is no difference at that step."""
    ok(app_db.cli("upgrade", "--to", "add_product_info_table"))
    app_db.execute("UPDATE stocks SET priority = 4 WHERE code = '005930'")  # was 5
    result = app_db.verify("--to=add_product_info_table")
    assert result.returncode == 0, result.output[-1500:]
    assert AS_BEFORE not in result.failed
