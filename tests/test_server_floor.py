"""A server older than production's PostgreSQL 13 is refused in one line by every command, by
verification and by the rehearsal, before anything changes: tried on a real PostgreSQL 12 from the embedded packages
(tests/pgserver.py), one server start for the whole test (about ten seconds)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import psycopg2

from migrations import backup
from migrations.changes import appdb
from migrations.dburl import mask
from tests import pgserver
from tests.conftest import Db, run, server_url
from tests.helpers import COMMANDS, assert_one_line, fill

REFUSAL = re.compile(r"runs PostgreSQL 12\.\d+: the kit needs 13 or newer \(production's version\)$")


def state(server: pgserver.Server) -> tuple[list[tuple[str]], list[tuple[str, int]]]:
    """What a command could change: the tables of `public` and every stock's priority."""
    conn = psycopg2.connect(host=server.host, port=server.port, user=pgserver.USER, dbname="azak")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        tables = cur.fetchall()
        cur.execute("SELECT code, priority FROM stocks ORDER BY code")
        priorities = cur.fetchall()
    conn.close()
    return tables, priorities


def test_a_server_older_than_13_is_refused_in_one_line_by_every_command(app_db: Db, tmp_path: Path) -> None:
    kept = backup.backup(app_db.url, tmp_path / "from-13-or-newer")  # a good backup, for restore
    with pgserver.embedded("12") as server:
        conn = psycopg2.connect(host=server.host, port=server.port, user=pgserver.USER, dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE azak")
        conn.close()
        conn = psycopg2.connect(host=server.host, port=server.port, user=pgserver.USER, dbname="azak")
        with conn, conn.cursor() as cur:  # the application's database, as it would be on 12
            appdb.create(cur, 50)
        conn.close()
        old = Db(server_url(pgserver.USER, None, server.host, server.port, "azak"))
        before = state(server)

        for name, args in COMMANDS.items():
            done = old.cli(*fill(args, tmp_path / "backups", kept))
            assert_one_line(done, 1, f"error: {mask(old.url)}")
            assert REFUSAL.search(done.stderr.strip()), (name, done.stderr)
        verification = run(
            [sys.executable, "-m", "pytest", "verification", "-q", "-p", "no:cacheprovider"],
            env={"DATABASE_URL": old.text_url},
        )
        assert_one_line(verification, 4, f"ERROR: {mask(old.url)}")
        assert REFUSAL.search(verification.stderr.strip()), verification.stderr
        maintenance = old.url.set(database="postgres")
        rehearsal = old.cli(
            "--server-url", maintenance.render_as_string(), module="migrations.rehearse", url=False
        )
        assert_one_line(rehearsal, 1, f"error: {mask(maintenance)}")
        assert REFUSAL.search(rehearsal.stderr.strip()), rehearsal.stderr

        assert state(server) == before
        assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())
