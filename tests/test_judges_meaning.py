"""Verification judges what a difference does, not how it reads: a difference that changes
nothing the application can do, no rollback and no next deployment passes, shown as noted in
the terminal, the HTML report and the record; what the catalog's word hides (owners, rows,
settings, behaviour) fails.

Each harmless case is applied to a correct deployment (or rollback) and must pass with the
difference noted, its checklist groups judged (passed, not skipped). The misses that need more
than one statement (a role owning the application's tables, a read-only verifier, an old
before-image) are here too; the one-statement misses are Break cases of
test_catches_broken_deployments.py.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from migrations import image
from tests.checks import (
    CLAIMS,
    DEFAULTS,
    FKS,
    HELD,
    INDEXES,
    OWNERS,
    ROWS_LOST,
    TABLES,
    TRIGGERS,
    UNIQUE,
)
from tests.conftest import Db, ok, throwaway_role
from tests.helpers import holding

DATABASE = "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET {}', current_database()); END $$;"
PRIORITY_BODY = """
CREATE OR REPLACE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql AS $body$
begin
    /* keep what the rollback restores */
    if tg_op = 'UPDATE' and old.priority is distinct from 1
       and current_setting('azak.priority_batch', true) is distinct from 'on' then
        insert into public.stocks_priority_backup (code, priority) values (old.code, old.priority)
        on conflict (code) do nothing;
    end if;
    new.priority = 1;
    return new;
