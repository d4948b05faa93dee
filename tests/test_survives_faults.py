"""The runner's promises under attack: kill -9, races, held locks, drift, concurrent writers.

Kill points are chosen deterministically through the runner's test hook (AZAK_FAULT_AT /
AZAK_PAUSE_AT), never by sleeping and hoping.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from migrations import catalog, contract
from migrations.steps import load_all
from tests.conftest import ROOT, Db, ledger, ok, throwaway_role
from tests.helpers import BATCH, a_clone, catalog_image, fault_points, holding, paused, refused
from tests.lock_witness import VERIFICATION_LOCKS, locks_seen

UP_KILLS, DOWN_KILLS = fault_points("up"), fault_points("down")


def assert_killed_between_states(db: Db, start: catalog.Image, point: str, direction: str) -> None:
    """After a kill at `point`: the ledger records a prefix of the chain, the killed migration
    at most marked unfinished (applying / reverting), nothing else; unless it is unfinished,
    the catalog is exactly the state the recorded prefix's contracts fold to from `start`."""
    chain, entries = load_all(), ledger(db)
    names = [m.name for m in chain]
    applied = [n for n in names if entries.get(n) == "applied"]
    unfinished = [n for n in names if entries.get(n, "applied") != "applied"]
    assert applied == names[: len(applied)] and set(entries) == {*applied, *unfinished}, entries
    killed = point.split(":")[1]
    at = len(applied) if direction == "up" or unfinished else len(applied) - 1  # the killed one's place
    assert names.index(killed) == at, (point, entries)
    if unfinished:
        assert unfinished == [killed], (point, entries)
        return
    expected = contract.fold([m.contract for m in chain[: len(applied)]], start)
    assert catalog.differences(expected, catalog_image(db)) == [], point


