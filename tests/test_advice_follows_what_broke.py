"""The report's "what to do now" follows what broke and which migration owns it, and its
first step does what it says: break a copy one way, verify, run the first step's commands
exactly as printed (its last command is the verification that must now pass).

- a fact a migration owns that needs no data (index, trigger, function, NOT VALID; a comment is
  only noted now, never failed):
  that migration's own statement first, then the rollback of that migration;
- data: the rollback of the migration that wrote it; saved values a rollback would spread,
  and damage the kit cannot place: the restore;
- a database not yet deployed: the upgrade, or `--to base`; no before-image: how to get one;
- an interrupted ledger: the same command again.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrations.steps import load_all
from tests.conftest import ROOT, US001_HEAD, Db, run_verification, throwaway_role


@dataclass
class Advised:
    """One step of "what to do now": its sentence and its commands, as printed."""

    text: str
    commands: list[str] = field(default_factory=list)


# How the advice names US-001's head as a target: `head` while it is the chain's last migration.
US001_TARGET = "head" if load_all()[-1].name == US001_HEAD else US001_HEAD
UPGRADE_TO = "" if US001_TARGET == "head" else f" --to {US001_HEAD}"


def complete(command: str) -> bool:
    """Whether a command's lines so far make a whole shell command."""
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # a quote still open: a statement of several lines
        return False
    return True


def what_to_do(output: str) -> list[Advised]:
    """The terminal's "what to do now", each command with the terminal's indent taken off."""
    lines = output.splitlines()
    steps: list[Advised] = []
    for line in lines[lines.index("what to do now:") + 1 :]:
        numbered = re.match(r"  \d+\. (.*)", line)
        if numbered:
            steps.append(Advised(numbered[1]))
        elif line.startswith(" " * 7) and steps:
            commands = steps[-1].commands
            if commands and not complete(commands[-1]):
                commands[-1] += "\n" + line[7:]
            else:
                commands.append(line[7:])
        else:
            break
    assert steps, output[-3000:]
    return steps


def run_step(step: Advised) -> str:
    """Run a step's commands in order as a shell would; each must succeed."""
    said = ""
    for command in step.commands:
        assert "***" not in command, "the throwaway databases have no password"
        done = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
        )
        said += done.stdout + done.stderr
        assert done.returncode == 0, f"{command}\n-> exit {done.returncode}\n{said[-3000:]}"
    return said


def advice(db: Db, *args: str) -> list[Advised]:
    """Verify `db` (it must fail) and read what to do."""
    result = db.verify(*args)
    assert result.returncode == 1, result.output[-3000:]
    return what_to_do(result.output)


# -- facts a migration owns, repaired with its own statement ------------------------------------

# A trigger function whose body differs is judged by its probes (issue 22): the probe that fails
# names no catalog fact, so the advice offers the owning migration's rollback, not its statement
# (test_the_rollback_offered_next_is_of_the_migration_that_owns_the_fact covers that path).
REPAIRS = {
    "index dropped": (
        "DROP INDEX idx_product_info_stock_code;",
        ["CREATE INDEX idx_product_info_stock_code ON product_info (stock_code);"],
    ),
    "index left invalid": (
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_product_info_stock_code'::regclass;",
        ['DROP INDEX public."idx_product_info_stock_code";', "CREATE INDEX idx_product_info_stock_code"],
    ),
    "index without DESC": (
        "DROP INDEX idx_financial_ratios_stock_stac;"
        " CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm);",
        ["CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm DESC);"],
    ),
    "priority trigger dropped": (
        "DROP TRIGGER trigger_stocks_priority_deprecated ON stocks;",
        ["CREATE TRIGGER trigger_stocks_priority_deprecated"],
    ),
    "priority trigger set to ENABLE REPLICA": (
        "ALTER TABLE stocks ENABLE REPLICA TRIGGER trigger_stocks_priority_deprecated;",
        [
            'DROP TRIGGER IF EXISTS "trigger_stocks_priority_deprecated" ON public."stocks";',
            "CREATE TRIGGER trigger_stocks_priority_deprecated",
        ],
    ),
    "trigger function dropped with its trigger": (
        "DROP FUNCTION update_product_info_updated_at() CASCADE;",
        [
            "CREATE FUNCTION update_product_info_updated_at()",
            "CREATE TRIGGER trigger_product_info_updated_at",
        ],
    ),
    "updated_at function that does nothing (its body left to its probes, which fail)": (
        "CREATE OR REPLACE FUNCTION update_product_info_updated_at() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
        ["CREATE OR REPLACE FUNCTION update_product_info_updated_at()", "NEW.updated_at := now();"],
    ),
    "CHECK left NOT VALID": (
        "ALTER TABLE financial_ratios DROP CONSTRAINT ck_financial_ratios_div_cls_code;"
        " ALTER TABLE financial_ratios ADD CONSTRAINT ck_financial_ratios_div_cls_code"
        " CHECK (div_cls_code IN ('0', '1')) NOT VALID;",
        ['VALIDATE CONSTRAINT "ck_financial_ratios_div_cls_code"'],
    ),
}