end;
$body$;
"""

# id → (SQL on a correct deployment, what the noted line must say)
NOTED = {
    "comments in Korean with a trailing newline, on every kind of object": (
        "COMMENT ON TABLE product_info IS E'상품 기본 정보\\n'; COMMENT ON COLUMN stocks.name IS E'종목 이름\\n';"
        " COMMENT ON COLUMN financial_ratios.grs IS '매출 성장률';"
        " COMMENT ON INDEX idx_product_info_stock_code IS '종목 코드'; COMMENT ON TRIGGER"
        " trigger_product_info_updated_at ON product_info IS '수정 시각'; COMMENT ON CONSTRAINT fk_product_stock"
        " ON product_info IS '종목'; COMMENT ON FUNCTION stocks_priority_deprecated() IS '우선순위 고정';",
        "noted: comment on product_info: expected 'KIS API product basic info: one row per stock (US-001)',"
        " found '상품 기본 정보\\n' (a comment is documentation",
    ),
    "the contract's own comments removed or reworded": (
        "COMMENT ON TABLE financial_ratios IS NULL;"
        " COMMENT ON COLUMN stocks.priority IS '크롤링 우선순위 (1~5, 낮을수록 우선)';",
        "noted: comment on stocks.priority: expected 'DEPRECATED (US-001)",
    ),
    "index storage parameters": (
        "ALTER INDEX idx_financial_ratios_stock_stac SET (fillfactor = 70);"
        " ALTER INDEX idx_product_info_stock_code SET (deduplicate_items = off);"
        " ALTER INDEX ix_stocks_code SET (fillfactor = 80);",
        "found 'USING btree (stock_code) WITH (deduplicate_items=off)' (storage parameters",
    ),
    "a tuning index on a table a migration created": (
        "CREATE INDEX ix_ratios_yymm ON financial_ratios (stac_yymm);",
        "noted: index financial_ratios.ix_ratios_yymm: expected nothing (no migration declares it), found"
        " 'USING btree (stac_yymm)' (a plain index (tuning)",
    ),
    "another feature's trigger, disabled, on a table no migration touches": (
        "CREATE FUNCTION audit_overtime() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
        " CREATE TRIGGER audit_overtime BEFORE INSERT ON stock_overtime_price FOR EACH ROW"
        " EXECUTE FUNCTION audit_overtime(); ALTER TABLE stock_overtime_price DISABLE TRIGGER audit_overtime;",
        "(DISABLED)' (a disabled trigger never fires)",
    ),
    "MATCH FULL on a one-column NOT NULL foreign key": (
        "ALTER TABLE product_info DROP CONSTRAINT fk_product_stock, ADD CONSTRAINT fk_product_stock"
        " FOREIGN KEY (stock_code) REFERENCES stocks (code) MATCH FULL ON DELETE CASCADE;",
        "MATCH FULL ON DELETE CASCADE' (MATCH FULL on NOT NULL columns accepts the same rows)",
    ),
    "triggers switched to ENABLE ALWAYS, other tables' foreign key triggers too": (
        "ALTER TABLE stocks ENABLE ALWAYS TRIGGER trigger_stocks_priority_deprecated;"
        " DO $$ DECLARE t record; BEGIN FOR t IN SELECT tgname, tgrelid::regclass AS rel FROM pg_trigger"
        " WHERE tgconstraint IN (SELECT oid FROM pg_constraint WHERE contype = 'f'"
        " AND conrelid IN ('stock_prices_minute'::regclass, 'financial_ratios'::regclass)) LOOP"
        " EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname); END LOOP; END $$;",
        "(ENABLE ALWAYS)' (ENABLE ALWAYS fires in every session (replica ones too), never fewer)",
    ),
    "trigger functions hardened with SET search_path = pg_catalog, public": (
        "ALTER FUNCTION update_product_info_updated_at() SET search_path = pg_catalog, public;"
        " ALTER FUNCTION stocks_priority_deprecated() SET search_path = pg_catalog, public, pg_temp;",
        "set search_path=pg_catalog, public: BEGIN NEW.updated_at := now(); RETURN NEW; END' (pinned to"
        " search_path pg_catalog, public (hardened))",
    ),
    "trigger bodies spelled differently": (
        "CREATE OR REPLACE FUNCTION update_financial_ratios_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$"
        "\nBEGIN\n  -- keep it current\n  NEW.updated_at = localtimestamp;\n  RETURN NEW;\nEND;\n$$;"
        + PRIORITY_BODY,
        "(the body is spelled differently; judged by behaviour: the probes"
        " test_changes::test_update_moves_updated_at_to_now[financial_ratios] decide)",
    ),
    "CHECKs spelled differently": (
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_stac_yymm,"
        " ADD CONSTRAINT ck_financial_ratios_stac_yymm CHECK (stac_yymm ~ '^\\d{4}(0[1-9]|1[0-2])$'),"
        " DROP CONSTRAINT ck_financial_ratios_div_cls_code, ADD CONSTRAINT ck_financial_ratios_div_cls_code"
        " CHECK (div_cls_code = '0' OR div_cls_code = '1');",
        "(the CHECK is spelled differently; judged by behaviour: the same verdict on",
    ),
    "privileges given, a policy while row security is off, a disabled rule": (
        "GRANT SELECT ON product_info, stocks TO PUBLIC; CREATE POLICY only_mine ON stock_prices_minute"
        " USING (false); CREATE RULE keep_overtime AS ON DELETE TO stock_overtime_price DO INSTEAD NOTHING;"
        " ALTER TABLE stock_overtime_price DISABLE RULE keep_overtime;",
        "noted: grants on stocks: expected 'owner: all', found 'PUBLIC: SELECT; owner: all' (privileges given",
    ),
    "a default spelled differently that gives the same value": (
        "ALTER TABLE product_info ALTER COLUMN created_at SET DEFAULT CURRENT_TIMESTAMP;"
        " ALTER TABLE financial_ratios ALTER COLUMN updated_at SET DEFAULT LOCALTIMESTAMP;"
        " ALTER TABLE stocks ALTER COLUMN sector SET DEFAULT NULL;",
        "found 'timestamp without time zone not null default CURRENT_TIMESTAMP' (a default spelled differently",
    ),
    "trigger functions pinned to an empty search_path, judged by their probes": (
        "ALTER FUNCTION update_financial_ratios_updated_at() SET search_path = '';",
        "(pinned to search_path empty; judged by behaviour: the probes",
    ),
    "a redundant CHECK that refuses nothing the table accepts anyway": (
        "ALTER TABLE financial_ratios ADD CONSTRAINT ck_six CHECK (length(stac_yymm) = 6);",
        "noted: constraint financial_ratios.ck_six: expected nothing (no migration declares it), found",
    ),
    "database settings that only shape how values are shown or plans made": (
        DATABASE.format("DateStyle = ''SQL, DMY''")
        + DATABASE.format("work_mem = ''64MB''")
        + DATABASE.format("client_min_messages = warning"),
        "noted: setting DateStyle of the database: expected nothing (not set before the deployment), found 'SQL, DMY'",
    ),
}
JUDGED = {TABLES, INDEXES, FKS, UNIQUE, TRIGGERS, OWNERS, DEFAULTS, CLAIMS, ROWS_LOST}


@pytest.mark.parametrize("change", NOTED.values(), ids=NOTED.keys())
def test_harmless_difference_passes_and_is_noted(
    deployed_db: Db, change: tuple[str, str], tmp_path: Path
) -> None:
    """Passes, every group judged; the difference is in the terminal, the report and the record."""
    statement, says = change
    deployed_db.execute(statement)
    report, record = tmp_path / "report.html", tmp_path / "record.md"
    result = deployed_db.verify(f"--html={report}", "--self-contained-html", f"--record={record}")
    assert result.returncode == 0, result.output[-4000:]
    assert result.passed >= JUDGED, f"judged, not skipped: {sorted(JUDGED - result.passed)}"
    assert says in result.output, f"the terminal should note {says!r}:\n{result.output[-3000:]}"
    assert "us001-notes" in report.read_text() and "noted " in record.read_text()


def test_comment_left_by_the_rollback_is_noted(app_db: Db) -> None:
    """A rollback that left the priority's DEPRECATED comment: documentation, noted."""
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    app_db.execute("COMMENT ON COLUMN stocks.priority IS 'DEPRECATED';")
    result = app_db.verify("--to=base")
    assert result.returncode == 0, result.output[-4000:]
    assert (
        "noted: comment on stocks.priority: expected '크롤링 우선순위 (1~5, 낮을수록 우선)'" in result.output
    )