@pytest.mark.parametrize("point", UP_KILLS)
def test_upgrade_killed_anywhere_resumes_and_rolls_back_losslessly(app_db: Db, point: str) -> None:
    """A kill at any hook point of any migration of the chain leaves a state the ledger names;
    the next upgrade resumes to a verified head, and the rollback to base loses nothing."""
    before, start = app_db.snapshot(), catalog_image(app_db)
    killed = app_db.cli("upgrade", *BATCH, env={"AZAK_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"never reached {point}: " + killed.stdout + killed.stderr
    assert_killed_between_states(app_db, start, point, "up")
    with app_db.runner() as runner:
        runner.upgrade()  # resumes
        assert app_db.verify().returncode == 0
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


@pytest.mark.parametrize("point", DOWN_KILLS)
def test_downgrade_killed_anywhere_finishes_losslessly(head_db: Db, app_db: Db, point: str) -> None:
    """A kill at any hook point of any migration's rollback leaves a state the ledger names;
    the next downgrade finishes at base, verified rolled back, with every row as before."""
    original, start = app_db.snapshot(), catalog_image(app_db)  # the same rows before the chain
    killed = head_db.cli("downgrade", "--to", "base", *BATCH, env={"AZAK_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"never reached {point}: " + killed.stdout + killed.stderr
    assert_killed_between_states(head_db, start, point, "down")
    with head_db.runner() as runner:
        runner.downgrade("base")  # finishes
    assert head_db.verify("--expect=rolled-back").returncode == 0
    assert head_db.snapshot().differences(original) == []


@pytest.mark.parametrize("second", [("upgrade",), ("downgrade", "--to", "base")])
def test_concurrent_run_waits_then_stops_and_nothing_runs_twice(app_db: Db, second: tuple[str, ...]) -> None:
    with paused(app_db, "upgrade", *BATCH, at="after-batch:deprecate_priority_column:1") as first:
        other = app_db.cli(*second, "--lock-wait", "1")
    assert first.returncode == 0
    assert other.returncode == 1
    assert other.stderr.startswith("error: another deployment is running on")
    assert f"azak-db-migrations:{first.pid} from 127.0.0.1)" in other.stderr
    assert "waited 1s; nothing was changed" in other.stderr
    assert ledger(app_db) == dict.fromkeys((m.name for m in load_all()), "applied")
    assert app_db.verify().returncode == 0


LOCKERS = {
    "idle transaction that updated a row": "UPDATE stocks SET name = name WHERE code = '005930'",
    "ACCESS EXCLUSIVE": "LOCK TABLE stocks IN ACCESS EXCLUSIVE MODE",
}


@pytest.mark.parametrize("statement", LOCKERS.values(), ids=LOCKERS.keys())
def test_upgrade_gives_up_on_a_held_lock_naming_the_holder(app_db: Db, statement: str) -> None:
    before = app_db.snapshot()
    with holding(app_db, statement) as pid:
        done = app_db.cli("upgrade", "--lock-timeout", "200", "--retries", "2")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: add_product_info_table: no lock within 200 ms, 2 tries; held by stocks")
    assert f"by pid {pid}" in line
    assert line.endswith("nothing of this step was changed")
    assert app_db.snapshot().differences(before) == []


def test_verification_on_a_locked_database_ends_instead_of_hanging(deployed_db: Db) -> None:
    with holding(deployed_db, LOCKERS["ACCESS EXCLUSIVE"]):
        result = deployed_db.verify("--lock-timeout=100", timeout=120)  # hanging: subprocess raises
    assert result.returncode == 1
    assert "lock timeout" in result.output
    assert "test_changes::test_every_priority_is_1" in result.failed


# -- drift ----------------------------------------------------------------------------------


def test_migration_changed_after_it_was_applied_is_refused(deployed_db: Db, tmp_path: Path) -> None:
    kit = a_clone(tmp_path / "kit")  # a checkout in which someone edits an applied migration
    (first,) = [m for m in load_all() if m.name == "add_product_info_table"]
    edited = kit / first.path.relative_to(ROOT)
    edited.write_text(edited.read_text().replace("varchar(120)", "varchar(200)"))
    env = {**os.environ, "PYTHONPATH": str(kit)}

    def kit_cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "migrations", *args, "--db-url", deployed_db.text_url]
        return subprocess.run(
            argv, cwd=kit, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    before = deployed_db.snapshot()
    done = kit_cli("upgrade")
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(
        "error: refusing to upgrade: add_product_info_table (add_product_info_table.py changed since"
    )
    assert deployed_db.snapshot().differences(before) == []
    assert re.search(r"^ *add_product_info_table +changed-since-applied", kit_cli("status").stdout, re.M)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            "ALTER TABLE product_info ADD COLUMN note text",
            "add_product_info_table: column product_info.note: not in the contracts, found 'text null'",
        ),
        (
            "ALTER TABLE product_info DROP COLUMN frst_erlm_dt",
            "add_product_info_table: column product_info.frst_erlm_dt: expected 'character varying(8) null',"
            " found nothing (absent)",
        ),
        (
            "DROP INDEX idx_financial_ratios_stock_stac;"
            " CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm)",
            "add_financial_ratios_table: index financial_ratios.idx_financial_ratios_stock_stac:"
            " expected 'USING btree (stock_code, stac_yymm DESC)', found 'USING btree (stock_code, stac_yymm)'",
        ),
    ],
    ids=["extra column", "missing column", "index of another shape"],
)
def test_table_differing_from_the_migration_is_refused(deployed_db: Db, change: str, says: str) -> None:
    deployed_db.execute(change)
    err = refused(deployed_db)
    assert err.startswith("error: the database differs from the migrations; nothing was changed:")
    assert says in err


def test_ledger_row_without_its_table_is_refused(deployed_db: Db) -> None:
    deployed_db.execute("DROP TABLE financial_ratios")
    err = refused(deployed_db)
    assert "add_financial_ratios_table: the ledger says applied but financial_ratios is missing" in err


# -- concurrent writers ---------------------------------------------------------------------


def test_writes_during_the_priority_step_keep_the_contract(app_db: Db) -> None:
    """Decided: the application's writes during the deploy are pinned to 1 by the trigger; the
    rollback gives pre-existing stocks their pre-deploy value, and a stock created during the
    deployment keeps 1 (the only value it ever had in the database)."""
    before = dict(app_db.execute("SELECT code, priority FROM stocks"))
    last = max(before)
    with paused(app_db, "upgrade", *BATCH, at="after-batch:deprecate_priority_column:1") as run:
        app_db.execute("UPDATE stocks SET priority = 4 WHERE code = %s", (last,))
        app_db.execute(
            "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
            " VALUES ('999990', 'new listing', 5, true, now(), now())"
        )
        app_db.execute("INSERT INTO product_info (stock_code) VALUES ('005930')")
    assert run.returncode == 0
    assert app_db.value("SELECT count(*) FROM stocks WHERE priority <> 1") == 0
    assert app_db.verify().returncode == 0
    assert app_db.cli("downgrade", "--to", "base").returncode == 0
    after = dict(app_db.execute("SELECT code, priority FROM stocks"))
    assert after.pop("999990") == 1
    assert after == before


def test_stock_codes_longer_than_the_new_tables_allow_are_refused(app_db: Db) -> None:
    """Decided: stocks.code wider than the contract's varchar(10) is allowed as long as every
    existing code fits; a code that could never get a product_info row stops the deploy."""
    app_db.execute("ALTER TABLE stocks ALTER COLUMN code TYPE varchar(20)")
    assert app_db.cli("upgrade", "--to", "add_product_info_table").returncode == 0
    assert app_db.cli("downgrade", "--to", "base").returncode == 0
    app_db.execute(
        "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
        " VALUES ('KR7005930003', 'ISIN, not a code', 3, true, now(), now())"
    )
    err = refused(app_db)
    assert err.strip() == (
        "error: stocks has codes longer than the new tables' stock_code varchar(10) can hold: "
        "'KR7005930003' (12); nothing was changed"
    )


def test_verification_changes_nothing_even_when_probes_fail(deployed_db: Db) -> None:
    deployed_db.execute("DROP TRIGGER trigger_stocks_priority_deprecated ON stocks")
    before = deployed_db.snapshot()
    result = deployed_db.verify("-p", "tests.lock_witness")
    assert result.returncode == 1
    assert "test_changes::test_new_stock_gets_priority_1" in result.failed
    assert deployed_db.snapshot().differences(before) == []
    assert locks_seen(result.output) == "0 locks after every check"  # no probe left open
    assert deployed_db.value(VERIFICATION_LOCKS) == 0, "locks held after the run ended"


def test_hung_server_answers_within_the_connect_timeout(app_db: Db) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the TCP connection, never says a word
    port = silent.getsockname()[1]
    try:  # subprocess's timeout is the hang guard: libpq's connect_timeout must answer first
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "migrations",
                "status",
                "--db-url",
                f"postgresql://u:pw@127.0.0.1:{port}/x",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        silent.close()
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot connect to postgresql://u:***@127.0.0.1:{port}/x")
    assert "timeout" in done.stderr


def test_upgrade_by_a_role_that_cannot_alter_stocks_changes_nothing(app_db: Db) -> None:
    """A deploy role that may create tables but not alter `stocks` is refused before the first
    migration, in one line: nothing is committed, no half deployment is left."""
    grants = "GRANT CREATE, USAGE ON SCHEMA public TO {role}; GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA public TO {role};"
    with throwaway_role(app_db, "azak_dep", grants) as name:
        done = app_db.at(app_db.url.set(username=name)).cli("upgrade")
        assert done.returncode == 1 and "the deploying role may not alter stocks" in done.stderr, done.stderr
        assert app_db.value("SELECT to_regclass('public.product_info') IS NULL"), (
            "refused only after committing migrations 1 and 2:\n" + done.stdout + done.stderr
        )


def test_kill_while_the_before_image_is_written_leaves_no_half_image_behind(app_db: Db) -> None:
    """A kill -9 while `upgrade` keeps the before-image (in the registry, in one transaction)
    leaves no image and no deployment; the rerun keeps a whole one, verifies and rolls back."""
    killed = app_db.cli("upgrade", env={"AZAK_FAULT_AT": "inside:before-image"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    left = app_db.value(
        "SELECT (SELECT count(*) FROM azak_registry.images) + (SELECT count(*) FROM azak_registry.deployments)"
        " + (SELECT count(*) FROM azak_registry.rewrite_values)"
    )
    assert left == 0, f"{left} rows of a half-kept image left in the registry"
    ok(app_db.cli("upgrade"))
    assert app_db.value("SELECT count(*) FROM azak_registry.images") == 2  # at base; before the rewrite
    assert app_db.verify().returncode == 0
    ok(app_db.cli("downgrade", "--to", "base"))
    assert app_db.verify("--to=base").returncode == 0
