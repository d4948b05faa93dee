"""What the application's owner (or a foreign file run as that owner) puts into public never runs
in the kit's own sessions, which may be a superuser's: a function or operator that matches a
call of the kit better than pg_catalog's (`public.unnest(text[])` beats `unnest(anyarray)`,
`public.||(text, integer)` beats `anynonarray || text`) is never chosen, because the kit's own
SQL sees pg_catalog only (`dburl.KIT_PATH`). And a restore sets the ledger the backup carries,
whatever the history says."""

from __future__ import annotations

import gzip
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from migrations.dburl import libpq_command
from migrations.steps import load_all
from tests.conftest import Db, throwaway_role

# Each planted object notes who ran it, then does what pg_catalog's would.
RAN = "CREATE TABLE public.azak_ran (who text, what text); GRANT INSERT ON public.azak_ran TO PUBLIC;"
LOOKALIKES = """
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.azak_ran VALUES (current_user, 'unnest');
    RETURN QUERY SELECT x FROM pg_catalog.unnest(a) AS x;
END $f$;
CREATE FUNCTION public.azak_cat(t text, n integer) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.azak_ran VALUES (current_user, '||');
    RETURN pg_catalog.textcat(t, n::text);
END $f$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.azak_cat);
CREATE FUNCTION public.jsonb_populate_recordset(r anyelement, j jsonb) RETURNS SETOF anyelement
LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.azak_ran VALUES (current_user, 'jsonb_populate_recordset');
    RETURN QUERY SELECT * FROM pg_catalog.jsonb_populate_recordset(r, j);
END $f$;
"""
PLANTS = RAN + LOOKALIKES


@pytest.fixture
def planted(owned_db: tuple[Db, str]) -> tuple[Db, str]:
    """owned_db, whose owner (no superuser) planted PLANTS in public."""
    db, role = owned_db
    db.execute(f"SET ROLE {role}; {PLANTS} RESET ROLE;")
    return db, role


def superuser_runs(db: Db, role: str) -> list[tuple[str, str]]:
    """What planted code ran as anyone but its owner."""
    return db.execute("SELECT who, what FROM public.azak_ran WHERE who <> %s", (role,))


UNPLANT = """
DROP OPERATOR public.|| (text, integer); DROP FUNCTION public.azak_cat(text, integer);
DROP FUNCTION public.unnest(text[]); DROP FUNCTION public.jsonb_populate_recordset(anyelement, jsonb);
"""


def test_lookalikes_stop_a_deployment_and_never_run_in_backup_or_restore(
    planted: tuple[Db, str], tmp_path: Path
) -> None:
    """The runner refuses to upgrade or roll back while public holds an operator, or a function a
    migration calls, named like PostgreSQL's own (a migration's statements see public); backup and
    restore run with them there, and call none."""
    db, role = planted
    refused = db.cli("upgrade")
    assert refused.returncode == 1 and "refusing to run: public holds operator public.||(text, integer)" in (
        refused.stderr
    ), refused.stderr
    assert "nothing was changed" in refused.stderr
    assert "public.unnest(text[])" not in refused.stderr  # no migration calls unnest: it stops nothing
    assert not db.value("SELECT to_regclass('public.product_info') IS NOT NULL")
    db.execute(f"SET ROLE {role}; {UNPLANT} RESET ROLE;")
    assert db.cli("upgrade").returncode == 0
    db.execute(f"SET ROLE {role}; {LOOKALIKES} RESET ROLE;")  # again, after the deployment
    made = db.cli("backup", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    backup = next(tmp_path.glob("*.sql.gz"))
    assert "refusing to run: public holds" in db.cli("downgrade", "--to", "base").stderr
    restored = db.cli("restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert db.value("SELECT count(*) FROM azak_registry.ledger") == len(load_all())  # the backup's ledger
    assert superuser_runs(db, role) == []


def test_planted_calls_never_run_after_a_foreign_restore(planted: tuple[Db, str], tmp_path: Path) -> None:
    db, role = planted
    argv, env = libpq_command(db.url)
    dump = subprocess.run(
        ["pg_dump", "--inserts", "--clean", "--if-exists", *argv], capture_output=True, env=env, check=True
    ).stdout
    foreign = tmp_path / "foreign.sql.gz"
    foreign.write_bytes(gzip.compress(dump))
    done = db.cli("restore", str(foreign), "--yes", "--foreign")
    assert done.returncode == 0, done.stderr
    assert superuser_runs(db, role) == []


def test_restore_sets_the_ledger_the_backup_carries_whatever_the_history_says(
    deployed_db: Db, tmp_path: Path
) -> None:
    """A history row naming the backup (a verifier may insert rows) does not choose the ledger."""
    made = deployed_db.cli("backup", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    backup = next(tmp_path.glob("*.sql.gz"))
    token = deployed_db.value(
        "SELECT backup FROM azak_registry.history WHERE backup IS NOT NULL ORDER BY id DESC"
    )
    deployed_db.execute(
        "INSERT INTO azak_registry.history (environment, executor, action, result, backup, ledger)"
        " VALUES ('production', 'verifier', 'verify', 'passed', %s, '[]')",
        (token,),
    )
    assert deployed_db.cli("downgrade", "--to", "base").returncode == 0
    assert deployed_db.cli("restore", str(backup), "--yes").returncode == 0
    names = [r[0] for r in deployed_db.execute("SELECT name FROM azak_registry.ledger ORDER BY applied_at")]
    assert names == ["add_product_info_table", "add_financial_ratios_table", "deprecate_priority_column"]


def test_a_lookalike_the_database_had_before_stops_nothing(app_db: Db) -> None:
    """An application's helper `public.round(double precision, integer)` that no migration calls,
    and an exact twin of pg_catalog's `gen_random_uuid()` (pg_catalog, searched first, wins),
    both its owner's (no superuser), there before the deployment: the deployment runs,
    verification passes (they are in the yardstick), the rollback runs."""
    helpers = (
        "CREATE FUNCTION public.round(double precision, integer) RETURNS numeric LANGUAGE sql"
        " AS 'SELECT pg_catalog.round($1::numeric, $2)';"
        " CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE sql"
        " AS 'SELECT pg_catalog.gen_random_uuid()';"
    )
    setup = "GRANT CREATE ON SCHEMA public TO {role};"
    with throwaway_role(app_db, "azak_helper", setup, "REVOKE CREATE ON SCHEMA public FROM {role};") as role:
        app_db.execute(f"SET ROLE {role}; {helpers} RESET ROLE;")
        done = app_db.cli("upgrade")
        assert done.returncode == 0, done.stderr
        verified = replace(app_db, to=None).verify()
        assert verified.returncode == 0, verified.output[-3000:]
        assert app_db.cli("downgrade", "--to", "base").returncode == 0