def test_the_applications_own_deletes_pass_and_the_threshold_is_the_operators(deployed_db: Db) -> None:
    """Deleting rows is the application's right: 40 of 100 price rows gone passes; 60 gone is
    more than the default half and fails, naming the table; --max-row-loss=0.7 allows it."""
    deployed_db.execute(
        "DELETE FROM stock_prices_minute WHERE id IN (SELECT id FROM stock_prices_minute LIMIT 40)"
    )
    assert deployed_db.verify().returncode == 0
    deployed_db.execute(
        "DELETE FROM stock_prices_minute WHERE id IN (SELECT id FROM stock_prices_minute LIMIT 20)"
    )
    lost = deployed_db.verify()
    assert ROWS_LOST in lost.failed, lost.output[-3000:]
    assert "stock_prices_minute has 40 rows, 100 before the deployment (60% lost)" in lost.output
    allowed = deployed_db.verify("--max-row-loss=0.7")
    assert allowed.returncode == 0 and ROWS_LOST in allowed.passed, allowed.output[-3000:]


def test_bad_max_row_loss_is_one_usage_line(deployed_db: Db) -> None:
    result = deployed_db.verify("--max-row-loss=2")
    assert result.returncode == 4 and "--max-row-loss" in result.output, result.output[-2000:]
    assert "Traceback" not in result.output


