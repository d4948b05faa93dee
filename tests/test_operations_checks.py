"""The application, log and backup checks fail when they should, and pass when they should."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pytest_postgresql.executors.noop import NoopExecutor

from migrations import backup, provenance
from tests.checks import HEALTH, LOG, RECENT, RESTORABLE
from tests.conftest import Db, clone


class Health(BaseHTTPRequestHandler):
    """/ok answers 200, anything else 503."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def other_db(app_template: NoopExecutor) -> Iterator[Db]:
    """A second application database on the same server."""
    yield from clone(app_template)


def verify(db: Db, *args: str):
    """The kit never deployed here: no before-image, waived for these checks of their own."""
    return db.verify("--expect=rolled-back", "--before=none", *args)


def test_health_check_fails_on_5xx_and_passes_on_2xx(app_db: Db, app_url: str) -> None:
    bad = verify(app_db, f"--app-url={app_url}/down")
    assert HEALTH in bad.failed and bad.returncode == 1
    assert "found 503" in bad.output
    good = verify(app_db, f"--app-url={app_url}/ok")
    assert HEALTH in good.passed and good.returncode == 0


def test_health_check_fails_when_nothing_answers(app_db: Db) -> None:
    result = verify(app_db, "--app-url=http://127.0.0.1:1/health", "--app-timeout=2")
    assert HEALTH in result.failed
    assert "no answer" in result.output


def test_log_check_reports_errors_since_the_deploy_only(app_db: Db, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(
        "2025-11-17 09:00:00 ERROR old failure before the deploy\n"
        "2025-11-17 10:00:00 INFO deployed\n"
        '2025-11-17 10:05:00 ERROR relation "product_info" does not exist\n'
    )
    bad = verify(app_db, f"--app-log={log}", "--since=2025-11-17T09:30:00")
    assert LOG in bad.failed
    assert 'relation "product_info" does not exist' in bad.output
    assert "old failure" not in bad.output
    good = verify(app_db, f"--app-log={log}", "--since=2025-11-17T10:06:00")
    assert LOG in good.passed


def test_backup_checks_pass_on_a_fresh_backup(app_db: Db, tmp_path: Path) -> None:
    done = app_db.cli("backup", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert {RECENT, RESTORABLE} <= result.passed, result.output


def test_a_backups_age_is_the_time_its_header_records_not_the_files(app_db: Db, tmp_path: Path) -> None:
    """A backup taken two days ago is old however fresh its file's time; a fresh one whose
    file time was set back two days (a copy, a restore from tape) is recent."""
    backup.backup(app_db.url, tmp_path / "old", now=datetime.now() - timedelta(hours=48))
    result = verify(app_db, f"--backup-dir={tmp_path / 'old'}")
    assert RECENT in result.failed
    assert "it is 48.0 h" in result.output
    (fresh,) = [backup.backup(app_db.url, tmp_path / "fresh")]
    old = time.time() - 48 * 3600
    os.utime(fresh, (old, old))
    result = verify(app_db, f"--backup-dir={tmp_path / 'fresh'}")
    assert RECENT in result.passed, result.output


@pytest.mark.parametrize("cut", [0.5, -40, -1], ids=["half", "end cut", "last byte"])
def test_backup_checks_fail_on_a_truncated_backup(app_db: Db, tmp_path: Path, cut: float) -> None:
    """Cut anywhere (the gzip stream, or within pg_dump's end): not restorable."""
    app_db.cli("backup", "--dir", str(tmp_path))
    (made,) = tmp_path.glob("azak_backup_*.sql.gz")
    data = made.read_bytes()
    made.write_bytes(data[: int(len(data) * cut) if cut > 0 else int(cut)])
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert RESTORABLE in result.failed
    assert "should be one that restore loads into this database" in result.output
    assert "truncated" in result.output or "differs from the digest" in result.output


def test_backup_checks_fail_without_a_backup(app_db: Db, tmp_path: Path) -> None:
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert {RECENT, RESTORABLE} <= result.failed
    assert "none does" in result.output


def test_a_dump_without_the_kits_header_is_no_backup_of_this_database(app_db: Db, tmp_path: Path) -> None:
    """A pg_dump file named as the kit names its backups is not taken at its word."""
    fake = tmp_path / "azak_backup_20251117_090000.sql.gz"
    with gzip.open(fake, "wb") as out:
        out.write(b"-- PostgreSQL database dump\nCREATE TABLE public.stocks (id int);\n")
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert {RECENT, RESTORABLE} <= result.failed
    assert "none does" in result.output


def test_a_backup_of_a_same_named_database_elsewhere_is_not_restorable_here(
    app_db: Db, other_db: Db, tmp_path: Path
) -> None:
    """Its header names this database's name and server, yet another oid: another database."""
    made = backup.backup(other_db.url, tmp_path)
    data = gzip.decompress(made.read_bytes())
    line, _, body = data.partition(b"\n")
    fields = json.loads(line[len(provenance.MARK) :])
    del fields["signature"]
    fields["identity"]["database"] = app_db.url.database
    fields["signature"] = provenance.sign(fields, provenance.key() or b"")
    made.write_bytes(gzip.compress(provenance.MARK + provenance.canonical(fields) + b"\n" + body))
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert RESTORABLE in result.failed and RECENT in result.passed, result.output
    assert "oid differ" in result.output
