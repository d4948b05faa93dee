"""Checklist: the application works, the logs show no errors, a recent backup restores here.

Each needs an option; without it the check is skipped with the reason in the report.
"""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from migrations import provenance
from migrations.dburl import DeployError
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
    manifest = provenance.peek(backup)
    assert manifest is not None, f"the backup {backup} should carry the kit's header; it does not"
    age_h = (datetime.now(timezone.utc) - manifest.taken).total_seconds() / 3600
    assert age_h <= max_hours, (
        f"the backup {backup} should be under {max_hours:g} h old; it is {age_h:.1f} h"
        f" (taken at {manifest.taken_at}, as its header records)"
    )


def test_backup_is_restorable(request: pytest.FixtureRequest, target: Target) -> None:
    """Restorable: signed by the kit, whole (every byte matches its digest, pg_dump's end mark),
    and a backup of this very database."""
    backup = newest_backup(request, target)
    here = provenance.Identity.of(target.rows(provenance.IDENTITY_SQL)[0])
    try:
        operations.restorable(backup, here)
    except (DeployError, OSError) as exc:
        pytest.fail(f"the backup {backup} should be one that restore loads into this database; {exc}")