def test_an_image_older_than_owners_settings_and_row_counts_is_noted_not_failed(
    app_db: Db, tmp_path: Path
) -> None:
    """An image kept by an earlier kit has no owners, settings or row counts: those checks say
    so (not checked, noted), and the rest judges as before."""
    ok(app_db.cli("image", "--dir", str(tmp_path)))
    (kept,) = tmp_path.glob("*.json.gz")
    older = tmp_path / "older.json.gz"
    with (
        gzip.open(kept, "rt", encoding="utf-8") as source,
        gzip.open(older, "wt", encoding="utf-8") as out,
    ):
        head = json.loads(source.readline())
        head["catalog"] = [fact for fact in head["catalog"] if fact[0] not in image.LATER_KINDS]
        del head["kinds"], head["row_counts"]
        out.write(json.dumps(head, ensure_ascii=False) + "\n")
        out.writelines(source)
    result = app_db.verify("--to=base", f"--before={older}")
    assert result.returncode == 0, result.output[-4000:]
    assert "noted: owners not checked: the before-image predates them" in result.output
    assert "not checked: the before-image has no row counts" in result.output


@pytest.fixture
def application_role(app_db: Db) -> Iterator[str]:
    """The application's own role owns its tables and may create in public, as in production
    (where a DBA deploys)."""
    setup = "GRANT CREATE ON SCHEMA public TO {role};"
    with throwaway_role(app_db, "azak_app", setup, "REVOKE CREATE ON SCHEMA public FROM {role};") as role:
        app_db.execute(
            f"ALTER TABLE stocks OWNER TO {role}; ALTER TABLE stock_prices_minute OWNER TO {role};"
            f" ALTER TABLE stock_overtime_price OWNER TO {role};"
        )
        yield role


def test_a_dbas_deployment_leaves_the_new_objects_the_applications(app_db: Db, application_role: str) -> None:
    """The DBA (a superuser) deploys: what the migrations create is owned like stocks, the
    ledger says who deployed, and the deployment and its rollback verify."""
    ok(app_db.cli("upgrade"))
    owners = app_db.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relname IN ('product_info', 'financial_ratios', 'stocks_priority_backup')"
    )
    assert owners == [(application_role,)], owners
    assert app_db.value("SELECT bool_and(applied_by LIKE '% as postgres') FROM azak_registry.ledger")
    result = app_db.verify()
    assert result.returncode == 0 and OWNERS in result.passed, result.output[-3000:]
    ok(app_db.cli("downgrade", "--to", "base"))
    assert app_db.verify("--to=base").returncode == 0


def test_a_restore_without_owners_fails_on_ownership(app_db: Db, application_role: str) -> None:
    """After a rollback, a restore without owners (pg_restore --no-owner as the DBA) leaves
    every table the DBA's: the application may no longer ALTER, VACUUM or TRUNCATE them."""
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    assert app_db.verify("--to=base").returncode == 0
    app_db.execute(f"REASSIGN OWNED BY {application_role} TO postgres")
    result = app_db.verify("--to=base")
    assert OWNERS in result.failed, result.output[-3000:]
    assert f"owner stocks: expected '{application_role}', found 'postgres'" in result.output


