"""Verification catches breakage that the objects' definitions do not show: foreign keys or
cascades whose enforcement is switched off, a role's sessions that fire no trigger, a rule that
swallows writes, sequence limits, a search path or a function setting that leads to a shadow
table, a corrupted rollback default, a missing before-image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrations.dburl import dbname
from tests.conftest import Db, throwaway_role
from tests.helpers import shown


def must_fail(db: Db, sql: str, says: str, *args: str) -> None:
    """Break a correct deployment with `sql`; verification must fail, saying `says`."""
    db.execute(sql)
    result = db.verify(*args)
    assert result.returncode == 1, f"verification passed a broken deployment:\n{shown(result)}"
    assert says in result.output, f"the failure should say {says!r}:\n{shown(result)}"


@pytest.fixture
def role(deployed_db: Db) -> Iterator[str]:
    """A login role of no rights but its own, dropped afterwards."""
    with throwaway_role(deployed_db, "azak_rv") as name:
        yield name


def test_foreign_key_enforcement_switched_off_fails(deployed_db: Db) -> None:
    """A foreign key whose enforcement triggers are disabled (DISABLE TRIGGER ALL) fails,
    though its definition is unchanged."""
    must_fail(
        deployed_db, "ALTER TABLE stock_prices_minute DISABLE TRIGGER ALL;", "(ENFORCEMENT TRIGGERS DISABLED"
    )


def test_cascade_switched_off_for_a_read_only_verifier_fails(deployed_db: Db, role: str) -> None:
    """stocks' cascades switched off (its RI action triggers disabled) fail even for a verifier
    that may not write, so runs no write probe."""
    deployed_db.execute(
        f"GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        " ALTER TABLE stocks DISABLE TRIGGER ALL;"
        " ALTER TABLE stocks ENABLE TRIGGER trigger_stocks_priority_deprecated;"
    )
    result = deployed_db.at(deployed_db.url.set(username=role)).verify()
    assert result.returncode == 1, shown(result)
    assert "(ENFORCEMENT TRIGGERS DISABLED" in result.output, shown(result)


def test_application_role_with_replica_default_fails(deployed_db: Db, role: str) -> None:
    """A role whose sessions in this database run as replica (no trigger fires, no foreign key
    is checked) fails, whoever verifies."""
    must_fail(
        deployed_db,
        f"ALTER ROLE {role} IN DATABASE {dbname(deployed_db.url)} SET session_replication_role = replica;",
        f"role {role}: session_replication_role=replica",
    )


def test_rule_on_a_judged_table_fails(deployed_db: Db) -> None:
    """A rule on a judged table (one that swallows the application's inserts) fails."""
    must_fail(
        deployed_db,
        "CREATE RULE drop_minutes AS ON INSERT TO stock_prices_minute DO INSTEAD NOTHING;",
        "rule stock_prices_minute.drop_minutes: expected nothing",
    )


def test_missing_before_image_does_not_pass(deployed_db: Db) -> None:
    """Without the before-image the run fails, saying so: what it cannot judge is never taken
    as correct."""
    must_fail(
        deployed_db,
        "DELETE FROM azak_registry.rewrite_values; DELETE FROM azak_registry.images;"
        " ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey;"
        " UPDATE stocks_priority_backup SET priority = 4;",
        "no before-image of deployment",
    )


def test_corrupted_rollback_default_and_comment_fail(deployed_db: Db) -> None:
    """The backup table's comment is data the rollback reads (the column's default and
    comment): judged to the letter, a wrong one fails."""
    must_fail(
        deployed_db,
        'COMMENT ON TABLE stocks_priority_backup IS \'{"default" : "5", "comment" : "wrong"}\';',
        "comment on stocks_priority_backup: expected",
    )


def test_sequence_limit_of_a_new_table_fails(deployed_db: Db) -> None:
    """A new table's sequence limited (MAXVALUE 5: five rows at most) fails."""
    must_fail(deployed_db, "ALTER SEQUENCE product_info_id_seq MAXVALUE 5;", "maxvalue 5")


def test_sequence_cycling_over_its_ids_fails(deployed_db: Db) -> None:
    """A new table's sequence set to cycle over its ids fails."""
    must_fail(deployed_db, "ALTER SEQUENCE financial_ratios_id_seq MAXVALUE 3 CYCLE;", "maxvalue 3, cycle")


def test_database_search_path_to_a_shadow_schema_fails(deployed_db: Db) -> None:
    """A database search_path that sends the application's sessions to a shadow product_info
    fails, though verification's own sessions pin their path."""
    must_fail(
        deployed_db,
        "CREATE SCHEMA shadow; CREATE TABLE shadow.product_info (id serial, stock_code varchar(10));"
        " DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = shadow, public',"
        " current_database()); END $$;",
        "resolves product_info to shadow.product_info",
    )


def test_trigger_function_setting_fails(deployed_db: Db) -> None:
    """A SET clause on the priority trigger's function (saving the originals into another
    schema's table) fails."""
    must_fail(
        deployed_db,
        "CREATE SCHEMA shadow; CREATE TABLE shadow.stocks_priority_backup"
        " (code varchar(10) PRIMARY KEY, priority int);"
        " ALTER FUNCTION stocks_priority_deprecated() SET search_path = shadow, public;",
        "set search_path=shadow, public",
    )
