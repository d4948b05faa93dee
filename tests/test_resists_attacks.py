"""Attacks a hostile review made: broken deployments that verification must catch, correct
ones it must pass, and the runner and restore under a role with fewer rights, another
database's backup, a deploy in steps, a fleet and a same-named database elsewhere. A test's
docstring tells the attack as it was found; its asserts are the behaviour the kit keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from migrations import image
from migrations.dburl import connect, dbname, mask, run_outside_transaction
from migrations.steps import load_all
from tests.conftest import ROOT, Db, ok, throwaway_role

SAVED = "test_priority::test_saved_priorities_are_the_originals"
AS_BEFORE = "test_rewrites::test_rewritten_values_are_as_before[stocks.priority]"
AHEAD = "test_sequences::test_sequences_are_ahead_of_their_ids"


def shown(result) -> str:
    """The failed checks and the failure lines of a verification run."""
    lines = [ln.strip() for ln in result.output.splitlines() if "::test_" in ln and ": " in ln]
    return f"failed: {sorted(result.failed)}\n" + "\n".join(lines)[:2000] + "\n" + result.output[-600:]


def must_fail(db: Db, sql: str, says: str, *args: str) -> None:
    """Break a correct deployment with `sql`; verification must fail, saying `says`."""
    db.execute(sql)
    result = db.verify(*args)
    assert result.returncode == 1, f"verification passed a broken deployment:\n{shown(result)}"
    assert says in result.output, f"the failure should say {says!r}:\n{shown(result)}"


@pytest.fixture
def role(deployed_db: Db) -> Iterator[str]:
    with throwaway_role(deployed_db, "azak_rv") as name:
        yield name


# -- false alarms on correct deployments --------------------------------------------------------


def test_stepwise_upgrade_with_a_priority_written_between_steps_verifies(app_db: Db) -> None:
    """The runbook's step-by-step deployment: the application sets a priority (still a live
    column) after step 2; step 3 saves that value correctly. The before-image of step 1 is
    stale, and verification blames the correct deployment."""
    ok(app_db.cli("upgrade", "--to", "add_financial_ratios_table"))
    app_db.execute("UPDATE stocks SET priority = 2 WHERE code = '005930'")  # was 5
    ok(app_db.cli("upgrade"))
    assert app_db.value("SELECT priority FROM stocks_priority_backup WHERE code = '005930'") == 2
    result = app_db.verify()
    assert result.returncode == 0, shown(result)


def test_stepwise_rollback_after_a_priority_written_between_steps_verifies(app_db: Db) -> None:
    """Same deployment rolled back: 005930 correctly gets 2 back (its value when step 3 ran),
    but verification --to base demands 5, and an operator 'fixing' it would corrupt data."""
    ok(app_db.cli("upgrade", "--to", "add_financial_ratios_table"))
    app_db.execute("UPDATE stocks SET priority = 2 WHERE code = '005930'")
    ok(app_db.cli("upgrade"))
    ok(app_db.cli("downgrade", "--to", "base"))
    assert app_db.value("SELECT priority FROM stocks WHERE code = '005930'") == 2
    result = app_db.verify("--to=base")
    assert result.returncode == 0 and AS_BEFORE not in result.failed, shown(result)


def test_sequence_set_with_is_called_false_is_not_behind(deployed_db: Db) -> None:
    """`setval(seq, max+1, false)` (the usual resync idiom) makes the next value max+1; the
    check reads pg_sequences.last_value (NULL then) and claims the sequence gives 1."""
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
    """Shards `X` and `X0`: only X0 is broken, but the summary says `FAILED on X` too (prefix
    match of the test id) and the 'what to do now' rolls back / restores the correct one."""
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
    """Staging and production are both called `azak`; the operator's data/images holds both
    servers' images by name only. The newer one (the other server's) becomes the yardstick
    and a correct deployment fails on the other server's priorities. (Now the yardstick is
    the database's own registry: no file in any folder is read.)"""
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


# -- broken deployments that verification passes ------------------------------------------------


def test_foreign_key_enforcement_switched_off_fails(deployed_db: Db) -> None:
    """DISABLE TRIGGER ALL disables the RI triggers: stock_prices_minute's FK to stocks is no
    longer enforced, yet its pg_get_constraintdef is unchanged and no probe covers it."""
    must_fail(
        deployed_db, "ALTER TABLE stock_prices_minute DISABLE TRIGGER ALL;", "(ENFORCEMENT TRIGGERS DISABLED"
    )


def test_cascade_switched_off_for_a_read_only_verifier_fails(deployed_db: Db, role: str) -> None:
    """stocks' RI action triggers disabled (the priority trigger re-enabled): deleting a stock
    leaves orphan product_info rows. Only the write probes notice; a read-only verifier passes."""
    deployed_db.execute(
        f"GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        " ALTER TABLE stocks DISABLE TRIGGER ALL;"
        " ALTER TABLE stocks ENABLE TRIGGER trigger_stocks_priority_deprecated;"
    )
    result = deployed_db.at(deployed_db.url.set(username=role)).verify()
    assert result.returncode == 1, shown(result)
    assert "(ENFORCEMENT TRIGGERS DISABLED" in result.output, shown(result)


def test_application_role_with_replica_default_fails(deployed_db: Db, role: str) -> None:
    """The application's role (not the verifier's) gets session_replication_role = replica in
    this database: its sessions fire no trigger and check no FK. The check reads only the
    verifier's own session."""
    must_fail(
        deployed_db,
        f"ALTER ROLE {role} IN DATABASE {dbname(deployed_db.url)} SET session_replication_role = replica;",
        f"role {role}: session_replication_role=replica",
    )


