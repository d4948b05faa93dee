"""The runner's promises under attack: kill -9, races, held locks, drift, concurrent writers.

Kill points are chosen deterministically through the runner's test hook (AZAK_FAULT_AT /
AZAK_PAUSE_AT), never by sleeping and hoping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from migrations.steps import Ddl, load_all
from tests.conftest import ROOT, Db, ledger
from tests.lock_witness import VERIFICATION_LOCKS, locks_seen

BATCH = ("--batch-size", "64")  # 300 stocks: five priority batches


def fault_points(direction: str) -> list[str]:
    """Every hook point of every migration of the chain, in the order a run meets them:
    before each phase, inside each schema phase (before its commit), inside and after the
    second batch of a data phase. A new migration is attacked by being in the chain."""
    chain = load_all() if direction == "up" else load_all()[::-1]
    points = []
    for m in chain:
        for index, phase in enumerate(m.upgrade if direction == "up" else m.downgrade):
            where = f"{m.name}:{direction}:{index}"
            points.append(f"before:{where}")
            batch = [f"inside-batch:{m.name}:1", f"after-batch:{m.name}:1"]  # met by every data phase
            points += [f"inside:{where}"] if isinstance(phase, Ddl) else batch
    return points


UP_KILLS, DOWN_KILLS = fault_points("up"), fault_points("down")


def tables(db: Db) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


def assert_ledger_matches_schema(db: Db) -> None:
    """A migration without data phases is in the ledger exactly when its tables exist; one
    with data phases that the ledger does not know has left none of its tables."""
    entries, present = ledger(db), tables(db)
    for m in load_all():
        made = {t for t in m.contract.created_tables() if t in present}
        if not m.has_data_phases:
            assert (m.name in entries) == (made == set(m.contract.created_tables())), (
                m.name,
                entries,
                present,
            )
        if m.name not in entries:
            assert not made, f"{m.name}: not in the ledger {entries}, but {made} exist"


@pytest.mark.parametrize("point", UP_KILLS)
def test_upgrade_killed_anywhere_resumes_and_rolls_back_losslessly(app_db: Db, point: str) -> None:
    before = app_db.snapshot()
    killed = app_db.cli("upgrade", *BATCH, env={"AZAK_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"never reached {point}: " + killed.stdout + killed.stderr
    assert_ledger_matches_schema(app_db)
    with app_db.runner() as runner:
        runner.upgrade()  # resumes
        assert app_db.verify().returncode == 0
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


@pytest.mark.parametrize("point", DOWN_KILLS)
def test_downgrade_killed_anywhere_finishes_losslessly(deployed_db: Db, app_db: Db, point: str) -> None:
    original = app_db.snapshot()  # the same rows before US-001
    killed = deployed_db.cli("downgrade", "--to", "base", *BATCH, env={"AZAK_FAULT_AT": point})
    assert killed.returncode == -signal.SIGKILL, f"never reached {point}: " + killed.stdout + killed.stderr
    assert_ledger_matches_schema(deployed_db)
    with deployed_db.runner() as runner:
        runner.downgrade("base")  # finishes
    assert deployed_db.verify("--expect=rolled-back").returncode == 0
    assert deployed_db.snapshot().differences(original) == []


@contextmanager
def paused(db: Db, *args: str, at: str) -> Iterator[subprocess.Popen[str]]:
    """A runner process paused (holding its locks) at a hook point until it finishes."""
    argv = [sys.executable, "-m", "migrations", *args, "--db-url", db.text_url]
    env = {**os.environ, "AZAK_PAUSE_AT": at}
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # deterministic: wait for the hook to say it is there
        if line.startswith("paused at"):
            break
    try:
        yield proc
    finally:
        proc.communicate("go\n", timeout=60)  # release it


@pytest.mark.parametrize("second", [("upgrade",), ("downgrade", "--to", "base")])
def test_concurrent_run_waits_then_stops_and_nothing_runs_twice(app_db: Db, second: tuple[str, ...]) -> None:
    with paused(app_db, "upgrade", *BATCH, at="after-batch:deprecate_priority_column:1") as first:
        other = app_db.cli(*second, "--lock-wait", "1")
    assert first.returncode == 0
    assert other.returncode == 1
    assert other.stderr.startswith("error: another deployment is running on")
    assert f"azak-db-migrations:{first.pid} from 127.0.0.1)" in other.stderr
    assert "waited 1s; nothing was changed" in other.stderr
    assert ledger(app_db) == dict.fromkeys(
        ("add_product_info_table", "add_financial_ratios_table", "deprecate_priority_column"), "applied"
    )
    assert app_db.verify().returncode == 0


@contextmanager
def holding(db: Db, statement: str) -> Iterator[int]:
    """Another session holding `statement`'s locks in an open transaction; yields its pid."""
    conn = psycopg2.connect(
        host=db.url.host,
        port=db.url.port,
        user=db.url.username,
        password=db.url.password,
        dbname=db.url.database,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute(statement)
        yield pid
    finally:
        conn.rollback()
        conn.close()


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
        result = deployed_db.verify("--lock-timeout=100")  # run() raises if it would hang (timeout)
    assert result.returncode == 1
    assert "lock timeout" in result.output
    assert "test_changes::test_every_priority_is_1" in result.failed


# -- drift ----------------------------------------------------------------------------------


def refused(db: Db, *args: str) -> str:
    before = db.snapshot()
    done = db.cli("upgrade", *args)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert db.snapshot().differences(before) == [], "a refused upgrade must change nothing"
    return done.stderr


def test_migration_changed_after_it_was_applied_is_refused(deployed_db: Db, tmp_path: Path) -> None:
    kit = tmp_path / "kit"  # a checkout in which someone edits an applied migration
    shutil.copytree(ROOT / "migrations", kit / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    edited = kit / "migrations" / "add_product_info_table.py"
    edited.write_text(edited.read_text().replace("varchar(120)", "varchar(200)"))
    env = {**os.environ, "PYTHONPATH": str(kit)}

    def kit_cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "migrations", *args, "--db-url", deployed_db.text_url]
        return subprocess.run(argv, cwd=kit, env=env, capture_output=True, text=True, check=False)

    before = deployed_db.snapshot()
    done = kit_cli("upgrade")
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(
        "error: refusing to upgrade: add_product_info_table (add_product_info_table.py changed since"
    )
    assert deployed_db.snapshot().differences(before) == []
    assert "add_product_info_table       changed-since-applied" in kit_cli("status").stdout


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


def test_table_created_by_hand_that_matches_is_adopted(app_db: Db) -> None:
    from migrations import add_product_info_table

    app_db.execute(add_product_info_table.UPGRADE[0].sql)
    done = app_db.cli("upgrade")
    assert done.returncode == 0, done.stderr
    assert "adopted add_product_info_table" in done.stdout
    assert app_db.verify().returncode == 0


def test_table_created_by_hand_that_differs_is_refused(app_db: Db) -> None:
    app_db.execute("CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(12))")
    err = refused(app_db)
    assert (
        "add_product_info_table: column product_info.stock_code: expected 'character varying(10) not null',"
        " found 'character varying(12) null'"
    ) in err


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