@pytest.mark.parametrize(("damage", "statements"), REPAIRS.values(), ids=REPAIRS.keys())
def test_a_fact_a_migration_owns_is_repaired_first_with_its_own_statement(
    deployed_db: Db, damage: str, statements: list[str]
) -> None:
    deployed_db.execute(damage)
    steps = advice(deployed_db)
    first = steps[0]
    assert first.text.startswith("Repair ") and "no data is touched" in first.text, first
    repair = first.commands[0]
    assert repair.startswith("psql ") and " -1 " in repair, repair
    positions = [repair.index(s) for s in statements]  # each there, in the migration's order
    assert positions == sorted(positions), repair
    assert f"-m verification --to {US001_TARGET}" in first.commands[-1]
    assert steps[1].text.startswith("If that fails, roll back "), steps[1]
    run_step(first)  # the statement, then the verification: it passes


def test_the_rollback_offered_next_is_of_the_migration_that_owns_the_fact(deployed_db: Db) -> None:
    deployed_db.execute("DROP INDEX idx_financial_ratios_stock_stac")
    second = advice(deployed_db)[1]
    assert second.text.startswith(
        "If that fails, roll back add_financial_ratios_table (and deprecate_priority_column after it)"
    ), second
    assert "index financial_ratios.idx_financial_ratios_stock_stac" in second.text
    assert "-m migrations downgrade --to add_product_info_table" in second.commands[0]
    said = run_step(second)  # the rollback, then the verification of the state before it
    assert "rolled back 2 migration(s) (deprecate_priority_column, add_financial_ratios_table)" in said


# -- data ------------------------------------------------------------------------------------------


def test_a_priority_not_1_is_rolled_back_by_the_migration_that_wrote_it(deployed_db: Db) -> None:
    deployed_db.execute(
        "ALTER TABLE stocks DISABLE TRIGGER trigger_stocks_priority_deprecated;"
        " UPDATE stocks SET priority = 4 WHERE code = (SELECT min(code) FROM stocks_priority_backup);"
        " ALTER TABLE stocks ENABLE TRIGGER trigger_stocks_priority_deprecated;"
    )
    steps = advice(deployed_db)
    first = steps[0]
    assert (
        first.text == "Roll back deprecate_priority_column (failed: test_changes::test_every_priority_is_1):"
    )
    assert "-m migrations downgrade --to add_financial_ratios_table" in first.commands[0]
    assert steps[1].text.startswith("Or restore the newest backup")
    run_step(first)  # every saved original back; verified at add_financial_ratios_table


def test_saved_originals_that_differ_are_restored_not_rolled_back(app_db: Db, tmp_path: Path) -> None:
    """A rollback would give the wrong saved values back: only the backup has them right."""
    backups = tmp_path / "backups"
    assert app_db.cli("backup", "--dir", str(backups)).returncode == 0
    assert app_db.cli("upgrade").returncode == 0
    app_db.execute(
        "UPDATE stocks_priority_backup SET priority = priority + 1"
        " WHERE code = (SELECT min(code) FROM stocks_priority_backup)"
    )
    steps = advice(app_db, f"--backup-dir={backups}")
    first = steps[0]
    assert first.text.startswith("Only the backup has test_changes::test_saved_priorities_are_the_originals")
    assert "-m migrations restore " in first.commands[0] and str(backups) in first.commands[0]
    assert not any("downgrade" in c for step in steps for c in step.commands), steps
    run_step(first)  # restored, then verified as before the deployment


def test_damage_the_kit_cannot_place_is_restored(deployed_db: Db) -> None:
    deployed_db.execute("ALTER TABLE stock_prices_minute DROP CONSTRAINT stock_prices_minute_stock_code_fkey")
    first = advice(deployed_db)[0]
    assert first.text.startswith(
        "Only the backup has constraint stock_prices_minute.stock_prices_minute_stock_code_fkey, which no"
        " migration made"
    ), first
    assert "-m migrations restore " in first.commands[0] and "--to base" in first.commands[1]


# -- the ledger and the yardstick ------------------------------------------------------------------


