"""Whatever pg_dump writes for a real database, a backup of the kit restores (issue 17): large
objects, any text in comments and function bodies, identifiers that need quotes, a 65 MiB
value, every server encoding the application could use (UTF8, EUC_KR, SQL_ASCII), and a
database whose very name holds a newline and SQL. Each through the kit's restore and the
runbook's `gunzip` + `psql -f`, and never a traceback."""

from __future__ import annotations

import gzip
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from psycopg2 import sql
from pytest_postgresql.executors.noop import NoopExecutor

from migrations.changes import appdb
from migrations.dburl import connect, libpq_command, run_outside_transaction
from tests.conftest import Db, ok, server_url

KOREAN_TABLE = "종목별_시세"
UNUSUAL = [
    r"COMMENT ON TABLE stock_prices_minute IS 'SET standard_conforming_strings = off; \! touch /nowhere; it''s \'",
    r'CREATE TABLE public."select" ("from" text, "odd\name" text, "new' + "\n" + r'line" text)',
    r"""INSERT INTO public."select" VALUES (E'a\tb\\c\nd', '\!', 'x')""",
    r"CREATE FUNCTION public.scs() RETURNS text LANGUAGE sql"
    r" AS $f$ SELECT 'SET standard_conforming_strings = off; \' || E'\\' || $$;$$ $f$",
    "CREATE TABLE public.big (v text)",
    "INSERT INTO public.big SELECT repeat('x', 65 << 20)",
    "SELECT lo_from_bytea(0, convert_to('large object ' || repeat('y', 100000), 'UTF8'))",
]


@contextmanager
def database(template: NoopExecutor, encoding: str = "UTF8", name: str | None = None) -> Iterator[Db]:
    """A new database of that encoding (C locale) with the application's tables, dropped after."""
    name = name or f"azak_u_{uuid.uuid4().hex[:12]}"
    admin = server_url(template.user, template.password, template.host, template.port, "postgres")
    run_outside_transaction(
        admin,
        sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'").format(
            sql.Identifier(name), sql.Literal(encoding)
        ),
    )
    try:
        db = Db(admin.set(database=name))
        conn = connect(db.url, client_encoding="UTF8")  # the application writes UTF-8 text
        with conn, conn.cursor() as cur:
            appdb.create(cur, 50)
        conn.close()
        yield db
    finally:
        run_outside_transaction(admin, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def runbook_restore(db: Db, backup: Path) -> subprocess.CompletedProcess[bytes]:
    """`gunzip` then `psql -f`, as the runbook has it (ON_ERROR_STOP)."""
    argv, env = libpq_command(db.url)
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *argv, "-f", "-"],
        input=gzip.decompress(backup.read_bytes()),
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )


def round_trip(db: Db, tmp_path: Path) -> None:
    """backup, upgrade, restore: the database before; upgrade again, the runbook's restore:
    the database before. No output holds a traceback."""
    before = db.snapshot()
    outputs = [db.cli("backup", "--dir", str(tmp_path), timeout=600)]
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    (made,) = tmp_path.glob("azak_backup_*.sql.gz")
    outputs.append(db.cli("upgrade"))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    outputs.append(db.cli("restore", str(made), "--yes", timeout=600))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    assert db.snapshot().differences(before) == []
    ok(db.cli("upgrade"))
    psql = runbook_restore(db, made)
    assert psql.returncode == 0 and b"ERROR" not in psql.stderr, psql.stderr[-800:]
    assert db.snapshot().differences(before) == []
    assert all("Traceback" not in o.stdout + o.stderr for o in outputs)


@pytest.mark.parametrize("encoding", ["UTF8", "EUC_KR", "SQL_ASCII"])
def test_every_server_encoding_backs_up_upgrades_and_restores(
    app_template: NoopExecutor, tmp_path: Path, encoding: str
) -> None:
    """A Korean table name and Korean text in the database's own encoding; in SQL_ASCII, also a
    comment whose bytes are no UTF-8 at all (EUC-KR, as an older client wrote it)."""
    with database(app_template, encoding) as db:
        conn = connect(db.url, client_encoding="UTF8")
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE TABLE {} (code text PRIMARY KEY, 이름 text)").format(
                    sql.Identifier(KOREAN_TABLE)
                )
            )
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES ('005930', '삼성전자')").format(sql.Identifier(KOREAN_TABLE))
            )
            if encoding == "SQL_ASCII":
                cur.execute("COMMENT ON COLUMN stocks.sector IS E'\\xbe\\xf7\\xc1\\xbe'")
        conn.close()
        round_trip(db, tmp_path)


def test_what_pg_dump_writes_for_a_real_database_restores(app_template: NoopExecutor, tmp_path: Path) -> None:
    """Large objects (pg_dump wraps them in their own BEGIN/COMMIT in a plain dump), comments and
    function bodies that mention standard_conforming_strings and hold backslashes and `\\!`,
    names that need quotes, COPY data with tabs, backslashes and newlines, a 65 MiB value."""
    with database(app_template) as db:
        for statement in UNUSUAL:
            db.execute(statement)
        blobs = "SELECT md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)) FROM pg_largeobject_metadata"
        stored = db.value(blobs)
        round_trip(db, tmp_path)
        assert db.value(blobs) == stored
        assert db.value("SELECT length(v) FROM big") == 65 << 20


@pytest.mark.parametrize(
    "attack", ["\n\\! touch {marker}\n", "\nCREATE ROLE {role} SUPERUSER;--"], ids=["shell", "sql"]
)
def test_a_database_named_with_a_newline_and_sql_gets_a_backup_that_runs_none_of_it(
    app_template: NoopExecutor, tmp_path: Path, marker: Path, attack: str
) -> None:
    """The kit writes no name into the file but as JSON (its header line) or as psycopg2
    composes it: neither the runbook's psql nor the kit's restore runs the name's text."""
    role = f"azak_e{uuid.uuid4().hex[:6]}"
    name = "azak_n" + attack.format(marker=marker, role=role)
    assert len(name.encode()) <= 63, "the name must hold the whole attack"
    with database(app_template, name=name) as db:
        round_trip(db, tmp_path)
        assert not marker.exists(), "the name's shell command ran"
        assert db.value("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)) == 0
