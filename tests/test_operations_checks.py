"""The application, log and backup checks fail when they should, and pass when they should."""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Db

HEALTH = "test_operations::test_application_answers_health_check"
LOG = "test_operations::test_log_shows_no_errors"
RECENT = "test_operations::test_backup_is_recent"
HOLDS = "test_operations::test_backup_holds_stocks"


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
    assert {RECENT, HOLDS} <= result.passed, result.output


def test_backup_checks_fail_on_an_old_backup(app_db: Db, tmp_path: Path) -> None:
    app_db.cli("backup", "--dir", str(tmp_path))
    (backup,) = tmp_path.glob("azak_backup_*.sql.gz")
    old = time.time() - 48 * 3600
    os.utime(backup, (old, old))
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert RECENT in result.failed
    assert "it is 48.0 h" in result.output


def test_backup_checks_fail_on_a_truncated_backup(app_db: Db, tmp_path: Path) -> None:
    app_db.cli("backup", "--dir", str(tmp_path))
    (backup,) = tmp_path.glob("azak_backup_*.sql.gz")
    backup.write_bytes(backup.read_bytes()[:200])
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert HOLDS in result.failed
    assert "should be a valid gzip file" in result.output


def test_backup_checks_fail_without_a_backup(app_db: Db, tmp_path: Path) -> None:
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert {RECENT, HOLDS} <= result.failed
    assert "none does" in result.output


def test_backup_without_stocks_fails(app_db: Db, tmp_path: Path) -> None:
    fake = tmp_path / "azak_backup_20251117_090000.sql.gz"
    with gzip.open(fake, "wb") as out:
        out.write(b"-- PostgreSQL database dump\nCREATE TABLE public.other (id int);\n")
    result = verify(app_db, f"--backup-dir={tmp_path}")
    assert HOLDS in result.failed
    assert "should contain the stocks table" in result.output