def test_a_database_not_yet_deployed_is_told_to_upgrade(app_db: Db) -> None:
    steps = advice(app_db)
    first = steps[0]
    assert first.text.startswith("This database is not deployed: the ledger records no migration")
    assert "-m migrations upgrade --db-url" in first.commands[0], first
    assert steps[1].text.startswith("Or, if it should be as before the deployment")
    assert any("--to base" in c for c in steps[1].commands)
    run_step(first)  # upgraded, then verified at head


def test_a_database_not_yet_deployed_can_be_verified_at_base_as_advised(app_db: Db, tmp_path: Path) -> None:
    """Its second step, `--to base`: with no before-image yet (the first upgrade keeps one), a
    backup, then what the migrations declare."""
    backups = tmp_path / "backups"
    second = advice(app_db, f"--backup-dir={backups}")[1]
    assert f"-m migrations backup --dir {backups}" in second.commands[0], second
    assert "--to base" in second.commands[-1] and f"--backup-dir={backups}" in second.commands[-1]
    run_step(second)


def test_a_missing_before_image_says_how_to_get_one(deployed_db: Db) -> None:
    deployed_db.execute("DELETE FROM azak_registry.rewrite_values; DELETE FROM azak_registry.images")
    first = advice(deployed_db)[0]
    assert first.text.startswith("No before-image of the database"), first
    assert "--before FILE" in first.text and "migrations adopt" in first.text
    assert "--before=none" in first.commands[0]
    run_step(first)


def test_an_interrupted_migration_is_finished_by_the_same_command(deployed_db: Db) -> None:
    deployed_db.execute(
        "UPDATE azak_registry.ledger SET state = 'applying' WHERE name = 'deprecate_priority_column'"
    )
    first = advice(deployed_db)[0]
    assert first.text.startswith("deprecate_priority_column was interrupted (applying)"), first
    assert f"-m migrations upgrade{UPGRADE_TO} --db-url" in first.commands[0]
    run_step(first)


def test_an_interrupted_rollback_is_finished_by_the_same_command(deployed_db: Db) -> None:
    deployed_db.execute(
        "UPDATE azak_registry.ledger SET state = 'reverting' WHERE name = 'deprecate_priority_column'"
    )
    first = advice(deployed_db)[0]
    assert first.text.startswith("deprecate_priority_column was interrupted (reverting)"), first
    assert "-m migrations downgrade --to add_financial_ratios_table" in first.commands[0]
    run_step(first)  # every original priority back; verified at add_financial_ratios_table


def test_an_upgrade_that_stopped_short_is_finished(app_db: Db) -> None:
    with app_db.runner() as runner:
        runner.upgrade("add_product_info_table")
    first = advice(app_db)[0]
    assert first.text == "The ledger stops at add_product_info_table (head expected): finish the upgrade:"
    run_step(first)


def test_a_missing_backup_is_taken_before_anything_else(deployed_db: Db, tmp_path: Path) -> None:
    deployed_db.execute("DROP INDEX idx_product_info_stock_code")
    steps = advice(deployed_db, f"--backup-dir={tmp_path}")
    assert steps[0].text.startswith(f"No usable recent backup in {tmp_path}: take one"), steps[0]
    assert steps[1].text.startswith("Repair index product_info.idx_product_info_stock_code")
    run_step(steps[0])
    after = advice(deployed_db, f"--backup-dir={tmp_path}")  # the backup now counts: the repair is first
    assert after[0].text.startswith("Repair index product_info.idx_product_info_stock_code"), after[0]
    assert str(tmp_path / "azak_backup_") in after[2].commands[0]  # the restore names the new backup


def test_a_rollback_that_stopped_short_is_finished(deployed_db: Db) -> None:
    first = advice(deployed_db, "--to=add_financial_ratios_table")[0]
    assert first.text.startswith(
        "The ledger still records deprecate_priority_column after add_financial_ratios_table"
    ), first
    run_step(first)


def test_a_passing_run_has_nothing_to_do(deployed_db: Db) -> None:
    result = deployed_db.verify()
    assert result.returncode == 0, result.output[-3000:]
    steps = what_to_do(result.output)
    assert steps[0].text == f"Nothing to do: the database is as the migrations require (at {US001_HEAD})."
    assert "-m migrations downgrade --to base" in steps[1].commands[0]


def test_a_role_that_owns_nothing_is_not_told_the_deployment_is_absent(deployed_db: Db) -> None:
    """A role that may not read the ledger is told so: the advice never reads an unreadable
    ledger as empty, nor offers to roll back or restore a correct deployment."""

    with throwaway_role(deployed_db, "azak_none") as name:
        done = run_verification(deployed_db.url.set(username=name))
    said = done.stdout + done.stderr
    assert "permission denied" in said
    assert "may not read the ledger" in said and "nothing to roll back" not in said, said[-1200:]
