"""Verification finds its yardstick in the database: the before-image of the deployment its
registry records, kept there once by the upgrade that began it. `--db-url` alone is enough,
from a second clone of the kit or from any directory; a copy made with CREATE DATABASE ...
TEMPLATE verifies as it is; no backup, file or folder decides the verdict; `--before FILE`
refuses an image of another database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from migrations import image
from migrations.dburl import connect, dbname, run_outside_transaction
from migrations.steps import load_all
from tests.conftest import Db
from tests.helpers import a_clone, kit, verify

INDEX = "index product_info.idx_product_info_stock_code"
TRIGGER = "trigger stocks.trigger_stocks_priority_deprecated"
LEFT_BEHIND = """
CREATE FUNCTION stocks_priority_deprecated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.priority := 1; RETURN NEW; END $$;
CREATE TRIGGER trigger_stocks_priority_deprecated BEFORE INSERT OR UPDATE OF priority ON stocks
    FOR EACH ROW EXECUTE FUNCTION stocks_priority_deprecated();
"""


def said(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-3000:]


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Clone A (deploys), clone B (a colleague's), and a directory that is no clone at all."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return a_clone(tmp_path / "a"), a_clone(tmp_path / "b"), elsewhere


def test_verification_from_another_clone_or_directory_judges_by_the_database(
    app_db: Db, clones: tuple[Path, Path, Path]
) -> None:
    """Upgraded from clone A: verified from clone B and from an unrelated directory with
    `--db-url` alone it passes; a broken copy (CREATE DATABASE ... TEMPLATE) fails naming the
    fact while a faithful copy passes; rolled back from A, `--to base` passes from B."""
    a, b, elsewhere = clones
    assert kit(a, app_db, "upgrade", "--env-name", "production").returncode == 0
    for cwd, suite in ((b, b / "verification"), (elsewhere, a / "verification")):
        done = verify(cwd, suite, app_db)
        assert done.returncode == 0, said(done)
    assert not (b / "data" / "images").exists() and not (elsewhere / "data" / "images").exists()
    twin, broken = app_db.at(app_db.url.set(database=f"{dbname(app_db.url)}_t")), None
    run_outside_transaction(
        app_db.url, f'CREATE DATABASE "{dbname(twin.url)}" TEMPLATE "{dbname(app_db.url)}"'
    )
    try:
        assert verify(b, b / "verification", twin).returncode == 0  # the copy carries its registry
        twin.execute("DROP INDEX idx_product_info_stock_code")
        broken = verify(elsewhere, b / "verification", twin)
    finally:
        run_outside_transaction(app_db.url, f'DROP DATABASE IF EXISTS "{dbname(twin.url)}"')
    assert broken.returncode == 1 and f"{INDEX}: expected" in broken.stdout, said(broken)
    assert kit(a, app_db, "downgrade", "--to", "base").returncode == 0
    done = verify(b, b / "verification", app_db, "--to", "base")
    assert done.returncode == 0, said(done)


def test_a_backup_after_a_half_done_rollback_does_not_make_it_pass(
    deployed_db: Db, clones: tuple[Path, Path, Path]
) -> None:
    """A rollback that left the priority trigger behind, then a routine backup: the backup
    used to keep a new before-image of that broken state, and the rollback's verification
    then passed. Backups keep no image now: the verdict still names the trigger."""
    a, b, _ = clones
    assert kit(a, deployed_db, "downgrade", "--to", "base").returncode == 0
    deployed_db.execute(LEFT_BEHIND)
    assert kit(a, deployed_db, "backup").returncode == 0
    done = verify(b, b / "verification", deployed_db, "--to", "base")
    assert done.returncode == 1 and f"{TRIGGER}: expected nothing" in done.stdout, said(done)


def test_a_planted_or_foreign_image_decides_nothing(
    deployed_db: Db, app_db: Db, clones: tuple[Path, Path, Path]
) -> None:
    """An image file with a far-future date in the images folder (of a broken state, made to
    look like this database's) changes no verdict; `--before` with an image of another
    database is refused in one line."""
    a, _, _ = clones
    deployed_db.execute("ALTER TABLE stocks ADD COLUMN planted integer")
    conn = connect(deployed_db.url)
    try:
        with conn, conn.cursor() as cur:  # the broken state as an image: it would hide `planted`
            broken = image.keep(cur, [rw for m in load_all() for rw in m.contract.rewrites], [], a / "data")
    finally:
        conn.close()
    for folder in (a / "data" / "images", image.directory()):
        planted = image.BeforeImage(
            broken.database, "2999-12-31T23:59:59", broken.catalog, identity=broken.identity
        )
        image.write(planted, lambda out: None, folder)
        planted.path.rename(folder / f"azak_image_{broken.database}_29991231_235959_000000.json.gz")
    done = verify(a, a / "verification", deployed_db)
    assert done.returncode == 1 and "column stocks.planted: expected nothing" in done.stdout, said(done)
    conn = connect(app_db.url)
    try:
        with conn, conn.cursor() as cur:
            foreign = image.keep(cur, [], [], a / "foreign")
    finally:
        conn.close()
    refused = verify(a, a / "verification", deployed_db, f"--before={foreign.path}")
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert refused.returncode == 4 and len(lines) == 1, said(refused)
    assert f"is an image of {foreign.identity}" in lines[0] and "not of" in lines[0], lines


def test_a_read_only_verifier_needs_select_on_the_registry(deployed_db: Db) -> None:
    """SELECT on public and on the registry (USAGE + SELECT, nothing more) is a true verdict,
    recorded locally but not in the database's history; without the registry's grant the
    missing yardstick fails, saying which GRANT is missing."""
    from tests.conftest import throwaway_role

    public = "GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    registry = "GRANT USAGE ON SCHEMA azak_registry TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA azak_registry TO {role};"
    with throwaway_role(deployed_db, "azak_ro", public + registry) as role:
        result = deployed_db.at(deployed_db.url.set(username=role)).verify()
        assert result.returncode == 0, result.output[-3000:]
        assert "not in the database's history: permission denied" in result.output
    with throwaway_role(deployed_db, "azak_ro", public) as role:
        result = deployed_db.at(deployed_db.url.set(username=role)).verify()
        assert result.returncode == 1, result.output[-3000:]
        assert "USAGE on schema azak_registry and SELECT on its tables" in result.output


def test_a_restored_backup_brings_back_its_deployments_yardstick(deployed_db: Db, tmp_path: Path) -> None:
    """Deployment 1, a backup at its head, a rollback, the application's writes at base, deployment
    2, then that backup restored: the ledger is deployment 1's, so is the yardstick, at its head
    and after its rollback (deployment 2's image would name the application's writes)."""
    assert deployed_db.cli("backup", "--dir", str(tmp_path)).returncode == 0
    backup = next(tmp_path.glob("*.sql.gz"))
    assert deployed_db.cli("downgrade", "--to", "base").returncode == 0
    deployed_db.execute("UPDATE stocks SET priority = 6 - priority WHERE id <= 10")
    assert deployed_db.cli("upgrade").returncode == 0
    restored = deployed_db.cli("restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    at_head = deployed_db.verify("--to", "ledger")
    assert at_head.returncode == 0, at_head.output[-3000:]
    assert deployed_db.cli("downgrade", "--to", "base").returncode == 0
    at_base = deployed_db.verify("--to", "base")
    assert at_base.returncode == 0, at_base.output[-3000:]
