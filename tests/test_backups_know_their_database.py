"""A backup knows its database by more than a name and a system identifier, and leaves nothing
half-written behind (issue 17).

A file-level copy of a cluster (staging built from a snapshot of production) shares the
system identifier and every oid; what differs is where it serves. Restoring staging's
backup into production without --other-database is refused. A backup killed with kill -9
leaves its `.partial` directory, which the next backup sweeps (never one still running).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations import provenance
from migrations.changes import appdb
from migrations.dburl import URL, connect
from tests.conftest import ROOT, Db, ok, one_line
from tests.helpers import shown


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster of this machine's server binaries, run as `postgres`."""

    def __init__(self, bindir: Path, data: Path) -> None:
        self.bindir, self.data, self.port = bindir, data, free_port()
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *argv: str) -> None:
        subprocess.run([*self.user, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            f"{self.data}.log",
            "-w",
            "start",
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
            check=False,
        )

    def url(self, database: str) -> URL:
        return URL.create(
            "postgresql+psycopg2", username="postgres", host="127.0.0.1", port=self.port, database=database
        )


@pytest.fixture(scope="module")
def twins() -> Iterator[tuple[Db, Db]]:
    """Production, and staging copied from its data directory at file level: the same
    application database, the same system identifier, another port."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1] or (os.geteuid() == 0 and not shutil.which("runuser")):
        pytest.skip("no PostgreSQL server binaries here to make a second cluster")
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="azak_twins_"))
    base.chmod(0o777)
    production = Cluster(bindir, base / "production")
    staging = Cluster(bindir, base / "staging")
    try:
        production.run(
            str(bindir / "initdb"), "-D", str(production.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        production.start()
        conn = connect(production.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE azak")
        conn.close()
        conn = connect(production.url("azak"))
        with conn, conn.cursor() as cur:
            appdb.create(cur, 50)
        conn.close()
        production.stop()
        production.run("cp", "-a", str(production.data), str(staging.data))
        production.start()
        staging.start()
        yield Db(production.url("azak")), Db(staging.url("azak"))
    finally:
        production.stop()
        staging.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_backup_of_a_file_level_copy_is_not_taken_for_its_origin(
    twins: tuple[Db, Db], tmp_path: Path
) -> None:
    production, staging = twins
    whose = (
        "SELECT (SELECT system_identifier FROM pg_control_system())::text || ' ' || d.oid"
        " FROM pg_database d WHERE datname = current_database()"
    )
    assert production.value(whose) == staging.value(whose), "not a file-level copy: the test proves nothing"
    ok(staging.cli("backup", "--dir", str(tmp_path), "--record", "none"))
    (made,) = tmp_path.glob("azak_backup_*.sql.gz")
    staging.execute("UPDATE stocks SET name = 'only on staging' WHERE code = '005930'")
    before = production.snapshot()
    refused = one_line(production.cli("restore", str(made), "--yes", "--record", "none"), 2)
    assert "add --other-database" in refused and "address differ" in refused, refused
    assert production.snapshot().differences(before) == []
    ok(production.cli("restore", str(made), "--yes", "--other-database", "--record", "none"))
    assert production.value("SELECT count(*) FROM stocks") == 50


def test_a_backup_killed_with_kill_9_leaves_no_partial_file_behind(app_db: Db, tmp_path: Path) -> None:
    """The next backup sweeps the dead one's `.partial`, and only that: a backup still running
    beside it (it holds its lock) keeps its own."""
    killed = app_db.cli(
        "backup", "--dir", str(tmp_path), "--record", "none", env={"AZAK_FAULT_AT": "backup:dumped"}
    )
    assert killed.returncode == -9, killed.stderr
    (left,) = tmp_path.glob(".azak_backup_*.partial")
    argv = [sys.executable, "-m", "migrations", "backup", "--dir", str(tmp_path), "--record", "none"]
    env = {**os.environ, "DATABASE_URL": app_db.text_url, "AZAK_PAUSE_AT": "backup:dumped"}
    beside = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert beside.stdout is not None and beside.stdin is not None
        assert beside.stdout.readline().startswith(b"paused at backup:dumped")
        ok(app_db.cli("backup", "--dir", str(tmp_path), "--record", "none"))
        running = list(tmp_path.glob(".azak_backup_*.partial"))
        assert left not in running and len(running) == 1, running
        beside.stdin.write(b"go\n")
        beside.stdin.flush()
        assert beside.wait(timeout=120) == 0
    finally:
        beside.kill()
    assert list(tmp_path.glob(".azak_backup_*.partial")) == []
    made = list(tmp_path.glob("azak_backup_*.sql.gz"))
    assert len(made) == 2
    for path in made:
        with path.open("rb") as raw:
            provenance.verify(raw, path.name)


def test_restore_refuses_a_backup_of_another_database(app_db: Db, deployed_db: Db, tmp_path: Path) -> None:
    """A backup of another database is refused by `restore` unless the operator says the target
    is another database (`--other-database`); nothing of it is loaded."""
    app_db.execute(
        "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
        " VALUES ('OTHERDB', 'x', 1, true, now(), now())"
    )
    ok(app_db.cli("backup", "--dir", str(tmp_path)))
    (dump,) = tmp_path.glob("azak_backup_*.sql.gz")
    done = deployed_db.cli("restore", str(dump), "--yes")
    assert done.returncode == 2 and "add --other-database" in done.stderr, done.stdout + done.stderr
    assert deployed_db.value("SELECT count(*) FROM stocks WHERE code = 'OTHERDB'") == 0


def test_backup_check_requires_a_backup_of_this_database(app_db: Db, deployed_db: Db, tmp_path: Path) -> None:
    """The backup check asks for a backup of this database: another database's backup in the
    folder is no backup of it."""
    ok(app_db.cli("backup", "--dir", str(tmp_path)))
    result = deployed_db.verify(f"--backup-dir={tmp_path}")
    assert result.returncode == 1 and "should exist in" in result.output, shown(result)
