"""A verifier role without USAGE on schema public gets one clear failure.

Guarantee: where a hardened database withholds USAGE on `public` from the verifying role,
verification does not crash (no INTERNALERROR, exit 1 like any failed verification): one
check fails naming the missing privilege and the GRANT that gives it, every check that reads
the database is reported as not checked saying why, and the HTML report and the record row
are written. In a fleet, only that database's checks are held back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations.dburl import mask
from tests.checks import ACCESS
from tests.conftest import US001_HEAD, Db, run_verification, throwaway_role

CLOSED = "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}; REVOKE ALL ON SCHEMA public FROM PUBLIC;"


@pytest.fixture
def hardened_role(deployed_db: Db) -> Iterator[str]:
    """CONNECT and SELECT, but schema public closed to it (REVOKE ... FROM PUBLIC)."""
    grants = f"GRANT CONNECT ON DATABASE {deployed_db.url.database} TO {{role}}; " + CLOSED
    with throwaway_role(deployed_db, "azak_hard", grants) as role:
        yield role


def test_no_usage_on_public_is_one_failed_check_with_report_and_record(
    deployed_db: Db, hardened_role: str, tmp_path: Path
) -> None:
    report, record = tmp_path / "report.html", tmp_path / "deployments.md"
    reader = deployed_db.at(deployed_db.url.set(username=hardened_role))
    result = reader.verify(f"--html={report}", "--self-contained-html", f"--record={record}")
    assert result.returncode == 1, result.output[-3000:]
    assert "INTERNALERROR" not in result.output and "Traceback" not in result.output
    assert result.failed == {ACCESS} and result.passed == set(), result.output[-3000:]
    says = f"the role {hardened_role} has no USAGE on schema public (GRANT USAGE ON SCHEMA public TO {hardened_role})"
    assert says in result.output
    assert re.search(rf"^\s+tables\s+not checked: {re.escape(says)}$", result.output, re.M), result.output[
        -3000:
    ]
    assert "no USAGE on schema public" in report.read_text()
    row = record.read_text().splitlines()[-1]
    assert "| FAILED |" in row and "failed: other: access" in row and "no USAGE on schema public" in row


def test_in_a_fleet_only_the_closed_databases_checks_are_held_back(
    deployed_db: Db, hardened_role: str, tmp_path: Path
) -> None:
    closed = deployed_db.url.set(username=hardened_role)
    result = run_verification(
        None,
        f"--to={US001_HEAD}",
        f"--db-url={deployed_db.text_url}",
        f"--db-url={closed.render_as_string(hide_password=False)}",
        f"--junitxml={tmp_path / 'junit.xml'}",
        "-rA",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "INTERNALERROR" not in result.stdout + result.stderr
    assert (
        f"FAILED verification/test_access.py::test_verifying_role_may_use_schema_public[{mask(closed)}]"
        in (result.stdout)
    )
    assert (
        f"PASSED verification/test_tables.py::test_tables_and_columns_are_as_expected[{mask(deployed_db.url)}]"
        in (result.stdout)
    )
    assert f"FAILED on {mask(deployed_db.url)}" not in result.stdout