def test_rule_on_a_judged_table_fails(deployed_db: Db) -> None:
    """A rule (pg_rewrite is not read) silently drops the application's inserts."""
    must_fail(
        deployed_db,
        "CREATE RULE drop_minutes AS ON INSERT TO stock_prices_minute DO INSTEAD NOTHING;",
        "rule stock_prices_minute.drop_minutes: expected nothing",
    )


def test_missing_before_image_does_not_pass(deployed_db: Db) -> None:
    """Without the before-image nothing of `stocks` & co. and no saved original is judged, yet
    the run exits 0 and says the database 'is upgraded as US-001 requires'."""
    must_fail(
        deployed_db,
        "DELETE FROM azak_registry.rewrite_values; DELETE FROM azak_registry.images;"
        " ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey;"
        " UPDATE stocks_priority_backup SET priority = 4;",
        "no before-image of deployment",
    )


def test_corrupted_rollback_default_and_comment_fail(deployed_db: Db) -> None:
    """The backup table's comment (declared ANY) is what the rollback restores as the column's
    default and comment: a wrong one passes, and the rollback then installs it."""
    must_fail(
        deployed_db,
        'COMMENT ON TABLE stocks_priority_backup IS \'{"default" : "5", "comment" : "wrong"}\';',
        "comment on stocks_priority_backup: expected",
    )


def test_sequence_limit_of_a_new_table_fails(deployed_db: Db) -> None:
    """Sequence options (MAXVALUE, CYCLE, INCREMENT) are not read: product_info can get 5 rows."""
    must_fail(deployed_db, "ALTER SEQUENCE product_info_id_seq MAXVALUE 5;", "maxvalue 5")


def test_sequence_cycling_over_its_ids_fails(deployed_db: Db) -> None:
    must_fail(deployed_db, "ALTER SEQUENCE financial_ratios_id_seq MAXVALUE 3 CYCLE;", "maxvalue 3, cycle")


def test_database_search_path_to_a_shadow_schema_fails(deployed_db: Db) -> None:
    """Every application session now writes product_info rows into a table without UNIQUE,
    FK or trigger; verification pins its own search_path and sees nothing."""
    must_fail(
        deployed_db,
        "CREATE SCHEMA shadow; CREATE TABLE shadow.product_info (id serial, stock_code varchar(10));"
        " DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = shadow, public',"
        " current_database()); END $$;",
        "resolves product_info to shadow.product_info",
    )


def test_trigger_function_setting_fails(deployed_db: Db) -> None:
    """A function's SET clause (proconfig) is not read: the priority trigger now saves
    originals into another schema's table."""
    must_fail(
        deployed_db,
        "CREATE SCHEMA shadow; CREATE TABLE shadow.stocks_priority_backup"
        " (code varchar(10) PRIMARY KEY, priority int);"
        " ALTER FUNCTION stocks_priority_deprecated() SET search_path = shadow, public;",
        "set search_path=shadow, public",
    )


# -- runner, backup and restore ---------------------------------------------------------------


def test_restore_refuses_a_backup_of_another_database(app_db: Db, deployed_db: Db, tmp_path: Path) -> None:
    """Backups are named azak_backup_<time> with nothing of their database; the report's
    restore step takes the newest in --backup-dir (for every database of a fleet). A dump of
    another database is loaded without a word."""
    app_db.execute(
        "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
        " VALUES ('OTHERDB', 'x', 1, true, now(), now())"
    )
    ok(app_db.cli("backup", "--dir", str(tmp_path)))
    (dump,) = tmp_path.glob("azak_backup_*.sql.gz")
    done = deployed_db.cli("restore", str(dump), "--yes")
    assert done.returncode == 2 and "add --other-database" in done.stderr, done.stdout + done.stderr
    assert deployed_db.value("SELECT count(*) FROM stocks WHERE code = 'OTHERDB'") == 0


def test_backup_check_requires_a_backup_of_this_database(app_db: Db, deployed_db: Db, tmp_path: Path) -> None:
    """The deployed database was never backed up; the directory holds another database's."""
    ok(app_db.cli("backup", "--dir", str(tmp_path)))
    result = deployed_db.verify(f"--backup-dir={tmp_path}")
    assert result.returncode == 1 and "should exist in" in result.output, shown(result)


def test_upgrade_by_a_role_that_cannot_alter_stocks_changes_nothing(app_db: Db) -> None:
    """A deploy role that may create tables but not alter `stocks`: two migrations are
    committed, the third fails with 'permission denied', a half deployment is left."""
    grants = "GRANT CREATE, USAGE ON SCHEMA public TO {role}; GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA public TO {role};"
    with throwaway_role(app_db, "azak_dep", grants) as name:
        done = app_db.at(app_db.url.set(username=name)).cli("upgrade")
        assert done.returncode == 1 and "the deploying role may not alter stocks" in done.stderr, done.stderr
        assert app_db.value("SELECT to_regclass('public.product_info') IS NULL"), (
            "refused only after committing migrations 1 and 2:\n" + done.stdout + done.stderr
        )


def test_deploy_pipeline_keeps_its_backup() -> None:
    """deploy.yml backs up into data/backups on a throwaway runner, then uploads only reports/
    and data/deployments.md: the backup to restore is gone when the job ends. (The yardstick
    of the rollback's verification lives in the database's registry now.)"""
    workflow = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    kept = " ".join(
        s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert "data/backups" in kept, f"artifacts kept: {kept}"
