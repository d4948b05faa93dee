"""Checklist: the application works, the logs show no errors, the backup exists.

Each needs an option; without it the check is skipped with the reason in the report.
"""

import gzip
import time
import zlib
from pathlib import Path

import pytest

from verification import operations
from verification.db import Target


def option(request: pytest.FixtureRequest, name: str) -> str:
    value = request.config.getoption(name)
    if not value:
        pytest.skip(f"{name} not given: not checked")
    return value


def test_application_answers_health_check(request: pytest.FixtureRequest) -> None:
    url = option(request, "--app-url")
    timeout = request.config.getoption("--app-timeout")
    status, took, reason = operations.health(url, timeout)
    assert status is not None and 200 <= status < 300, (
        f"{operations.shown(url)} should answer 2xx within {timeout:g}s; "
        f"found {status or 'no answer'} ({reason}) after {took:.1f}s"
    )


def test_log_shows_no_errors(request: pytest.FixtureRequest) -> None:
    path = Path(option(request, "--app-log"))
    since_text = request.config.getoption("--since")
    try:
        since = operations.parse_since(since_text) if since_text else None
    except ValueError:
        pytest.fail(f"--since {since_text!r} is neither an ISO time nor 30m / 2h / 1d")
    assert path.is_file(), f"the log {path} should exist; it does not"
    errors = operations.log_errors(path, since)
    assert not errors, (
        f"{path} should show no errors since {since or 'its start'}; first found:\n" + "\n".join(errors)
    )


def newest_backup(request: pytest.FixtureRequest, target: Target) -> Path:
    """The newest backup of the database in --backup-dir; the check fails without one."""
    directory = Path(option(request, "--backup-dir"))
    database = target.identity()
    found = operations.newest_backup(directory, database) if directory.is_dir() else None
    assert found is not None, (
        f"a backup azak_backup_*.sql.gz of {database} should exist in {directory}; none does"
    )
    return found


def test_backup_is_recent(request: pytest.FixtureRequest, target: Target) -> None:
    backup = newest_backup(request, target)
    max_hours = request.config.getoption("--backup-max-age")
    age_h = (time.time() - backup.stat().st_mtime) / 3600
    assert age_h <= max_hours, f"the backup {backup} should be under {max_hours:g} h old; it is {age_h:.1f} h"


def test_backup_holds_stocks(request: pytest.FixtureRequest, target: Target) -> None:
    backup = newest_backup(request, target)
    try:
        holds = operations.backup_holds_stocks(backup)
    except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as exc:
        pytest.fail(f"the backup {backup} should be a valid gzip file; reading it failed: {exc}")
    assert holds, f"the backup {backup} should contain the stocks table; it does not"
