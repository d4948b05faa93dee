"""Every verification check can fail, and says why: break a correct database one way, run
`pytest verification` on it as an operator would, and require the named checks to fail with
a message naming the broken fact. Harmless differences must pass.

Upgraded cases start from a freshly deployed throwaway database with its before-image;
rolled-back cases from one that the runner deployed and rolled back (its image kept).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from migrations.dburl import run_outside_transaction
from tests.checks import (
    ACCESS,
    AHEAD,
    ALL_ONE,
    APP_MODELS,
    AS_BEFORE,
    BLOCKERS,
    CHECKSUMS,
    CLAIMS,
    DEFAULTS,
    FKS,
    HEALTH,
    HELD,
    IMAGE,
    INDEXES,
    LEDGER,
    LOG,
    LOOKALIKES,
    OWNERS,
    RECENT,
    RESTORABLE,
    ROWS_LOST,
    SAVED,
    SEQUENCES,
    SETTINGS,
    SHADOWED,
    TABLES,
    TRIGGERS,
    UNIQUE,
)
from tests.conftest import Db, run, throwaway_role
from verification.checklists import Break, breaks

# Checks a one-statement break cannot reach (an open session), and the test that breaks them.
BROKEN_ELSEWHERE = {
    HELD: "tests/test_judges_meaning.py::test_a_session_left_holding_the_tables_fails_naming_it",
}


def probe(name: str) -> str:
    return f"test_changes::{name}"


def recreate_fk(table: str, name: str, tail: str) -> str:
    return (
        f"ALTER TABLE {table} DROP CONSTRAINT {name};"
        f" ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (stock_code) REFERENCES stocks (code) {tail};"
    )


def recreate_index(name: str, definition: str) -> str:
    return f"DROP INDEX {name}; CREATE INDEX {name} ON {definition};"


PRIORITY_FUNCTION = (
    "CREATE OR REPLACE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN IF NEW.priority > 1 THEN NEW.priority := 1; END IF; RETURN NEW; END $$;"
)

UPGRADED = [
    # -- tables, columns, comments ---------------------------------------------------------
    Break(
        "table missing",
        "DROP TABLE product_info;",
        (TABLES,),
        "table product_info: expected 'logged', found nothing",
    ),
    Break(
        "a view on a new table: a rollback could not drop it",
        "CREATE VIEW product_names AS SELECT stock_code, prdt_name FROM product_info;",
        (BLOCKERS,),
        "found view product_names (on table product_info): a rollback would refuse to start",
    ),
    Break(
        "a table inheriting a new table: a rollback could not drop it",
        "CREATE TABLE financial_ratios_archive () INHERITS (financial_ratios);",
        (BLOCKERS,),
        "table financial_ratios_archive (on table financial_ratios)",
    ),
    Break(
        "varchar(8) where varchar(6) is due",
        "ALTER TABLE financial_ratios ALTER COLUMN stac_yymm TYPE varchar(8);",
        (TABLES,),
        "column financial_ratios.stac_yymm: expected 'character varying(6) not null', "
        "found 'character varying(8) not null'",
    ),
    Break(
        "column nullable",
        "ALTER TABLE product_info ALTER COLUMN stock_code DROP NOT NULL;",
        (TABLES,),
        "column product_info.stock_code: expected 'character varying(10) not null', found 'character varying(10) null'",
    ),
    Break(
        "column default missing",
        "ALTER TABLE financial_ratios ALTER COLUMN div_cls_code DROP DEFAULT;",
        (TABLES,),
        "found 'character varying(1) not null'",
    ),
    Break(
        "column missing",
        "ALTER TABLE financial_ratios DROP COLUMN rsrv_rate;",
        (TABLES,),
        "column financial_ratios.rsrv_rate: expected 'double precision null', found nothing (absent)",
    ),
    Break(
        "column extra",
        "ALTER TABLE product_info ADD COLUMN listed boolean;",
        (TABLES,),
        "column product_info.listed: expected nothing (no migration declares it), found 'boolean null'",
    ),
    Break(
        "stocks column loses NOT NULL",
        "ALTER TABLE stocks ALTER COLUMN name DROP NOT NULL;",
        (TABLES,),
        "column stocks.name: expected 'character varying(100) not null', found 'character varying(100) null'",
    ),
    Break(
        "new table UNLOGGED",
        "ALTER TABLE financial_ratios SET UNLOGGED;",
        (TABLES,),
        "table financial_ratios: expected 'logged', found 'unlogged'",
    ),
    Break(
        "row-level security enabled with no policy",
        "ALTER TABLE product_info ENABLE ROW LEVEL SECURITY;",
        (TABLES,),
        "table product_info: expected 'logged', found 'logged, row security enabled'",
    ),
    Break(
        "correct-looking copies in the verifying role's own schema",
        "CREATE SCHEMA postgres; CREATE TABLE postgres.product_info (LIKE public.product_info INCLUDING ALL);"
        " ALTER TABLE public.product_info DROP COLUMN prdt_name;",
        (TABLES, SHADOWED),
        "column product_info.prdt_name: expected 'character varying(120) null', found nothing",
    ),
    # -- keys and constraints ----------------------------------------------------------------
    Break(
        "primary key missing",
        "ALTER TABLE product_info DROP CONSTRAINT product_info_pkey;",
        (UNIQUE,),
        "primary key product_info: expected 'PRIMARY KEY (id)', found nothing",
    ),
    Break(
        "backup table without primary key",
        "ALTER TABLE stocks_priority_backup DROP CONSTRAINT stocks_priority_backup_pkey;",
        (UNIQUE,),
        "primary key stocks_priority_backup: expected 'PRIMARY KEY (code)', found nothing",
    ),
    Break(
        "UNIQUE on the wrong columns",
        "ALTER TABLE financial_ratios DROP CONSTRAINT uq_financial_ratios;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT uq_financial_ratios UNIQUE (stock_code, stac_yymm);",
        (UNIQUE, probe("test_quarterly_ratio_beside_yearly_is_accepted")),
        "found 'UNIQUE (stock_code, stac_yymm)'",
    ),
    Break(
        "UNIQUE of financial_ratios missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT uq_financial_ratios;",
        (UNIQUE, probe("test_duplicate_financial_ratio_is_rejected")),
        "constraint financial_ratios.uq_financial_ratios: expected 'UNIQUE (stock_code, stac_yymm, div_cls_code)'",
    ),
    Break(
        "UNIQUE missing, duplicates present",
        "ALTER TABLE product_info DROP CONSTRAINT uq_product_info_stock_code;"
        " INSERT INTO product_info (stock_code) VALUES ('005930'), ('005930');",
        (UNIQUE, probe("test_duplicate_product_info_is_rejected")),
        "duplicate groups of product_info (stock_code): ('005930', 2)",
    ),
    Break(
        "UNIQUE made DEFERRABLE (breaks ON CONFLICT upserts)",
        "ALTER TABLE product_info DROP CONSTRAINT uq_product_info_stock_code;"
        " ALTER TABLE product_info ADD CONSTRAINT uq_product_info_stock_code UNIQUE (stock_code) DEFERRABLE;",
        (UNIQUE,),
        "found 'UNIQUE (stock_code) DEFERRABLE'",
    ),
    Break(
        "extra CHECK that rejects valid data",
        "ALTER TABLE financial_ratios ADD CONSTRAINT ck_recent CHECK (stac_yymm > '2030') NOT VALID;",
        (UNIQUE, probe("test_check_accepts_valid_months")),
        "constraint financial_ratios.ck_recent: expected nothing (no migration declares it)",
    ),
    Break(
        "CHECK on the month missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;",
        (UNIQUE, probe("test_check_rejects_bad_months")),
        "constraint financial_ratios.ck_financial_ratios_stac_yymm: expected",
    ),
    Break(
        "CHECK on the month too weak",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_stac_yymm"
        " CHECK (stac_yymm ~ '^[0-9]{6}$');",
        (
            UNIQUE,
            probe("test_check_rejects_bad_months"),
            probe("test_check_rejects_bad_months"),
        ),
        "found accepted",
    ),
    Break(
        "CHECK on the month too strict",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_stac_yymm"
        " CHECK (stac_yymm ~ '^20[0-9]{2}(0[1-9]|1[0-2])$');",
        (UNIQUE, probe("test_check_accepts_valid_months")),
        "stac_yymm '199910' (check violation by ck_financial_ratios_stac_yymm) should be accepted",
    ),
    Break(
        "CHECK on the month that errs where a check violation is due",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm,"
        " ADD CONSTRAINT ck_financial_ratios_stac_yymm CHECK (substr(stac_yymm, 5, 2)::int BETWEEN 1 AND 12"
        " AND stac_yymm ~ '^[0-9]{6}$');",
        (UNIQUE, probe("test_check_rejects_bad_months")),
        "it errs on what the expected CHECK does not (an error is no check violation)",
    ),
    Break(
        "CHECK on the class code missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;",
        (UNIQUE, probe("test_check_rejects_bad_class_codes")),
        "div_cls_code '2' should be rejected",
    ),
    Break(
        "CHECK NOT VALID",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_div_cls_code"
        " CHECK (div_cls_code IN ('0', '1')) NOT VALID;",
        (UNIQUE,),
        '::text[]))) NOT VALID"',
    ),
    # -- foreign keys ------------------------------------------------------------------------
    Break(
        "foreign key missing",
        "ALTER TABLE product_info DROP CONSTRAINT fk_product_stock;",
        (FKS, probe("test_product_info_of_unknown_stock_is_rejected")),
        "constraint product_info.fk_product_stock: expected 'FOREIGN KEY (stock_code) REFERENCES",
    ),
    Break(
        "foreign key of financial_ratios missing",
        "ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;",
        (FKS, probe("test_financial_ratio_of_unknown_stock_is_rejected")),
        "a ratio of a stock not in stocks should be rejected by fk_financial_stock",
    ),
    Break(
        "foreign key without CASCADE",
        recreate_fk("product_info", "fk_product_stock", ""),
        (FKS, probe("test_deleting_a_stock_cascades[product_info]")),
        "found 'FOREIGN KEY (stock_code) REFERENCES public.stocks(code)'",
    ),
    Break(
        "foreign key DEFERRABLE",
        recreate_fk("product_info", "fk_product_stock", "ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED"),
        (FKS,),
        "ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED'",
    ),
    Break(
        "foreign key NOT VALID with an orphan",
        "ALTER TABLE financial_ratios DROP CONSTRAINT fk_financial_stock;"
        " INSERT INTO financial_ratios (stock_code, stac_yymm) VALUES ('999999', '202412');"
        " ALTER TABLE financial_ratios ADD CONSTRAINT fk_financial_stock FOREIGN KEY (stock_code)"
        " REFERENCES stocks (code) ON DELETE CASCADE NOT VALID;",
        (FKS,),
        "stock_code values in financial_ratios missing from stocks: '999999' (1 rows)",
    ),
    Break(
        "foreign key to another table",
        "CREATE TABLE other_codes (code varchar(10) PRIMARY KEY);"
        " INSERT INTO other_codes SELECT code FROM stocks;"
        " ALTER TABLE product_info DROP CONSTRAINT fk_product_stock;"
        " ALTER TABLE product_info ADD CONSTRAINT fk_product_stock FOREIGN KEY (stock_code)"
        " REFERENCES other_codes (code) ON DELETE CASCADE;",
        (FKS,),
        "found 'FOREIGN KEY (stock_code) REFERENCES public.other_codes(code) ON DELETE CASCADE'",
    ),
    Break(
        "extra foreign key on a new table without ON DELETE",
        "ALTER TABLE product_info ADD CONSTRAINT fk_product_stock_again FOREIGN KEY (stock_code)"
        " REFERENCES stocks (code);",
        (FKS,),
        "constraint product_info.fk_product_stock_again: expected nothing",
    ),
    Break(
        "another table's foreign key to stocks dropped",
        "ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey;",
        (FKS,),
        "constraint stock_prices_minute.stock_prices_minute_stock_code_fkey: expected 'FOREIGN KEY",
    ),
    Break(
        "another table's foreign key to stocks turned CASCADE",
        "ALTER TABLE stock_overtime_price DROP CONSTRAINT stock_overtime_price_stock_code_fkey;"
        " ALTER TABLE stock_overtime_price ADD CONSTRAINT stock_overtime_price_stock_code_fkey"
        " FOREIGN KEY (stock_code) REFERENCES stocks (code) ON DELETE CASCADE;",
        (FKS,),
        "found 'FOREIGN KEY (stock_code) REFERENCES public.stocks(code) ON DELETE CASCADE'",
    ),
    # -- indexes -----------------------------------------------------------------------------
    Break(
        "index dropped",
        "DROP INDEX idx_product_info_stock_code;",
        (INDEXES,),
        "index product_info.idx_product_info_stock_code: expected 'USING btree (stock_code)', found nothing",
    ),
    Break(
        "index without DESC",
        recreate_index("idx_financial_ratios_stock_stac", "financial_ratios (stock_code, stac_yymm)"),
        (INDEXES,),
        "expected 'USING btree (stock_code, stac_yymm DESC)', found 'USING btree (stock_code, stac_yymm)'",
    ),
    Break(
        "index columns swapped",
        recreate_index("idx_financial_ratios_stock_stac", "financial_ratios (stac_yymm DESC, stock_code)"),
        (INDEXES,),
        "found 'USING btree (stac_yymm DESC, stock_code)'",
    ),
    Break(
        "index NULLS order",
        recreate_index(
            "idx_financial_ratios_stock_stac", "financial_ratios (stock_code, stac_yymm DESC NULLS LAST)"
        ),
        (INDEXES,),
        "found 'USING btree (stock_code, stac_yymm DESC NULLS LAST)'",
    ),
    Break(
        "index access method",
        recreate_index("idx_product_info_stock_code", "product_info USING hash (stock_code)"),
        (INDEXES,),
        "found 'USING hash (stock_code)'",
    ),
    Break(
        "index partial",
        recreate_index("idx_product_info_stock_code", "product_info (stock_code) WHERE stock_code > '1'"),
        (INDEXES,),
        "found \"USING btree (stock_code) WHERE ((stock_code)::text > '1'::text)\"",
    ),
    Break(
        "index left invalid (a failed CREATE INDEX CONCURRENTLY)",
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_product_info_stock_code'::regclass;",
        (INDEXES,),
        "found 'USING btree (stock_code) (INVALID)'",
    ),
    Break(
        "an index whose expression raises an error refuses rows the table accepts",
        "CREATE INDEX ix_product_info_boom ON product_info ((1 / (length(prdt_name) - 3)));",
        (INDEXES,),
        "index product_info.ix_product_info_boom: expected nothing",
    ),
    Break(
        "an index whose arithmetic overflows on the next ids refuses them",
        "CREATE INDEX ix_stocks_boom ON stocks ((id + 2147483000));",
        (INDEXES,),
        "index stocks.ix_stocks_boom: expected nothing",
    ),
    Break(
        "a login role acting as the application made read-only",
        "DO $$ BEGIN EXECUTE format('GRANT %I TO {role}', (SELECT pg_get_userbyid(relowner) FROM pg_class"
        " WHERE oid = 'stocks'::regclass)); EXECUTE format('ALTER ROLE {role} IN DATABASE %I"
        " SET default_transaction_read_only = on', current_database()); END $$;",
        (DEFAULTS,),
        "setting default_transaction_read_only of role {role} in the database: expected nothing",
    ),
    Break(
        "second unique index on a new table",
        "CREATE UNIQUE INDEX uq_product_info_again ON product_info (stock_code);",
        (INDEXES,),
        "index product_info.uq_product_info_again: expected nothing",
    ),
    Break(
        "stocks' unique index replaced",
        "DROP INDEX ix_stocks_code CASCADE; CREATE UNIQUE INDEX ix_stocks_code ON stocks (lower(code));",
        (INDEXES, FKS),
        "index stocks.ix_stocks_code: expected 'UNIQUE USING btree (code)', found 'UNIQUE USING btree (lower(",
    ),
    # -- sequences ---------------------------------------------------------------------------
    Break(
        "sequence not owned by its column",
        "ALTER SEQUENCE product_info_id_seq OWNED BY NONE;",
        (SEQUENCES,),
        "sequence product_info_id_seq: expected 'integer, owned by product_info.id', found 'integer, owned by nothing'",
    ),
    Break(
        "sequence behind max(id)",
        "INSERT INTO product_info (id, stock_code) VALUES (1000, '005930');",
        (AHEAD,),
        "product_info_id_seq gives 1 next, but product_info.id already holds 1000",
    ),
    # -- priority, triggers, functions ---------------------------------------------------------
    Break(
        "a saved original of 1",
        "UPDATE stocks_priority_backup SET priority = 1 WHERE code = '005930';",
        (SAVED,),
        "a saved original priority is never 1 or NULL",
    ),
    Break(
        "a saved original lost",
        "DELETE FROM stocks_priority_backup WHERE code = '005930';",
        (SAVED,),
        "005930: saved nothing, before the deploy 5",
    ),
    Break(
        "a saved original changed",
        "UPDATE stocks_priority_backup SET priority = 2 WHERE code = '005930';",
        (SAVED,),
        "005930: saved 2, before the deploy 5",
    ),
    Break(
        "priority column dropped",
        "ALTER TABLE stocks DROP COLUMN priority CASCADE;",
        (TABLES,),
        "column stocks.priority: expected 'integer not null default 1', found nothing",
    ),
    Break(
        "priority default not 1",
        "ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT 5;",
        (TABLES,),
        "found 'integer not null default 5'",
    ),
    Break(
        "priority trigger dropped",
        "DROP TRIGGER trigger_stocks_priority_deprecated ON stocks;",
        (TRIGGERS, probe("test_new_stock_gets_priority_1"), probe("test_priority_update_stays_1")),
        "trigger stocks.trigger_stocks_priority_deprecated: expected 'BEFORE INSERT OR UPDATE OF priority",
    ),
    Break(
        "priority trigger disabled",
        "ALTER TABLE stocks DISABLE TRIGGER trigger_stocks_priority_deprecated;",
        (TRIGGERS, probe("test_new_stock_gets_priority_1")),
        "stocks_priority_deprecated() (DISABLED)'",
    ),
    Break(
        "priority trigger set to ENABLE REPLICA",
        "ALTER TABLE stocks ENABLE REPLICA TRIGGER trigger_stocks_priority_deprecated;",
        (TRIGGERS,),
        "(ENABLE REPLICA: fires only in replica sessions)'",
    ),
    Break(
        "priority trigger on UPDATE only",
        "DROP TRIGGER trigger_stocks_priority_deprecated ON stocks;"
        " CREATE TRIGGER trigger_stocks_priority_deprecated BEFORE UPDATE OF priority ON stocks"
        " FOR EACH ROW EXECUTE FUNCTION stocks_priority_deprecated();",
        (TRIGGERS, probe("test_new_stock_gets_priority_1")),
        "found 'BEFORE UPDATE OF priority FOR EACH ROW",
    ),
    # A function body that differs is judged by behaviour (the probes), its text only noted.
    Break(
        "priority pinned only above 1",
        PRIORITY_FUNCTION,
        (probe("test_new_stock_gets_priority_1"), probe("test_priority_update_stays_1")),
        "a new stock should get priority 1 whatever it is sent; sent 0, found 0",
    ),
    Break(
        "priority function no longer keeps the originals the rollback restores",
        "CREATE OR REPLACE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.priority := 1; RETURN NEW; END $$;",
        (probe("test_a_write_before_its_batch_keeps_the_original"),),
        "should save its original (5) for the rollback and leave 1; found priority 1, saved nothing",
    ),
    Break(
        "updated_at trigger also rewrites created_at",
        "CREATE OR REPLACE FUNCTION update_product_info_updated_at() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.updated_at := now(); NEW.created_at := now(); RETURN NEW; END $$;",
        (probe("test_update_moves_updated_at_to_now[product_info]"),),
        "an UPDATE of product_info should change nothing but updated_at; it changed {'created_at'",
    ),
    Break(
        "updated_at trigger dropped",
        "DROP TRIGGER trigger_product_info_updated_at ON product_info;",
        (TRIGGERS, probe("test_update_moves_updated_at_to_now[product_info]")),
        "trigger product_info.trigger_product_info_updated_at: expected 'BEFORE UPDATE",
    ),
    Break(
        "updated_at trigger function does nothing",
        "CREATE OR REPLACE FUNCTION update_financial_ratios_updated_at() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
        (probe("test_update_moves_updated_at_to_now[financial_ratios]"),),
        "an UPDATE of financial_ratios should set updated_at to now (its trigger)",
    ),
    Break(
        "updated_at 9 hours off",
        "CREATE OR REPLACE FUNCTION update_product_info_updated_at() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.updated_at := now() AT TIME ZONE 'UTC'; RETURN NEW; END $$;",
        (probe("test_update_moves_updated_at_to_now[product_info]"),),
        "-32400 s off",
    ),
    Break(
        "trigger function missing",
        "DROP FUNCTION update_product_info_updated_at() CASCADE;",
        (TRIGGERS,),
        "function update_product_info_updated_at(): expected 'returns trigger",
    ),
    Break(
        "database default session_replication_role = replica",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET session_replication_role = replica',"
        " current_database()); END $$;",
        (SETTINGS,),
        "session_replication_role should be origin for every session; this one has replica",
    ),
    Break(
        "priority trigger disabled by editing the catalog",
        "UPDATE pg_trigger SET tgenabled = 'D' WHERE tgname = 'trigger_stocks_priority_deprecated';",
        (TRIGGERS, probe("test_new_stock_gets_priority_1")),
        "stocks_priority_deprecated() (DISABLED)'",
    ),
    Break(
        "triggers no longer loaded although pg_trigger lists them enabled",
        "UPDATE pg_class SET relhastriggers = false WHERE oid = 'stocks'::regclass;",
        (TABLES, probe("test_new_stock_gets_priority_1")),
        "table stocks: expected 'logged', found 'logged, triggers not loaded (relhastriggers off): none fires'",
    ),
    Break(
        "an event trigger left behind that refuses the next deployment's DDL",
        "CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'frozen';"
        " END $$; CREATE EVENT TRIGGER no_ddl ON ddl_command_start EXECUTE FUNCTION no_ddl();",
        (TRIGGERS,),
        "event trigger no_ddl: expected nothing (no migration declares it), found 'ON ddl_command_start",
    ),
    # -- the catalog's word contradicted by the rows -------------------------------------------
    Break(
        "a CHECK marked valid while a row breaks it",
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;"
        " INSERT INTO financial_ratios (stock_code, stac_yymm, div_cls_code) VALUES ('005930', '202412', '7');"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_div_cls_code"
        " CHECK (div_cls_code IN ('0', '1')) NOT VALID;"
        " UPDATE pg_constraint SET convalidated = true WHERE conname = 'ck_financial_ratios_div_cls_code';",
        (CLAIMS,),
        "financial_ratios: 1 row breaks what the catalog says (ck_financial_ratios_div_cls_code is validated)",
    ),
    Break(
        "a column marked NOT NULL while a row holds NULL",
        "ALTER TABLE stocks ALTER COLUMN name DROP NOT NULL; UPDATE stocks SET name = NULL WHERE code = '000660';"
        " UPDATE pg_attribute SET attnotnull = true WHERE attrelid = 'stocks'::regclass AND attname = 'name';",
        (CLAIMS,),
        "stocks: 1 row breaks what the catalog says (name is NOT NULL)",
    ),
    Break(
        "another table's foreign key to stocks marked valid over an orphan",
        "ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey;"
        " INSERT INTO stock_prices_minute (stock_code, ts, price, volume) VALUES ('999999', now(), 1, 1);"
        " ALTER TABLE stock_prices_minute ADD CONSTRAINT stock_prices_minute_stock_code_fkey"
        " FOREIGN KEY (stock_code) REFERENCES stocks (code) NOT VALID;"
        " UPDATE pg_constraint SET convalidated = true WHERE conname = 'stock_prices_minute_stock_code_fkey';",
        (CLAIMS,),
        "stock_prices_minute_stock_code_fkey is validated: every stock_code is in stocks",
    ),
    Break(
        "a new table's rows repeat under a unique key the catalog claims",
        "ALTER TABLE product_info DROP CONSTRAINT uq_product_info_stock_code;"
        " INSERT INTO product_info (stock_code) VALUES ('005930'), ('005930');"
        " CREATE INDEX uq_product_info_stock_code ON product_info (stock_code);"
        " UPDATE pg_index SET indisunique = true WHERE indexrelid = 'uq_product_info_stock_code'::regclass;",
        (CLAIMS, INDEXES),
        "product_info: 1 key value repeated although the catalog says uq_product_info_stock_code is unique",
    ),
    # -- ownership and settings -----------------------------------------------------------------
    Break(
        "stocks handed to another role",
        "ALTER TABLE stocks OWNER TO {role};",
        (OWNERS,),
        "owner stocks: expected 'postgres', found '{role}'",
    ),
    Break(
        "the new tables and functions owned by another role than the application's",
        "ALTER TABLE product_info OWNER TO {role}; ALTER TABLE financial_ratios OWNER TO {role};"
        " ALTER FUNCTION stocks_priority_deprecated() OWNER TO {role};",
        (OWNERS,),
        "owner financial_ratios: expected 'postgres', found '{role}'",
    ),
    Break(
        "a privilege the application held revoked",
        "REVOKE INSERT ON product_info FROM CURRENT_USER;",
        (OWNERS,),
        "grants on product_info: expected 'owner: all', found 'owner: DELETE, REFERENCES, SELECT, TRIGGER,"
        " TRUNCATE, UPDATE'",
    ),
    Break(
        "the database closed to the application's connections",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT 0', current_database()); END $$;",
        (DEFAULTS,),
        "setting CONNECTION LIMIT of the database: expected nothing (not set before the deployment), found '0'",
    ),
    Break(
        "floats read with fewer digits than stored (extra_float_digits below 1)",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = -15', current_database()); END $$;",
        (DEFAULTS,),
        "setting extra_float_digits of the database: expected nothing (not set before the deployment), found '-15'",
    ),
    Break(
        "no room for temporary files: sorts and hashes of real tables fail",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET temp_file_limit = 0', current_database()); END $$;",
        (DEFAULTS,),
        "setting temp_file_limit of the database: expected nothing (not set before the deployment), found '0'",
    ),
    Break(
        "now() in public, before pg_catalog on the application's path: updated_at frozen",
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT timestamptz '2000-01-01'$$;",
        (LOOKALIKES,),
        "public should hold no function or operator named like PostgreSQL's own; found public.now()",
    ),
    Break(
        "a database search_path without public: the application finds none of its tables",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = audit', current_database()); END $$;",
        (DEFAULTS,),
        "setting search_path of the database: expected nothing (not set before the deployment), found 'audit'",
    ),
    Break(
        "database left read-only",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on',"
        " current_database()); END $$;",
        (DEFAULTS, probe("test_new_stock_gets_priority_1")),
        "setting default_transaction_read_only of the database: expected nothing (not set before the"
        " deployment), found 'on'",
    ),
    Break(
        "the kit's own batch flag left on for the application's role in this database",
        "DO $$ BEGIN EXECUTE format('ALTER ROLE postgres IN DATABASE %I SET azak.priority_batch = on',"
        " current_database()); END $$;",
        (DEFAULTS,),
        "setting azak.priority_batch of role postgres in the database: expected nothing",
    ),
    # -- rows lost ----------------------------------------------------------------------------
    Break(
        "stocks truncated with CASCADE and reloaded: the price history went with it",
        "CREATE TABLE stocks_copy AS SELECT * FROM stocks; TRUNCATE stocks CASCADE;"
        " INSERT INTO stocks SELECT * FROM stocks_copy; DROP TABLE stocks_copy;",
        (ROWS_LOST,),
        "stock_overtime_price has 0 rows, 20 before the deployment (100% lost)",
    ),
    # -- ledger ------------------------------------------------------------------------------
    Break(
        "ledger row missing",
        "DELETE FROM azak_registry.ledger WHERE name = 'deprecate_priority_column';",
        (LEDGER,),
        "'deprecate_priority_column': 'applied'}",
    ),
    Break(
        "ledger row interrupted",
        "UPDATE azak_registry.ledger SET state = 'applying' WHERE name = 'deprecate_priority_column';",
        (LEDGER,),
        "'deprecate_priority_column': 'applying'}",
    ),
    Break(
        "ledger checksum edited: the next downgrade refuses to run",
        "UPDATE azak_registry.ledger SET checksum = repeat('0', 64) WHERE name = 'add_product_info_table';",
        (CHECKSUMS,),
        "the ledger's checksum of add_product_info_table should be the migration's own, found another",
    ),
]

# Breaks of a rolled-back database: US-001 left behind in part, or an original priority lost.
ROLLED_BACK = [
    Break(
        "table left behind",
        "CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(10));",
        (TABLES,),
        "table product_info: expected nothing (absent), found 'logged'",
    ),
    Break(
        "backup table left behind",
        "CREATE TABLE stocks_priority_backup (code varchar(10));",
        (TABLES,),
        "table stocks_priority_backup: expected nothing (absent)",
    ),
    Break(
        "an earlier kit's ledger table left behind in public",
        "CREATE TABLE schema_migrations (name text PRIMARY KEY, state text);"
        " INSERT INTO schema_migrations VALUES ('add_product_info_table', 'applied');",
        (TABLES,),
        "table schema_migrations: expected nothing (absent)",
    ),
    Break(
        "ledger still records a migration",
        "INSERT INTO azak_registry.ledger (name, checksum, state, applied_by)"
        " VALUES ('add_product_info_table', 'x', 'applied', 'someone');",
        (LEDGER,),
        "found {'add_product_info_table': 'applied'}",
    ),
    Break(
        "sequence left behind",
        "CREATE SEQUENCE product_info_id_seq;",
        (SEQUENCES,),
        "sequence product_info_id_seq: expected nothing (absent), found 'bigint, owned by nothing'",
    ),
    Break(
        "function left behind",
        "CREATE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.priority := 1; RETURN NEW; END $$;",
        (TRIGGERS,),
        "function stocks_priority_deprecated(): expected nothing (absent)",
    ),
    Break(
        "renamed copy of the priority trigger still pinning writes",
        "CREATE FUNCTION pin_priority() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.priority := 1; RETURN NEW; END $$;"
        " CREATE TRIGGER pin_priority BEFORE INSERT ON stocks FOR EACH ROW EXECUTE FUNCTION pin_priority();",
        (TRIGGERS,),
        "trigger stocks.pin_priority: expected nothing (no migration declares it)",
    ),
    Break(
        "priority default left at 1",
        "ALTER TABLE stocks ALTER COLUMN priority SET DEFAULT 1;",
        (TABLES,),
        "column stocks.priority: expected 'integer not null', found 'integer not null default 1'",
    ),
    Break(
        "stocks truncated with CASCADE and reloaded after the rollback",
        "CREATE TABLE stocks_copy AS SELECT * FROM stocks; TRUNCATE stocks CASCADE;"
        " INSERT INTO stocks SELECT * FROM stocks_copy; DROP TABLE stocks_copy;",
        (ROWS_LOST,),
        "stock_prices_minute has 0 rows, 100 before the deployment (100% lost)",
    ),
    Break(
        "a leftover setting of the rollback",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = 1', current_database()); END $$;",
        (DEFAULTS,),
        "setting statement_timeout of the database: expected nothing (not set before the deployment), found '1'",
    ),
    Break(
        "an original priority lost (1 is within 1..5)",
        "UPDATE stocks SET priority = 1 WHERE code = '005930';",
        (AS_BEFORE,),
        "005930: 1, before the deploy 5",
    ),
]


@pytest.fixture
def rolled_back_db(app_db: Db) -> Db:
    """Deployed by the runner (its before-image kept) and rolled back completely."""
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    return app_db


def assert_caught(db: Db, broken: Break, *args: str) -> None:
    if "{role}" not in broken.sql:
        return caught(db, broken, broken.sql, broken.says, *args)
    with throwaway_role(db, "azak_other", teardown="REASSIGN OWNED BY {role} TO CURRENT_USER;") as role:
        caught(db, broken, broken.sql.replace("{role}", role), broken.says.replace("{role}", role), *args)


def caught(db: Db, broken: Break, statement: str, says: str, *args: str) -> None:
    db.execute(statement)
    result = db.verify(*args)
    out = result.output[-4000:]
    assert result.returncode == 1, f"the verification run should fail; it exited {result.returncode}\n{out}"
    missed = [check for check in broken.fails if check not in result.failed]
    assert not missed, f"{broken.id}: these checks should fail but did not: {missed}\n{out}"
    assert says in result.output, f"the failure should say {says!r}\n{out}"


@pytest.mark.parametrize("broken", UPGRADED, ids=[b.id for b in UPGRADED])
def test_upgraded_check_catches(deployed_db: Db, broken: Break) -> None:
    assert_caught(deployed_db, broken)


@pytest.mark.parametrize("broken", ROLLED_BACK, ids=[b.id for b in ROLLED_BACK])
def test_rolled_back_check_catches(rolled_back_db: Db, broken: Break) -> None:
    assert_caught(rolled_back_db, broken, "--to=base")


CHANGES_OWN = breaks()  # each change's checklist says how to break its own checks (BREAKS)


@pytest.mark.skipif(not CHANGES_OWN, reason="no change of the chain declares BREAKS")
@pytest.mark.parametrize("broken", CHANGES_OWN, ids=[b.id for b in CHANGES_OWN])
def test_a_changes_own_check_catches(head_db: Db, broken: Break) -> None:
    """A break a change's checklist declares, applied at the chain's head: its checks fail."""
    assert_caught(head_db, broken)


def test_before_image_without_a_catalog_fails(deployed_db: Db, tmp_path) -> None:
    from migrations import image
    from migrations.dburl import dbname

    empty = image.BeforeImage(database=dbname(deployed_db.url), taken_at="", catalog={})
    image.write(empty, lambda out: None, tmp_path)
    path = empty.path
    result = deployed_db.verify(f"--before={path}")
    assert IMAGE in result.failed, result.output[-3000:]
    assert "holds no catalog" in result.output


def test_correct_deployment_passes(deployed_db: Db) -> None:
    result = deployed_db.verify()
    assert result.returncode == 0, result.output[-4000:]
    assert not result.failed
    assert {TABLES, IMAGE, SAVED, ALL_ONE} <= result.passed


def test_correct_rollback_passes(rolled_back_db: Db) -> None:
    result = rolled_back_db.verify("--expect=rolled-back")
    assert result.returncode == 0, result.output[-4000:]
    assert {TABLES, TRIGGERS, AS_BEFORE, LEDGER} <= result.passed


HARMLESS = {
    "maintenance": "REINDEX TABLE product_info; CLUSTER stocks USING stocks_pkey; ANALYZE;",
    "unrelated tables and schemas": "CREATE TABLE app_news (id serial PRIMARY KEY, title text);"
    " CREATE SCHEMA analytics; CREATE TABLE analytics.daily (d date);"
    " CREATE FUNCTION app_helper() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    "grants": "GRANT SELECT ON product_info, financial_ratios TO PUBLIC;",
    "a publication of the new tables": "CREATE PUBLICATION azak_cdc FOR TABLE product_info, financial_ratios;",
    "renamed primary key": "ALTER TABLE stocks RENAME CONSTRAINT stocks_pkey TO stocks_pk;",
    "column order": "ALTER TABLE product_info DROP COLUMN frst_erlm_dt;"
    " ALTER TABLE product_info ADD COLUMN frst_erlm_dt varchar(8);",
    "tuning index on another table": "CREATE INDEX ix_stocks_sector ON stocks (sector);"
    " CREATE INDEX ix_minute_ts ON stock_prices_minute (ts DESC);"
    " CREATE INDEX ix_product_info_name ON product_info (lower(prdt_name)) WHERE prdt_name > '';"
    " CREATE INDEX ix_product_info_day ON product_info (date_trunc('day', created_at));",
    "session settings": "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET TimeZone = ''Asia/Seoul''', "
    "current_database()); EXECUTE format('ALTER DATABASE %I SET DateStyle = ''SQL, DMY''', current_database());"
    " EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = ''serializable''',"
    " current_database()); END $$;",
    "the application keeps writing": "INSERT INTO stocks (code, name, priority, is_active, created_at,"
    " updated_at) VALUES ('999990', 'new listing', 5, true, now(), now());"
    " UPDATE stocks SET name = name || ' (updated)', per = 1.5 WHERE code < '100100';"
    " UPDATE stocks SET priority = 4 WHERE code = '000660';"
    " INSERT INTO product_info (stock_code) VALUES ('005930');"
    " INSERT INTO financial_ratios (stock_code, stac_yymm) VALUES ('005930', '202412');"
    " SELECT nextval('stocks_id_seq'), nextval('product_info_id_seq');",
}


@pytest.mark.parametrize("change", HARMLESS.values(), ids=HARMLESS.keys())
def test_harmless_difference_passes(deployed_db: Db, change: str) -> None:
    if change.startswith("REINDEX"):
        run_outside_transaction(deployed_db.url, "VACUUM")
    deployed_db.execute(change)
    result = deployed_db.verify()
    assert result.returncode == 0, result.output[-4000:]
    assert {TABLES, INDEXES, FKS, UNIQUE, TRIGGERS, SAVED, IMAGE} <= result.passed, "judged, not skipped"


def test_a_difference_allowed_by_name_passes_and_is_shown(deployed_db: Db) -> None:
    deployed_db.execute("ALTER TABLE product_info ADD COLUMN note text;")
    result = deployed_db.verify("--allow=column product_info.note")
    assert result.returncode == 0, result.output[-4000:]
    assert "allowed: column product_info.note: expected nothing" in result.output


@pytest.fixture
def read_only_role(deployed_db: Db) -> Iterator[str]:
    """A role with CONNECT and SELECT only (on public and the kit's registry), as production
    verifiers often get."""
    grants = (
        f"GRANT CONNECT ON DATABASE {deployed_db.url.database} TO {{role}};"
        " GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        " GRANT USAGE ON SCHEMA azak_registry TO {role};"
        " GRANT SELECT ON ALL TABLES IN SCHEMA azak_registry TO {role};"
    )
    with throwaway_role(deployed_db, "azak_ro", grants) as role:
        yield role


def test_read_only_role_verifies_a_correct_deployment(deployed_db: Db, read_only_role: str) -> None:
    reader = deployed_db.at(deployed_db.url.set(username=read_only_role))
    result = reader.verify()
    assert result.returncode == 0, result.output[-4000:]
    assert "the verifying role may not write: behaviour probes not run" in result.output
    assert {TABLES, INDEXES, FKS, SAVED} <= result.passed


def test_read_only_role_still_catches_a_broken_deployment(deployed_db: Db, read_only_role: str) -> None:
    deployed_db.execute("ALTER TABLE stocks ENABLE REPLICA TRIGGER trigger_stocks_priority_deprecated;")
    result = deployed_db.at(deployed_db.url.set(username=read_only_role)).verify()
    assert result.returncode == 1 and TRIGGERS in result.failed, result.output[-4000:]


def collected_checks() -> set[str]:
    """Every check of the suite, as `file::test` (parameters dropped), at every state."""
    checks: set[str] = set()
    for state in ("--to=head", "--to=base"):
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
                state,
            ]
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr
        checks |= {
            line.split("/", 1)[1].replace(".py", "").split("[")[0]
            for line in listed.stdout.splitlines()
            if line.startswith("verification/test_")
        }
    return checks


def test_every_check_is_broken_by_some_case() -> None:
    """No verification check goes without a case above (or in test_operations_checks and
    test_app_models) that makes it fail; and every case names what the failure says."""
    cases = UPGRADED + ROLLED_BACK + CHANGES_OWN
    broken = {c.split("[")[0] for b in cases for c in b.fails} | {IMAGE, *BROKEN_ELSEWHERE}
    broken |= {HEALTH, LOG, RECENT, RESTORABLE, APP_MODELS}
    broken |= {ACCESS}  # tests/test_hardened_verifier_role.py
    assert collected_checks() - broken == set(), (
        f"checks no test breaks: {sorted(collected_checks() - broken)} (a change's own checks: its"
        " checklist's BREAKS, verification/checklists.py)"
    )
    assert all(b.says for b in cases)


def test_an_image_file_serves_where_the_kit_did_not_deploy(app_db: Db, tmp_path) -> None:
    """Deployed by hand (the plan's SQL through psql): the registry holds the ledger but no
    image of its own; the file `python -m migrations image` wrote before is the yardstick,
    named by --before."""
    images = tmp_path / "images"
    written = app_db.cli("image", "--dir", str(images))
    assert written.returncode == 0, written.stderr
    (kept,) = images.glob("azak_image_*.json.gz")
    script = app_db.cli("plan").stdout
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", app_db.text_url.replace("+psycopg2", "")]
    done = subprocess.run(psql, input=script, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    without = app_db.verify()
    assert IMAGE in without.failed and "no before-image in azak_registry" in without.output, without.output[
        -3000:
    ]
    passed = app_db.verify(f"--before={kept}")
    assert passed.returncode == 0, passed.output[-3000:]
    app_db.execute("ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey")
    caught = app_db.verify(f"--before={kept}")
    assert FKS in caught.failed, caught.output[-3000:]
