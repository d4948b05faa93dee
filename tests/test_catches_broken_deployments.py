"""Every verification check can fail: break a correct database one way, see that check fail.

Each case breaks a freshly deployed (or rolled-back) throwaway database in exactly one way,
runs `pytest verification` on it as an operator would, and requires the named checks to
fail, the run to fail, and the failure message to say what was found.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tests.conftest import Db, run

DISABLE_PRIORITY = "ALTER TABLE stocks DISABLE TRIGGER trigger_stocks_priority_deprecated;"


@dataclass(frozen=True)
class Break:
    """One way to break a database, and what the verification must say about it."""

    id: str
    sql: str
    fails: tuple[str, ...]
    says: str = ""


UPGRADED = [
    Break(
        "table missing",
        "DROP TABLE product_info;",
        ("test_tables::test_table_exists[product_info]",),
        "table product_info should exist",
    ),
    Break(
        "table comment missing",
        "COMMENT ON TABLE financial_ratios IS NULL;",
        ("test_tables::test_table_has_comment[financial_ratios]",),
    ),
    Break(
        "varchar(8) where varchar(6) is due",
        "ALTER TABLE financial_ratios ALTER COLUMN stac_yymm TYPE varchar(8);",
        ("test_columns::test_column_type[financial_ratios.stac_yymm]",),
        "should be VARCHAR(6), found VARCHAR(8)",
    ),
    Break(
        "column nullable",
        "ALTER TABLE product_info ALTER COLUMN stock_code DROP NOT NULL;",
        ("test_columns::test_column_nullability[product_info.stock_code]",),
    ),
    Break(
        "column default missing",
        "ALTER TABLE financial_ratios ALTER COLUMN div_cls_code DROP DEFAULT;",
        ("test_columns::test_column_default[financial_ratios.div_cls_code]",),
    ),
    Break(
        "column missing",
        "ALTER TABLE financial_ratios DROP COLUMN rsrv_rate;",
        ("test_columns::test_column_type[financial_ratios.rsrv_rate]",),
    ),
    Break(
        "column extra",
        "ALTER TABLE product_info ADD COLUMN listed boolean;",
        ("test_columns::test_no_unexpected_columns[product_info]",),
        "['listed']",
    ),
    Break(
        "primary key missing",
        "ALTER TABLE product_info DROP CONSTRAINT product_info_pkey;",
        ("test_primary_keys::test_primary_key[product_info]",),
    ),
    Break(
        "backup table without primary key",
        "ALTER TABLE stocks_priority_backup DROP CONSTRAINT stocks_priority_backup_pkey;",
        ("test_primary_keys::test_primary_key[stocks_priority_backup]",),
    ),
    Break(
        "index dropped",
        "DROP INDEX idx_product_info_stock_code;",
        ("test_indexes::test_index_columns[idx_product_info_stock_code]",),
    ),
    Break(
        "index without DESC",
        "DROP INDEX idx_financial_ratios_stock_stac;"
        " CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm);",
        ("test_indexes::test_index_sort_order[idx_financial_ratios_stock_stac]",),
    ),
    Break(
        "index columns swapped",
        "DROP INDEX idx_financial_ratios_stock_stac;"
        " CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stac_yymm DESC, stock_code);",
        ("test_indexes::test_index_columns[idx_financial_ratios_stock_stac]",),
    ),
    Break(
        "foreign key missing",
        "ALTER TABLE product_info DROP CONSTRAINT fk_product_stock;",
        (
            "test_foreign_keys::test_foreign_key_columns[fk_product_stock]",
            "test_behaviour::test_product_info_of_unknown_stock_is_rejected",
        ),
    ),
    Break(
        "foreign key of financial_ratios missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;",
        ("test_behaviour::test_financial_ratio_of_unknown_stock_is_rejected",),
    ),
    Break(
        "foreign key without CASCADE",
        "ALTER TABLE product_info DROP CONSTRAINT fk_product_stock;"
        " ALTER TABLE product_info ADD CONSTRAINT fk_product_stock FOREIGN KEY (stock_code)"
        " REFERENCES stocks (code);",
        (
            "test_foreign_keys::test_foreign_key_on_delete[fk_product_stock]",
            "test_behaviour::test_deleting_a_stock_cascades[product_info]",
        ),
        "should be ON DELETE CASCADE, found ON DELETE NO ACTION",
    ),
    Break(
        "foreign key NOT VALID with an orphan",
        "ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;"
        " INSERT INTO financial_ratios (stock_code, stac_yymm) VALUES ('999999', '202412');"
        " ALTER TABLE financial_ratios ADD CONSTRAINT fk_financial_stock FOREIGN KEY (stock_code)"
        " REFERENCES stocks (code) ON DELETE CASCADE NOT VALID;",
        ("test_foreign_keys::test_foreign_key_validated[fk_financial_stock]",),
        "'999999' (1 rows)",
    ),
    Break(
        "foreign key to another table",
        "CREATE TABLE other_codes (code varchar(10) PRIMARY KEY);"
        " INSERT INTO other_codes SELECT code FROM stocks;"
        " ALTER TABLE product_info DROP CONSTRAINT fk_product_stock;"
        " ALTER TABLE product_info ADD CONSTRAINT fk_product_stock FOREIGN KEY (stock_code)"
        " REFERENCES other_codes (code) ON DELETE CASCADE;",
        ("test_foreign_keys::test_foreign_key_target[fk_product_stock]",),
    ),
    Break(
        "UNIQUE on the wrong columns",
        "ALTER TABLE financial_ratios DROP CONSTRAINT uq_financial_ratios;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT uq_financial_ratios UNIQUE (stock_code, stac_yymm);",
        (
            "test_constraints::test_unique_constraint[uq_financial_ratios]",
            "test_behaviour::test_yearly_and_quarterly_ratios_of_one_month_coexist",
        ),
    ),
    Break(
        "UNIQUE of financial_ratios missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT uq_financial_ratios;",
        (
            "test_constraints::test_unique_constraint[uq_financial_ratios]",
            "test_behaviour::test_duplicate_financial_ratio_is_rejected",
        ),
    ),
    Break(
        "UNIQUE missing, duplicates present",
        "ALTER TABLE product_info DROP CONSTRAINT uq_product_info_stock_code;"
        " INSERT INTO product_info (stock_code) VALUES ('005930'), ('005930');",
        (
            "test_constraints::test_unique_constraint[uq_product_info_stock_code]",
            "test_behaviour::test_duplicate_product_info_is_rejected",
        ),
        "('005930', 2)",
    ),
    Break(
        "CHECK on the month missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;",
        (
            "test_constraints::test_check_constraint_columns[ck_financial_ratios_stac_yymm]",
            "test_behaviour::test_check_rejects_bad_month[202413]",
        ),
    ),
    Break(
        "CHECK on the month too weak",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_stac_yymm"
        " CHECK (stac_yymm ~ '^[0-9]{6}$');",
        (
            "test_behaviour::test_check_rejects_bad_month[202413]",
            "test_behaviour::test_check_rejects_bad_month[202400]",
        ),
        "found accepted",
    ),
    Break(
        "CHECK on the month too strict",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_stac_yymm"
        " CHECK (stac_yymm ~ '^20[0-9]{2}(0[1-9]|1[0-2])$');",
        ("test_behaviour::test_check_accepts_valid_month[199910]",),
    ),
    Break(
        "CHECK on the class code missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;",
        ("test_behaviour::test_check_rejects_bad_class_code[2]",),
    ),
    Break(
        "CHECK NOT VALID",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_div_cls_code"
        " CHECK (div_cls_code IN ('0', '1')) NOT VALID;",
        ("test_constraints::test_check_constraint_validated[ck_financial_ratios_div_cls_code]",),
    ),
    Break(
        "a priority of 3",
        "ALTER TABLE stocks DISABLE TRIGGER trigger_stocks_priority_deprecated;"
        " UPDATE stocks SET priority = 3 WHERE code = '005930';"
        " ALTER TABLE stocks ENABLE TRIGGER trigger_stocks_priority_deprecated;",
        ("test_priority::test_every_priority_is_1",),
        "1 → 299, 3 → 1",
    ),
    Break(
        "priority column dropped",
        "ALTER TABLE stocks DROP COLUMN priority CASCADE;",
        ("test_priority::test_priority_column_is_kept",),
    ),
    Break(
        "priority default not 1",
        "ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT 5;",
        ("test_priority::test_priority_default_is_1",),
    ),
    Break(
        "priority comment not deprecated",
        "COMMENT ON COLUMN stocks.priority IS '크롤링 우선순위 (1~5, 낮을수록 우선)';",
        ("test_priority::test_priority_comment_says_deprecated",),
    ),
    Break(
        "priority trigger dropped",
        "DROP TRIGGER trigger_stocks_priority_deprecated ON stocks;",
        (
            "test_triggers::test_trigger_definition[trigger_stocks_priority_deprecated]",
            "test_behaviour::test_new_stock_gets_priority_1",
            "test_behaviour::test_priority_update_stays_1",
        ),
    ),
    Break(
        "priority trigger disabled",
        DISABLE_PRIORITY,
        ("test_triggers::test_trigger_definition[trigger_stocks_priority_deprecated]",),
        "(disabled)",
    ),
    Break(
        "priority trigger on UPDATE only",
        "DROP TRIGGER trigger_stocks_priority_deprecated ON stocks;"
        " CREATE TRIGGER trigger_stocks_priority_deprecated BEFORE UPDATE OF priority ON stocks"
        " FOR EACH ROW EXECUTE FUNCTION stocks_priority_deprecated();",
        (
            "test_triggers::test_trigger_definition[trigger_stocks_priority_deprecated]",
            "test_behaviour::test_new_stock_gets_priority_1",
        ),
    ),
    Break(
        "updated_at trigger dropped",
        "DROP TRIGGER trigger_product_info_updated_at ON product_info;",
        (
            "test_triggers::test_trigger_definition[trigger_product_info_updated_at]",
            "test_behaviour::test_update_moves_updated_at[product_info]",
        ),
    ),
    Break(
        "updated_at trigger function does nothing",
        "CREATE OR REPLACE FUNCTION update_financial_ratios_updated_at() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
        ("test_behaviour::test_update_moves_updated_at[financial_ratios]",),
    ),
    Break(
        "trigger function missing",
        "DROP FUNCTION update_product_info_updated_at() CASCADE;",
        ("test_triggers::test_trigger_function_exists[trigger_product_info_updated_at]",),
    ),
    Break(
        "ledger row missing",
        "DELETE FROM schema_migrations WHERE name = 'deprecate_priority_column';",
        ("test_ledger::test_ledger_records_migration_applied[deprecate_priority_column]",),
    ),
    Break(
        "ledger row interrupted",
        "UPDATE schema_migrations SET state = 'applying' WHERE name = 'deprecate_priority_column';",
        ("test_ledger::test_ledger_records_migration_applied[deprecate_priority_column]",),
        "found applying",
    ),
]

# Breaks of a rolled-back database: US-001 left behind in part. (`app_db` is what a
# complete rollback must equal: the database before US-001.)
PRODUCT_INFO_BY_HAND = "CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(10));"
ROLLED_BACK = [
    Break("table left behind", PRODUCT_INFO_BY_HAND, ("test_rolled_back::test_table_is_gone[product_info]",)),
    Break(
        "backup table left behind",
        "CREATE TABLE stocks_priority_backup (code varchar(10));",
        ("test_rolled_back::test_table_is_gone[stocks_priority_backup]",),
    ),
    Break(
        "function left behind",
        "CREATE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.priority := 1; RETURN NEW; END $$;",
        ("test_rolled_back::test_function_is_gone[stocks_priority_deprecated]",),
    ),
    Break(
        "trigger left behind",
        "CREATE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.priority := 1; RETURN NEW; END $$;"
        " CREATE TRIGGER trigger_stocks_priority_deprecated BEFORE INSERT ON stocks"
        " FOR EACH ROW EXECUTE FUNCTION stocks_priority_deprecated();",
        ("test_rolled_back::test_priority_trigger_is_gone",),
    ),
    Break(
        "ledger rows left behind",
        "CREATE TABLE schema_migrations (name text PRIMARY KEY, state text);"
        " INSERT INTO schema_migrations VALUES ('add_product_info_table', 'applied');",
        ("test_rolled_back::test_ledger_row_is_gone[add_product_info_table]",),
    ),
    Break(
        "priority default left at 1",
        "ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT 1;",
        ("test_rolled_back::test_priority_default_is_restored",),
    ),
    Break(
        "priority comment not restored",
        "COMMENT ON COLUMN stocks.priority IS 'DEPRECATED';",
        ("test_rolled_back::test_priority_comment_is_restored",),
    ),
    Break(
        "priority outside 1..5",
        "UPDATE stocks SET priority = 0 WHERE code = '005930';",
        ("test_rolled_back::test_priorities_are_back_in_range",),
        "0 → 1",
    ),
]


def assert_caught(db: Db, broken: Break, *args: str) -> None:
    db.execute(broken.sql)
    result = db.verify(*args)
    out = result.output[-3000:]
    assert result.returncode == 1, f"the verification run should fail; it exited {result.returncode}\n{out}"
    missed = [check for check in broken.fails if check not in result.failed]
    assert not missed, f"{broken.id}: these checks should fail but did not: {missed}\n{out}"
    assert broken.says in result.output, f"the failure should say {broken.says!r}\n{out}"


@pytest.mark.parametrize("broken", UPGRADED, ids=[b.id for b in UPGRADED])
def test_upgraded_check_catches(deployed_db: Db, broken: Break) -> None:
    assert_caught(deployed_db, broken)


@pytest.mark.parametrize("broken", ROLLED_BACK, ids=[b.id for b in ROLLED_BACK])
def test_rolled_back_check_catches(app_db: Db, broken: Break) -> None:
    assert_caught(app_db, broken, "--expect=rolled-back")


def test_correct_deployment_passes(deployed_db: Db) -> None:
    result = deployed_db.verify()
    assert result.returncode == 0, result.output
    assert not result.failed
    assert len(result.passed) > 100


def test_correct_rollback_passes(deployed_db: Db) -> None:
    with deployed_db.runner() as runner:
        runner.downgrade("base")
    result = deployed_db.verify("--expect=rolled-back")
    assert result.returncode == 0, result.output
    assert len(result.passed) >= 13


def test_every_check_is_broken_by_some_case() -> None:
    """No verification check goes without a case above that makes it fail."""
    listed = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "verification",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--db-url",
            "postgresql://nobody@127.0.0.1:1/none",
        ]
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    checks = {
        line.split("/", 1)[1].replace(".py", "").split("[")[0]
        for line in listed.stdout.splitlines()
        if line.startswith("verification/test_")
    }
    broken = {c.split("[")[0] for b in UPGRADED + ROLLED_BACK for c in b.fails}
    broken |= OPERATIONS_CASES
    assert checks - broken == set(), f"checks no test breaks: {sorted(checks - broken)}"


# Cases in test_operations_checks.py (the application, log and backup checks).
OPERATIONS_CASES = {
    "test_operations::test_application_answers_health_check",
    "test_operations::test_log_shows_no_errors",
    "test_operations::test_backup_is_recent",
    "test_operations::test_backup_holds_stocks",
}
