"""The kit's registry (azak_registry) is outside `public`: after a complete rollback `public`
is exactly as before (schema dump and every row) while the registry keeps its history; one
command removes the registry entirely; and the runbook's own restore (`gunzip`, then `psql -f`
of a kit backup) leaves it truthful: restored from that backup, at base."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from migrations import snapshot
from tests.conftest import US001_HEAD, Db, ok


def full_dump(db: Db) -> str:
    """`pg_dump --schema-only` of everything, the registry included."""
    argv, env = snapshot.libpq_command(db.url)
    done = subprocess.run(
        ["pg_dump", "--schema-only", *argv], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    return "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith(snapshot.VOLATILE))


def history(db: Db) -> list[tuple[str, str]]:
    return db.execute("SELECT btrim(action || ' ' || target), result FROM azak_registry.history ORDER BY id")


def test_complete_rollback_leaves_public_as_before_and_the_registry_with_its_history(app_db: Db) -> None:
    before = app_db.snapshot()
    ok(app_db.cli("upgrade"))
    ok(app_db.cli("downgrade", "--to", "base", "--reason", "rehearsal"))
    assert app_db.snapshot().differences(before) == []
    in_public = app_db.value(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname LIKE '%migration%'"
    )
    assert in_public == 0, "the kit left a table of its own in public"
    assert history(app_db) == [("upgrade", "passed"), ("downgrade --to base", "passed")]
    assert app_db.value("SELECT count(*) FROM azak_registry.ledger") == 0  # at base
    assert app_db.value("SELECT count(*) FROM azak_registry.images") == 2  # the rollback's yardstick


def test_forget_registry_removes_it_entirely_and_only_at_base(app_db: Db) -> None:
    untouched = full_dump(app_db)
    ok(app_db.cli("upgrade"))
    refused = app_db.cli("forget-registry", "--yes")
    assert refused.returncode == 1 and "roll back first" in refused.stderr, refused.stderr
    unconfirmed = app_db.cli("forget-registry")
    assert unconfirmed.returncode == 2 and "add --yes" in unconfirmed.stderr, unconfirmed.stderr
    ok(app_db.cli("downgrade", "--to", "base"))
    said = ok(app_db.cli("forget-registry", "--yes"))
    assert "Registry azak_registry removed" in said and "2 before-image(s)" in said, said
    assert full_dump(app_db) == untouched  # not a trace of the kit


def test_runbook_restore_with_psql_leaves_the_registry_truthful(app_db: Db, tmp_path: Path) -> None:
    """Backup at base, upgrade, then the runbook: gunzip and psql -f. The ledger says base
    (status and verification agree) and the history says restored from that backup."""
    said = ok(app_db.cli("backup", "--dir", str(tmp_path), "--env-name", "staging"))
    (dump,) = tmp_path.glob("azak_backup_*.sql.gz")
    assert str(dump.name) in said
    ok(app_db.cli("upgrade"))
    plain = tmp_path / "restore.sql"
    plain.write_bytes(gzip.decompress(dump.read_bytes()))
    psql = ["psql", "-X", "-q", app_db.text_url.replace("+psycopg2", ""), "-f", str(plain)]
    done = subprocess.run(psql, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    assert "(at base)" in ok(app_db.cli("status"))
    last = app_db.execute(
        "SELECT action, target, result, migrations, environment FROM azak_registry.history ORDER BY id DESC LIMIT 1"
    )[0]
    assert last == ("restore", f"{dump} (psql -f)", "passed", "ledger: base", "staging"), last
    assert app_db.verify("--to=base").returncode == 0


def test_kit_restore_records_the_file_the_ledger_and_the_reason(app_db: Db, tmp_path: Path) -> None:
    ok(app_db.cli("backup", "--dir", str(tmp_path)))
    (dump,) = tmp_path.glob("azak_backup_*.sql.gz")
    ok(app_db.cli("upgrade"))
    ok(app_db.cli("restore", str(dump), "--yes", "--reason", "the application misbehaves"))
    last = app_db.execute(
        "SELECT action, target, result, migrations, reason FROM azak_registry.history ORDER BY id DESC LIMIT 1"
    )[0]
    assert last == ("restore", str(dump), "passed", "ledger: base", "the application misbehaves"), last
    assert app_db.value("SELECT count(*) FROM azak_registry.history WHERE action = 'restore'") == 1


def test_an_earlier_registry_is_brought_up_to_date_by_the_next_command(deployed_db: Db) -> None:
    """A registry as the previous kit made it (v1: no `made_current`) gains it with the next
    command, and verification reads either."""
    deployed_db.execute(
        "ALTER TABLE azak_registry.deployments DROP COLUMN made_current;"
        " COMMENT ON SCHEMA azak_registry IS 'azak-db-migrations registry v1: ledger, before-images,"
        " history (removed by forget-registry)'"
    )
    assert deployed_db.verify().returncode == 0
    ok(deployed_db.cli("adopt"))
    assert (
        deployed_db.value(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'azak_registry.deployments'::regclass"
            " AND attname = 'made_current'"
        )
        == 1
    )
    assert "registry v2" in deployed_db.value("SELECT obj_description('azak_registry'::regnamespace)")
    assert deployed_db.verify().returncode == 0


def test_after_a_kit_restore_the_next_upgrade_meets_no_drift(deployed_db: Db, tmp_path: Path) -> None:
    """pg_dump gives `x IN ('0', '1')` back as `ARRAY[('0'::character varying)::text, ...]`: the
    same CHECK, so the next upgrade is not refused as drift, and verification notes it."""
    ok(deployed_db.cli("backup", "--dir", str(tmp_path)))
    ok(deployed_db.cli("restore", str(next(tmp_path.glob("*.sql.gz"))), "--yes"))
    assert "ARRAY[('0'::character varying)::text" in deployed_db.value(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ck_financial_ratios_div_cls_code'"
    )
    ok(deployed_db.cli("upgrade", "--to", US001_HEAD))  # the drift check of every applied migration
    verified = deployed_db.verify()
    assert verified.returncode == 0, verified.output[-3000:]
    assert "the same CHECK as PostgreSQL reads it back from a dump" in verified.output


def test_a_backup_restored_into_an_empty_database_brings_its_ledger(
    deployed_db: Db, empty_db: Db, tmp_path: Path
) -> None:
    """`restore --other-database` into a database without the application (or a registry): the
    registry is made first, and the ledger is the backup's; a restore that fails leaves none."""
    ok(deployed_db.cli("backup", "--dir", str(tmp_path)))
    made = next(tmp_path.glob("*.sql.gz"))
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(made.read_bytes()[:-100])
    refused = empty_db.cli("restore", str(cut), "--yes", "--other-database")
    assert refused.returncode == 1 and "nothing changed" in refused.stderr, refused.stderr
    assert empty_db.value("SELECT to_regnamespace('azak_registry') IS NULL")  # nothing changed, indeed
    ok(empty_db.cli("restore", str(made), "--yes", "--other-database"))
    names = [r[0] for r in empty_db.execute("SELECT name FROM azak_registry.ledger ORDER BY applied_at")]
    assert names == [
        r[0] for r in deployed_db.execute("SELECT name FROM azak_registry.ledger ORDER BY applied_at")
    ]
