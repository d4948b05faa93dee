"""Backup and restore as the runbook has them: pg_dump plain SQL, gzip; gunzip | psql restores.

Credentials reach pg_dump and psql through their environment (PG* variables), never argv.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import zlib
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import URL

from migrations.dburl import DeployError, UsageError, connect, mask, scalar, scrub

DEFAULT_DIR = Path("data/backups")
END_MARK = b"-- PostgreSQL database dump complete"
# Objects of US-001 that a pre-deployment dump does not know: dropped before it is loaded.
CLEAR_US001 = b"""
DROP TABLE IF EXISTS public.product_info, public.financial_ratios,
    public.stocks_priority_backup, public.schema_migrations CASCADE;
DROP TRIGGER IF EXISTS trigger_stocks_priority_deprecated ON public.stocks;
DROP FUNCTION IF EXISTS public.update_product_info_updated_at(),
    public.update_financial_ratios_updated_at(), public.stocks_priority_deprecated();
"""


def libpq_env(url: URL) -> dict[str, str]:
    """The environment that points libpq tools at `url`."""
    env = dict(os.environ)
    pairs = {
        "PGHOST": url.host or "localhost",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
        "PGCONNECT_TIMEOUT": "5",
    }
    env.update({k: str(v) for k, v in pairs.items() if v})
    return env


def backup(url: URL, directory: Path = DEFAULT_DIR, now: datetime | None = None) -> Path:
    """Dump the database to `directory/azak_backup_YYYYMMDD_HHMMSS.sql.gz`; check it; return it."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            if not scalar(cur, "SELECT to_regclass('public.stocks') IS NOT NULL"):
                raise DeployError(f"{mask(url)} has no table public.stocks: not the application's database")
    finally:
        conn.close()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    path = directory / f"azak_backup_{stamp}.sql.gz"
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wb") as sink:
        proc = subprocess.Popen(
            ["pg_dump", "--format=plain", "--clean", "--if-exists", "--no-password"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=libpq_env(url),
        )
        stdout = proc.stdout
        assert stdout is not None
        for chunk in iter(lambda: stdout.read(1 << 16), b""):
            sink.write(chunk)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            partial.unlink(missing_ok=True)
            raise DeployError(f"pg_dump of {mask(url)} failed: {first_line(err, url)}")
    partial.rename(path)
    check(path, require_table="stocks")
    return path


def check(path: Path, require_table: str | None = None) -> None:
    """A backup is a complete gzip'd pg_dump (and holds `require_table`), else DeployError."""
    if not path.is_file():
        raise UsageError(f"no such backup file: {path}")
    found_table, tail = False, b""
    create = f"CREATE TABLE public.{require_table} (".encode() if require_table else b""
    try:
        with gzip.open(path, "rb") as source:
            head = source.read(64)
            if b"PostgreSQL database dump" not in head:
                raise DeployError(f"{path} is not a pg_dump SQL file")
            tail = head
            for chunk in iter(lambda: source.read(1 << 16), b""):
                window = tail[-256:] + chunk
                found_table = found_table or (bool(create) and create in window)
                tail = window
    except (gzip.BadGzipFile, OSError, zlib.error) as exc:
        raise DeployError(f"{path} is not a valid gzip file ({exc})") from None
    except EOFError:
        raise DeployError(f"{path} is truncated (the gzip stream ends early)") from None
    if END_MARK not in tail:
        raise DeployError(f"{path} is truncated (no end-of-dump mark)")
    if require_table and not found_table:
        raise DeployError(f"{path} holds no table {require_table}")


def restore(url: URL, path: Path) -> None:
    """Load a backup into `url` in one transaction: fully, or not at all."""
    check(path)
    connect(url).close()  # a bad URL says so the same way as every other command
    proc = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=libpq_env(url),
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(CLEAR_US001)
        with gzip.open(path, "rb") as source:
            for chunk in iter(lambda: source.read(1 << 16), b""):
                proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise DeployError(f"restore into {mask(url)} failed, nothing changed: {first_line(err, url)}")


def first_line(text: str, url: URL) -> str:
    """The first error line of a libpq tool's stderr, password scrubbed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return scrub((errors or lines or ["(no message)"])[0].strip(), url)
