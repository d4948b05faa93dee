"""Attacks of a second hostile review, each now a guarantee: the next changes (a fifth
migration that rewrites data, a sixth that changes an earlier table), false alarms on correct
deployments, and hostile input to restore. A test's docstring tells the attack as it was
found; its asserts are the behaviour the kit keeps."""

from __future__ import annotations

import gzip
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations.steps import EXTRA_ENV, load_all
from tests.conftest import Db, ledger, ok, run_verification, throwaway_role

FIFTH = "tests.changes.product_names"
US001_HEAD = "deprecate_priority_column"
MESSY = {"005930": "  Samsung Elec  ", "000660": "sk hynix", "035420": "Naver ", "051910": None}


@pytest.fixture
def fifth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain with the fifth migration (the CLI and verification inherit the variable)."""
    monkeypatch.setenv(EXTRA_ENV, FIFTH)


def with_products(db: Db) -> dict[str, str | None]:
    """US-001 deployed, then the application fills product_info (names as the API sends them)."""
    ok(db.cli("upgrade", "--to", US001_HEAD))
    for code, name in MESSY.items():
        db.execute("INSERT INTO product_info (stock_code, prdt_name) VALUES (%s, %s)", (code, name))
    return names(db)


def names(db: Db) -> dict[str, str | None]:
    return dict(db.execute("SELECT stock_code, prdt_name FROM product_info ORDER BY stock_code"))


# -- (a) the next change ------------------------------------------------------------------------


@pytest.mark.usefixtures("fifth")
def test_fifth_migration_that_rewrites_names_round_trips(app_db: Db) -> None:
    """Sanity of the fifth migration itself: upgrade, verify, downgrade one step, verify."""
    assert [m.name for m in load_all()][-1] == "normalise_product_names"
    original = with_products(app_db)
    ok(app_db.cli("upgrade", "--batch-size", "1"))
    assert names(app_db)["005930"] == "SAMSUNG ELEC"
    head = app_db.verify()
    assert head.returncode == 0, head.output[-3000:]
    ok(app_db.cli("downgrade", "--to", US001_HEAD, "--batch-size", "1"))
    assert names(app_db) == original
    back = app_db.verify(f"--to={US001_HEAD}")
    assert back.returncode == 0, back.output[-3000:]


@pytest.mark.usefixtures("fifth")
def test_a_later_migrations_rewrite_not_given_back_fails_verification(app_db: Db) -> None:
    """The contract declares `rewrites=` product_info.prdt_name ("a rollback must give each
    back"), and the before-image of migration 5 holds every original name; but the only check
    of a rewritten column is test_priority.py, hard-wired to stocks.priority. Here the saved
    originals are lost before the rollback: every name stays rewritten, and verification at
    --to deprecate_priority_column passes."""
    original = with_products(app_db)
    ok(app_db.cli("upgrade"))
    app_db.execute("DELETE FROM product_name_backup")  # the originals the rollback needs: gone
    ok(app_db.cli("downgrade", "--to", US001_HEAD))
    assert names(app_db) != original  # the rollback did not give the names back
    result = app_db.verify(f"--to={US001_HEAD}")
    assert result.returncode == 1, (
        "verification passed a rollback that lost every rewritten product name:\n" + result.output[-1500:]
    )


@pytest.mark.usefixtures("fifth")
def test_downgrade_killed_in_a_first_data_phase_is_not_left_marked_applied(app_db: Db) -> None:
    """run_phases marks 'reverting' only in a Ddl phase: a downgrade whose first phase is
    Batches (restore the data, then drop the copy: the natural order) is killed after its first
    batch with the ledger still saying 'applied'. Half the names are back, their saved copies
    deleted; `status` says applied, `upgrade` says nothing to do."""
    with_products(app_db)
    ok(app_db.cli("upgrade"))
    killed = app_db.cli(
        "downgrade",
        "--to",
        US001_HEAD,
        "--batch-size",
        "1",
        env={"AZAK_FAULT_AT": "after-batch:normalise_product_names:1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert app_db.value("SELECT count(*) FROM product_name_backup") < 3  # part of it is reverted
    assert ledger(app_db)["normalise_product_names"] == "reverting", (
        f"a half-reverted migration is recorded as {ledger(app_db)['normalise_product_names']!r}; "
        f"status: {app_db.cli('status').stdout}"
    )


@pytest.mark.usefixtures("fifth")
def test_the_fifth_migrations_batches_are_attacked_by_the_fault_tests(app_db: Db) -> None:
    """tests/test_survives_faults.py attacks a data phase at 'inside-batch:2' / 'after-batch:2'
    (runner.fault names no migration): with two migrations that have batches, every such point
    kills the FIRST one's batch (stocks.priority), and the new migration's batches are never
    attacked, although the README promises it ("kills the runner at every fault point of the
    new migration")."""
    from tests.helpers import fault_points

    points = fault_points("up")
    start = points.index("before:normalise_product_names:up:1")  # its Batches phase
    inside = points[start + 1]
    killed = app_db.cli("upgrade", "--batch-size", "64", env={"AZAK_FAULT_AT": inside})  # as that test runs
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert ledger(app_db).get("normalise_product_names") == "applying", (
        f"the point {inside!r}, listed for normalise_product_names, killed the run elsewhere: "
        f"ledger {ledger(app_db)}; fault points listed twice: "
        f"{sorted({p for p in points if points.count(p) > 1})}"
    )


SIXTH = "tests.changes.product_listing"


def test_a_later_migration_that_changes_an_earlier_fact_is_adopted_when_made_by_hand(
    app_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 6 widens product_info.prdt_name (`changes=`) and creates product_listing with
    a foreign key to product_info. Applied by hand exactly as its contract says, it should be
    adopted ("tables created by hand are adopted if they match exactly"); check_drift first
    judges the APPLIED migrations without the pending one's changes and refuses, blaming
    add_product_info_table for the width migration 6 declares. (Deployed by the runner, the
    same migration upgrades, verifies, rolls back and restores correctly.)"""
    from tests.changes.product_listing.widen_and_list import UPGRADE

    monkeypatch.setenv(EXTRA_ENV, f"{FIFTH},{SIXTH}")
    ok(app_db.cli("upgrade", "--to", "normalise_product_names"))
    app_db.execute(UPGRADE[0].sql)  # the DBA ran the reviewed SQL by hand
    done = app_db.cli("upgrade")
    assert done.returncode == 0 and "adopted widen_and_list" in done.stdout, done.stdout + done.stderr


# -- (c) correct deployments that verification fails ---------------------------------------------


@pytest.fixture
def etl_role(deployed_db: Db) -> Iterator[str]:
    """A login role with its own schema, as an ETL job has: a staging copy of stocks in it."""
    staging = "CREATE SCHEMA {role} AUTHORIZATION {role}; CREATE TABLE {role}.stocks (code varchar(10));"
    with throwaway_role(deployed_db, "azak_etl", staging, "DROP SCHEMA {role} CASCADE;") as name:
        yield name


def test_database_search_path_with_public_first_does_not_blame_a_login_roles_schema(
    deployed_db: Db, etl_role: str
) -> None:
    """The database's default search_path puts public FIRST (`public, "$user"`): every session
    of this database resolves stocks to public.stocks, whatever schemas login roles own.
    test_sessions_find_the_deployments_tables_in_public still judges PostgreSQL's built-in
    `"$user", public` (which no session of this database uses), expands "$user" to every
    login role, and blames the ETL role's own schema: a false alarm."""
    db = dbname_of(deployed_db)
    deployed_db.execute(f'ALTER DATABASE {db} SET search_path = public, "$user"')
    result = deployed_db.verify()
    assert result.returncode == 0, "a correct deployment failed:\n" + result.output[-1500:]


def dbname_of(db: Db) -> str:
    assert db.url.database is not None
    return db.url.database


def test_verifying_from_another_time_zone_is_not_a_difference(
    app_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application's stocks has a timestamptz column with a literal default (a CHECK or an
    index predicate would do the same). The catalog renders it in the session's TimeZone, and
    catalog.read pins only search_path: the before-image was taken in UTC (upgrade on the CI
    runner), verification runs where PGTZ is Asia/Seoul (the team's laptops), and the
    untouched column `stocks.listed_since` is reported changed."""
    app_db.execute("ALTER TABLE stocks ADD COLUMN listed_since timestamptz DEFAULT '2000-01-01 00:00+00'")
    monkeypatch.setenv("PGTZ", "UTC")
    ok(app_db.cli("upgrade"))
    monkeypatch.setenv("PGTZ", "Asia/Seoul")
    result = app_db.verify()
    assert result.returncode == 0, "a correct deployment failed:\n" + result.output[-1500:]


def test_verification_at_the_first_migration_passes(app_db: Db) -> None:
    """`upgrade --to add_product_info_table`, then `pytest verification --to
    add_product_info_table` (the README's deploy in steps): the cascade probe for product_info
    (needs only fk_product_stock) also inserts a financial_ratios row, a table that does not
    exist yet at this state: 'relation "financial_ratios" does not exist', a false failure."""
    ok(app_db.cli("upgrade", "--to", "add_product_info_table"))
    result = app_db.verify("--to=add_product_info_table")
    assert "test_behaviour::test_deleting_a_stock_cascades[product_info]" not in result.failed, result.output[
        -1500:
    ]
    assert result.returncode == 0, result.output[-1500:]


def test_priority_written_while_the_column_is_still_live_is_not_blamed(app_db: Db) -> None:
    """Deployed in steps: after step 1 `stocks.priority` is still the application's live
    column, and the application sets one (the previous review's stepwise case, verified at
    the intermediate state this time). test_every_priority_is_as_before judges every state
    where deprecate_priority_column is not applied against the BASE image, and blames the
    application's write: `005930: 4, before the deploy 5`."""
    ok(app_db.cli("upgrade", "--to", "add_product_info_table"))
    app_db.execute("UPDATE stocks SET priority = 4 WHERE code = '005930'")  # was 5
    result = app_db.verify("--to=add_product_info_table")
    assert result.returncode == 0, result.output[-1500:]
    assert "test_rewrites::test_rewritten_values_are_as_before[stocks.priority]" not in result.failed


# -- (d) hostile input ----------------------------------------------------------------------------


def one_line_bomb(path: Path, size: int) -> None:
    """A small .sql.gz that inflates to a pg_dump header and ONE line of `size` bytes."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b"-- PostgreSQL database dump\n\nSELECT '")
        chunk = b"a" * (1 << 24)
        for _ in range(size // len(chunk)):
            out.write(chunk)
        out.write(b"';\n")


def test_restore_of_a_gzip_bomb_is_refused_in_bounded_memory(app_db: Db, tmp_path: Path) -> None:
    """A 2 MB backup file that inflates to one 1.5 GB line (no newline): `restore` reads
    "the whole file first" with `for raw in source` (a line at a time), so the line is held
    whole, then copied again into the statement buffer. On the production host it takes
    gigabytes of memory before anything is refused; under a 1 GB address-space limit it dies
    with a MemoryError traceback instead of one `error:` line. (Now: without the kit's header
    it is refused on its first line, read bounded; as --foreign on its size; behind a header
    the kit's key signed, on its digest, read as a stream.)"""
    import subprocess
    import sys

    from migrations import provenance
    from migrations.dburl import connect
    from tests.conftest import ROOT

    bomb = tmp_path / "azak_backup_20250101_000000.sql.gz"
    one_line_bomb(bomb, 3 << 29)
    assert bomb.stat().st_size < 4 << 20
    signed = tmp_path / "azak_backup_20250101_000001.sql.gz"
    conn = connect(app_db.url)
    with conn, conn.cursor() as cur:
        identity, encoding = provenance.identity_of(cur)
    conn.close()
    manifest = provenance.Manifest(identity, provenance.now_utc(), encoding, "0" * 64, 1, 0, 0)
    signed.write_bytes(gzip.compress(provenance.header(manifest)) + bomb.read_bytes())
    limit = 1 << 30
    for path, extra, says in [
        (bomb, "", "was not written by this kit"),
        (bomb, "'--foreign', ", "MiB at most"),
        (signed, "", "differs from the digest"),
    ]:
        code = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
            f"sys.argv = ['migrations', 'restore', {str(path)!r}, '--yes', {extra}'--record', 'none', "
            f"'--db-url', {app_db.text_url!r}]; "
            "runpy.run_module('migrations', run_name='__main__')"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode in (1, 2) and "Traceback" not in done.stderr, (
            f"exit {done.returncode}: {done.stderr[-800:]}"
        )
        assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr[-800:]


def test_a_role_that_owns_nothing_is_not_told_the_deployment_is_absent(deployed_db: Db) -> None:
    """A login role with no grant at all (CONNECT through PUBLIC only) verifies a correct
    deployment. The checks it cannot run fail with 'permission denied' (fair: not verified),
    but the report's "what to do now" reads the unreadable ledger as empty and tells the
    operator 'The ledger records no US-001 migration: nothing to roll back', then to restore
    the newest backup: advice to undo a correct deployment, on a fact it never read."""

    with throwaway_role(deployed_db, "azak_none") as name:
        done = run_verification(deployed_db.url.set(username=name))
    said = done.stdout + done.stderr
    assert "permission denied" in said
    assert "may not read the ledger" in said and "nothing to roll back" not in said, said[-1200:]


def test_restore_check_follows_standard_conforming_strings_as_psql_does(app_db: Db, tmp_path: Path) -> None:
    """The file's own `SET standard_conforming_strings = off` makes `\\'` an escaped quote for
    psql (which follows the server's setting) but not for the restore's reader, which always
    reads '...' as standard strings. `SELECT 'a\\'';` is then a closed string to psql and an
    open one to the reader: the `\\!` line after it passes `restore`'s check ("refuses psql
    meta-commands such as \\!"), and the runbook's `gunzip` + `psql -f` of the same file runs
    the shell command. (Now no reader decides: the file is no longer what the kit signed.)"""
    import subprocess

    from tests.conftest import one_line

    ok(app_db.cli("backup", "--dir", str(tmp_path), "--record", "none"))
    dump = gzip.decompress(next(tmp_path.glob("azak_backup_*.sql.gz")).read_bytes())
    marker = tmp_path / "pwned"
    injected = (
        b"BEGIN;\nSET standard_conforming_strings = off;\nSELECT 'a\\'';\n"
        + f"\\! touch {marker}\n".encode()
        + b"';\nSET standard_conforming_strings = on;\n"
    )
    crafted = tmp_path / "crafted.sql"
    header, _, rest = dump.partition(b"\n")
    crafted.write_bytes(header + b"\n" + injected + rest)  # before pg_dump's own \\restrict

    # the runbook's way runs the shell command (psql stops later, on the leftover quote)
    psql_url = app_db.text_url.replace("postgresql+psycopg2", "postgresql", 1)
    subprocess.run(
        ["psql", "-X", "-q", "-d", psql_url, "-f", str(crafted)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert marker.exists(), "psql did not run the meta-command: the crafted file is not what it claims"
    marker.unlink()

    before = app_db.snapshot()
    for extra in ([], ["--foreign"]):
        assert "nothing changed" in one_line(app_db.cli("restore", str(crafted), "--yes", *extra), 1)
    assert not marker.exists(), "the kit ran the meta-command"
    assert app_db.snapshot().differences(before) == []