def test_a_body_difference_fails_where_its_probes_cannot_run(deployed_db: Db) -> None:
    """A read-only verifier cannot run the probes that judge a respelled trigger body: the
    text is then all there is, and a difference fails."""
    deployed_db.execute(
        "CREATE OR REPLACE FUNCTION update_product_info_updated_at() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN NEW.updated_at := now() - interval '1 day'; RETURN NEW; END $$;"
    )
    grants = (
        f"GRANT CONNECT ON DATABASE {deployed_db.url.database} TO {{role}};"
        " GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    )
    with throwaway_role(deployed_db, "azak_ro", grants) as role:
        result = deployed_db.at(deployed_db.url.set(username=role)).verify()
    assert TRIGGERS in result.failed, result.output[-3000:]
    assert "the verifying role may not write: its behaviour probes cannot run" in result.output


def test_a_session_left_holding_the_tables_fails_naming_it(deployed_db: Db) -> None:
    """A DBA's session left idle in its transaction with a lock that blocks the application's
    writes: every table is right, and yet the application cannot write."""
    with holding(deployed_db, "LOCK TABLE product_info IN SHARE MODE") as pid:
        result = deployed_db.verify()
    assert HELD in result.failed, result.output[-3000:]
    assert f"pid {pid} (postgres, idle in transaction since" in result.output
    assert "holds ShareLock on product_info" in result.output


def test_a_reader_role_given_access_since_is_noted_not_failed(deployed_db: Db) -> None:
    """A reporting role granted SELECT on stocks after the deployment, with its own settings: its
    settings shape its own sessions only (noted), the application's roles are as before."""
    setup = "GRANT SELECT ON stocks TO {role}; ALTER ROLE {role} SET statement_timeout = '30s'"
    with throwaway_role(deployed_db, "azak_reader", setup, "REVOKE ALL ON stocks FROM {role};") as role:
        result = deployed_db.verify()
    assert result.returncode == 0, result.output[-4000:]
    assert DEFAULTS in result.passed
    assert f"setting statement_timeout of role {role}" in result.output
    assert "a role given access since" in result.output


def test_a_body_that_hides_code_between_line_comments_is_not_the_same_spelling() -> None:
    """`-- /*` and `-- */` are line comments: the code between them runs. The catalog gives a body
    on one line, so where a `--` comment ends is lost: a body with one is read with its comments
    as code (judged by its probes), never as the same spelling; without one, `/* */` (nested)
    comments and spacing are spelling only."""
    from migrations.meaning import body_form

    expected = "BEGIN NEW.updated_at := now(); RETURN NEW; END;"
    for hidden in (
        "BEGIN\n-- /*\nIF TG_OP = 'UPDATE' THEN RETURN NEW; END IF;\n-- */\nNEW.updated_at := now(); RETURN NEW; END;",
        "BEGIN -- /* IF TG_OP = 'UPDATE' THEN RETURN NEW; END IF; -- */ NEW.updated_at := now(); RETURN NEW; END;",
        "BEGIN -- touch NEW.updated_at = now(); RETURN NEW; END;",  # as the catalog gives it: one line
    ):
        assert body_form(hidden) != body_form(expected), hidden
    assert body_form("BEGIN /* a /* nested */ note */ NEW.updated_at = now();\n RETURN NEW; END") == (
        body_form(expected)
    )


@pytest.mark.parametrize(
    ("name", "value", "fails"),
    [
        ("extra_float_digits", "0.4", True),  # PostgreSQL rounds it to 0: floats lose digits
        ("extra_float_digits", "+0", True),
        ("extra_float_digits", "3", False),
        ("temp_file_limit", "0.5GB", True),  # sorts and hashes of real tables fail
        ("temp_file_limit", "536870912B", True),
        ("temp_file_limit", "10GB", False),
        ("temp_file_limit", "-1", False),
    ],
)
def test_limiting_settings_are_read_as_postgresql_reads_them(name: str, value: str, fails: bool) -> None:
    from migrations.meaning import limits

    assert limits(name, value) is fails


def test_a_reporting_role_that_only_reads_has_its_own_settings(app_db: Db) -> None:
    """A role granted SELECT before the deployment, later made read-only with a short timeout:
    its settings shape its own reads (noted); the application's roles are as before."""
    setup = "GRANT SELECT ON stocks TO {role};"
    with throwaway_role(app_db, "azak_report", setup, "REVOKE ALL ON stocks FROM {role};") as role:
        ok(app_db.cli("upgrade"))
        app_db.execute(
            f"ALTER ROLE {role} SET default_transaction_read_only = on; ALTER ROLE {role} SET statement_timeout = '5s'"
        )
        result = replace(app_db, to=None).verify()
    assert result.returncode == 0, result.output[-4000:]
    assert "a role that may only read the application's tables" in result.output
