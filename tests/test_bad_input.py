"""Bad input to every command: one clear line, exit 2 for usage and 1 for failures,
no traceback, and the password never printed, in output, report or record."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Db, run, run_verification
from tests.helpers import COMMANDS, SECRET, assert_one_line, fill

# The least a restore accepts: the header, public.stocks, the end mark.
MINIMAL_DUMP = (
    b"-- PostgreSQL database dump\nCREATE TABLE public.stocks (id integer);\n"
    b"-- PostgreSQL database dump complete\n"
)


def migrations(*args: str, url: str | None) -> subprocess.CompletedProcess[str]:
    """`python -m migrations ARGS --db-url URL` in a subprocess, as an operator runs it."""
    argv = [sys.executable, "-m", "migrations", *args]
    return run(argv + (["--db-url", url] if url is not None else []), env={"DATABASE_URL": ""})


@pytest.fixture
def good_backup(app_db: Db, tmp_path: Path) -> Path:
    done = app_db.cli("backup", "--dir", str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    return next((tmp_path / "ok").glob("*.sql.gz"))


BAD_URLS = {
    "malformed URL": ("postgresql://u:" + SECRET + "@127.0.0.1:notaport/db", 2, "error: not a database URL"),
    "non-PostgreSQL URL": (f"mysql://u:{SECRET}@127.0.0.1/db", 2, "error: not a PostgreSQL URL"),
    "unreachable host": (
        f"postgresql://u:{SECRET}@127.0.0.1:1/db",
        1,
        "error: cannot connect to postgresql://u:***@127.0.0.1:1/db",
    ),
    "wrong credentials": (
        f"postgresql://nobody_here:{SECRET}@127.0.0.1/postgres",
        1,
        "error: cannot connect to postgresql://nobody_here:***@127.0.0.1/postgres",
    ),
    "unknown database": (
        f"postgresql://postgres:{SECRET}@127.0.0.1/no_such_db_here",
        1,
        "error: cannot connect",
    ),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD_URLS)
def test_bad_url_gives_one_clear_line(cli, command: str, case: str, tmp_path: Path) -> None:
    url, code, starts = BAD_URLS[case]
    backup = tmp_path / "azak_backup_x.sql.gz"
    with gzip.open(backup, "wb") as out:
        out.write(MINIMAL_DUMP)
    done = cli(*fill(COMMANDS[command], tmp_path, backup), url=url)
    assert_one_line(done, code, starts)


@pytest.mark.parametrize("command", ["upgrade", "downgrade", "status", "plan", "backup"])
def test_database_without_stocks_is_refused(cli, empty_db: Db, command: str, tmp_path: Path) -> None:
    url = empty_db.url.set(password=SECRET).render_as_string(hide_password=False)
    done = cli(*fill(COMMANDS[command], tmp_path, tmp_path), url=url)
    assert_one_line(done, 1, "error: postgresql://")
    assert "has no table public.stocks" in done.stderr
    assert not list(tmp_path.glob("*.sql.gz")), "no backup file is left behind"


@pytest.mark.parametrize(
    "args", [["upgrade", "--to", "nope"], ["downgrade", "--to", "x'; DROP TABLE stocks; --"]]
)
def test_unknown_migration_name_is_a_usage_error(app_db: Db, args: list[str]) -> None:
    done = app_db.cli(*args)
    assert_one_line(done, 2, "error: unknown migration")
    assert app_db.value("SELECT count(*) FROM stocks") > 0


def test_bad_url_in_a_real_process_gives_one_clear_line() -> None:
    url, code, starts = BAD_URLS["unreachable host"]
    assert_one_line(migrations("upgrade", url=url), code, starts)


def test_no_database_given_is_a_usage_error() -> None:
    done = run([sys.executable, "-m", "migrations", "status"], env={"DATABASE_URL": "", "POSTGRES_DB": ""})
    assert_one_line(done, 2, "error: no database given")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"plain text, not gzip", "is not a valid gzip file"),
        (None, "is truncated"),
        (gzip.compress(b"SELECT 1;\n"), "was not written by this kit"),
    ],
    ids=["not gzip", "truncated", "not a dump"],
)
def test_restore_of_a_bad_file_is_refused_and_changes_nothing(
    app_db: Db, good_backup: Path, tmp_path: Path, content: bytes | None, says: str
) -> None:
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(content if content is not None else good_backup.read_bytes()[:-40])
    before = app_db.snapshot()
    done = app_db.cli("restore", str(bad), "--yes")
    assert_one_line(done, 1, "error: ")
    assert says in done.stderr
    assert app_db.snapshot().differences(before) == []


def test_restore_without_confirmation_is_a_usage_error(app_db: Db, good_backup: Path) -> None:
    done = app_db.cli("restore", str(good_backup))
    assert_one_line(done, 2, "error: restore replaces the objects of")


def test_restore_of_a_missing_file_is_a_usage_error(app_db: Db, tmp_path: Path) -> None:
    done = app_db.cli("restore", str(tmp_path / "nothing.sql.gz"), "--yes")
    assert_one_line(done, 2, "error: no such backup file")


def test_restore_after_upgrade_brings_back_the_database_before(app_db: Db, good_backup: Path) -> None:
    before = app_db.snapshot()
    assert app_db.cli("upgrade").returncode == 0
    done = app_db.cli("restore", str(good_backup), "--yes")
    assert done.returncode == 0, done.stderr
    assert app_db.snapshot().differences(before) == []


def test_runbook_restore_with_gunzip_and_psql_works(app_db: Db, good_backup: Path) -> None:
    before = app_db.snapshot()
    assert app_db.cli("upgrade").returncode == 0
    assert app_db.cli("downgrade", "--to", "base").returncode == 0
    sql = gzip.decompress(good_backup.read_bytes())
    url = app_db.url
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            url.host,
            "-p",
            str(url.port),
            "-U",
            url.username,
            "-d",
            url.database,
            "-f",
            "-",
        ],
        input=sql,
        capture_output=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert app_db.snapshot().differences(before) == []


def test_password_appears_nowhere(app_db: Db, tmp_path: Path) -> None:
    """Trust auth here accepts any password, so a real one travels through every command."""
    url = app_db.url.set(password=SECRET).render_as_string(hide_password=False)
    outputs = [
        migrations(*args, url=url)
        for args in (
            ["status"],
            ["plan"],
            ["backup", "--dir", str(tmp_path)],
            ["upgrade"],
            ["status"],
        )
    ]
    report, record = tmp_path / "report.html", tmp_path / "deployments.md"
    verify = run_verification(
        app_db.url.set(password=SECRET),
        f"--html={report}",
        "--self-contained-html",
        f"--record={record}",
        f"--backup-dir={tmp_path}",
        f"--junitxml={tmp_path / 'junit.xml'}",
    )
    outputs += [verify, migrations("downgrade", "--to", "base", url=url)]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    texts = [o.stdout + o.stderr for o in outputs]
    html = report.read_text()
    assert "postgresql://postgres:***@" in html  # the report names the database, masked
    texts += [html, record.read_text(), (tmp_path / "junit.xml").read_text()]
    texts += [gzip.decompress(p.read_bytes()).decode() for p in tmp_path.glob("*.sql.gz")]
    leaks = [i for i, text in enumerate(texts) if SECRET in text]
    assert leaks == [], f"the password leaked into outputs #{leaks}"
