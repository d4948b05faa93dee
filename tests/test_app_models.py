"""The application's own models against the deployed schema (`--app-models`), on throwaway
databases: the fixture models under tests/app are written as the application writes them.

`backend.db.models:Base` are the models after US-001; `backend.db.stocks:Base` those of before.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.checks import APP_MODELS
from tests.conftest import US001_HEAD, Db

AFTER = ("--app-models=backend.db.models:Base", "--app-path=tests/app")
BEFORE = ("--app-models=backend.db.stocks:Base", "--app-path=tests/app")


def imported(output: str, module: str) -> bool:
    """Whether `python -X importtime` output shows `module` (or a submodule) imported."""
    return re.search(rf"\|\s+{re.escape(module)}(\.\w+)*\s*$", output, re.MULTILINE) is not None


def test_models_match_an_upgraded_database_with_notes_only(deployed_db: Db, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = deployed_db.verify(*AFTER, f"--html={report}", "--self-contained-html")
    assert result.returncode == 0, result.output[-4000:]
    assert APP_MODELS in result.passed
    for note in (
        "application models, noted: tables beyond the models: 1 (stocks_priority_backup)",
        "application models, noted: index spellings: 1 (financial_ratios.ix_financial_ratios_latest as"
        " idx_financial_ratios_stock_stac)",
        "application models, noted: comments that differ: 8 (financial_ratios, stocks.created_at,",
        "application models, noted: server defaults the models do not declare, or declare otherwise: 1"
        " (stocks.priority)",
    ):
        assert note in result.output, result.output[-4000:]
        assert html.escape(note) in report.read_text(), "the HTML report shows the notes too"
    assert re.search(r"^  application models +passed \(1 check\)$", result.output, re.MULTILINE)
    assert "held before the deployment" not in result.output


def test_models_of_before_match_a_rolled_back_database_and_those_of_after_do_not(app_db: Db) -> None:
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    before = app_db.verify("--to=base", *BEFORE)
    assert before.returncode == 0 and APP_MODELS in before.passed, before.output[-4000:]
    assert "application models, noted: comments that differ" in before.output
    after = app_db.verify("--to=base", *AFTER)
    assert after.returncode == 1 and APP_MODELS in after.failed, after.output[-4000:]
    assert "model ProductInfo: table product_info; database: no such table" in after.output
    assert "model FinancialRatio: table financial_ratios; database: no such table" in after.output


BROKEN = {
    "a missing column": (
        "ALTER TABLE product_info DROP COLUMN prdt_name;",
        "model ProductInfo.prdt_name: String(120) NULL; database: no such column",
    ),
    "a varchar(20) where the model says 10": (
        "ALTER TABLE financial_ratios ALTER COLUMN stock_code TYPE varchar(20);",
        "model FinancialRatio.stock_code: String(10) NOT NULL; database: character varying(20) NOT NULL"
        " (length longer in the database: it takes values the model rules out)",
    ),
    "a nullable column where the model says NOT NULL": (
        "ALTER TABLE product_info ALTER COLUMN stock_code DROP NOT NULL;",
        "model ProductInfo.stock_code: String(10) NOT NULL; database: character varying(10) NULL"
        " (NULL allowed where the model requires a value",
    ),
    "a missing unique constraint": (
        "ALTER TABLE financial_ratios DROP CONSTRAINT uq_financial_ratios;",
        "model FinancialRatio: UNIQUE (stock_code, stac_yymm, div_cls_code) uq_financial_ratios;"
        " database: no unique key on those columns (the application's upserts fail)",
    ),
    "a missing primary key": (
        "ALTER TABLE product_info DROP CONSTRAINT product_info_pkey;",
        "model ProductInfo: PRIMARY KEY (id); database: no primary or unique key on those columns",
    ),
    "a shorter varchar on the application's own table": (
        "ALTER TABLE stocks ALTER COLUMN sector TYPE varchar(50);",
        "model Stock.sector: String(100) NULL; database: character varying(50) NULL"
        " (length shorter in the database: the application's writes fail)",
    ),
    "a server default the model leaves the value to, dropped": (
        "ALTER TABLE financial_ratios ALTER COLUMN div_cls_code DROP DEFAULT;",
        "model FinancialRatio.div_cls_code: String(1) NOT NULL; database: character varying(1) NOT NULL"
        " (no default in the database, which the model leaves the value to: inserts fail)",
    ),
    "a NOT NULL column the model does not map": (
        "ALTER TABLE product_info ADD COLUMN listing_market varchar(20) NOT NULL DEFAULT 'KOSPI';"
        " ALTER TABLE product_info ALTER COLUMN listing_market DROP DEFAULT;",
        "database product_info.listing_market: character varying(20) NOT NULL, no default; model"
        " ProductInfo does not map it: the application's inserts fail",
    ),
}


def test_broken_deployment_fails_naming_each_disagreement(deployed_db: Db) -> None:
    deployed_db.execute(" ".join(sql for sql, _ in BROKEN.values()))
    result = deployed_db.verify(*AFTER)
    assert result.returncode == 1 and APP_MODELS in result.failed, result.output[-4000:]
    failures = result.output.split("= FAILURES =", 1)[-1].split("short test summary info", 1)[0]
    missed = [case for case, (_, says) in BROKEN.items() if says not in failures]
    assert not missed, f"not named as failures: {missed}\n{result.output[-6000:]}"
    assert "held before the deployment" not in result.output


def test_a_disagreement_that_held_before_the_deployment_is_the_applications(app_db: Db) -> None:
    app_db.execute("ALTER TABLE stocks ALTER COLUMN sector TYPE varchar(50);")  # before: the application's
    with app_db.runner() as runner:
        runner.upgrade(to=US001_HEAD)  # the models are the application's after US-001
    app_db = replace(app_db, to=US001_HEAD)
    passing = app_db.verify(*AFTER)
    assert passing.returncode == 0 and APP_MODELS in passing.passed, passing.output[-4000:]
    line = (
        "application models: 1 disagreement(s) held before the deployment, the application's, not the"
        " deployment's: model Stock.sector: String(100) NULL; database: character varying(50) NULL"
    )
    assert line in passing.output
    assert re.search(
        r"^  \d\. The application's models disagreed with the database before", passing.output, re.M
    )
    app_db.execute("ALTER TABLE stocks ALTER COLUMN per TYPE real;")  # made after: the deployment's
    failing = app_db.verify(*AFTER)
    assert failing.returncode == 1 and APP_MODELS in failing.failed, failing.output[-4000:]
    assert "model Stock.per: Float NULL; database: real NULL" in failing.output
    assert line in failing.output


def test_without_the_option_the_check_is_skipped_and_sqlalchemy_never_imported(
    deployed_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # python -X importtime, in the subprocess
    without = deployed_db.verify("-s")  # -s: pytest's capture would swallow what conftest imports
    assert without.returncode == 0, without.output[-4000:]
    assert re.search(r"^  application models +not checked: --app-models not given$", without.output, re.M)
    assert imported(without.output, "psycopg2") and not imported(without.output, "sqlalchemy")
    given = deployed_db.verify("-s", *AFTER)
    assert given.returncode == 0 and APP_MODELS in given.passed, given.output[-4000:]
    assert imported(given.output, "sqlalchemy") and imported(given.output, "alembic")
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3 (installed beside pytest-postgresql): the
    # engine goes through the kit's psycopg2 connection, so the psycopg package is never loaded
    assert not imported(given.output, "psycopg")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--app-models=backend.nothing", "--app-path=tests/app"),
            "--app-models backend.nothing: cannot"
            " import it (ModuleNotFoundError: No module named 'backend.nothing')",
        ),
        (("--app-models=backend.db", "--app-path=tests/app"), "--app-models backend.db: holds no models"),
        (
            ("--app-models=backend.db.models:Nope", "--app-path=tests/app"),
            "--app-models backend.db.models:Nope: backend.db.models has no Nope",
        ),
        (
            ("--app-models=backend.db.models:Base", "--app-path=tests/nowhere"),
            "--app-path tests/nowhere: no such directory",
        ),
        (("--app-models=backend.db.models:Base",), "--app-models backend.db.models:Base: cannot import it"),
    ],
    ids=["cannot be imported", "holds no models", "no such attribute", "no such directory", "no --app-path"],
)
def test_models_that_cannot_be_loaded_are_one_line(deployed_db: Db, args: tuple[str, ...], says: str) -> None:
    result = deployed_db.verify(*args)
    assert result.returncode == 4, result.output[-4000:]
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"ERROR: {lines[0].removeprefix('ERROR: ')}"] and says in lines[0], result.output[-4000:]
    assert "Traceback" not in result.output


def test_an_import_error_quoting_the_url_never_shows_the_password(deployed_db: Db) -> None:
    secret = "s3cret-app-models"
    result = deployed_db.at(deployed_db.url.set(password=secret)).verify(
        "--app-models=backend.db.unconfigured", "--app-path=tests/app"
    )
    assert result.returncode == 4, result.output[-4000:]
    assert "cannot import it (RuntimeError: cannot use the database postgresql+psycopg2://postgres:***@" in (
        result.output
    )
    assert secret not in result.output
