"""The runbook's commands keep working, through the runner, so the ledger stays true."""

import sys

from migrations.changes import CHAIN
from migrations.steps import chain, load_all
from tests.conftest import Db, run


def runbook_modules() -> list[str]:
    """Each migration as a runbook names it: `migrations.<name>` for the chain's changes (their
    folders are on the package's path), its own dotted path for a change only tried at the head."""
    return [
        f"migrations.{module.rpartition('.')[2]}" if module.rpartition(".")[0] in CHAIN else module
        for module in chain()
    ]


def test_runbook_scripts_deploy_and_roll_back(app_db: Db) -> None:
    before = app_db.snapshot()
    env = {"DATABASE_URL": app_db.text_url}
    for module in runbook_modules():
        done = app_db.cli(module=module, url=False, env=env)
        assert done.returncode == 0, done.stderr
    applied = app_db.value("SELECT count(*) FROM azak_registry.ledger WHERE state = 'applied'")
    assert applied == len(load_all())
    for module in reversed(runbook_modules()):
        code = f"from {module} import downgrade; downgrade()"
        done = run([sys.executable, "-c", code], env=env)
        assert done.returncode == 0, done.stderr
    assert app_db.snapshot().differences(before) == []


def test_runbook_postgres_variables_are_understood(app_db: Db) -> None:
    url = app_db.url
    env = {
        "DATABASE_URL": "",
        "POSTGRES_HOST": url.host,
        "POSTGRES_PORT": str(url.port),
        "POSTGRES_USER": url.username,
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_DB": url.database,
    }
    done = app_db.cli("upgrade", url=False, env=env)
    assert done.returncode == 0, done.stderr
    assert app_db.value("SELECT count(*) FROM azak_registry.ledger") == len(load_all())


def test_script_downgrade_form_rolls_back_one_step(deployed_db: Db) -> None:
    done = deployed_db.cli("downgrade", module="migrations.deprecate_priority_column")
    assert done.returncode == 0, done.stderr
    names = [r[0] for r in deployed_db.execute("SELECT name FROM azak_registry.ledger ORDER BY name")]
    assert names == ["add_financial_ratios_table", "add_product_info_table"]


def test_step_out_of_order_is_refused(app_db: Db) -> None:
    done = app_db.cli(module="migrations.add_financial_ratios_table")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: apply add_product_info_table before add_financial_ratios_table"
