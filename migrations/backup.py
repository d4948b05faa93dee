"""Backups as the runbook has them: one gzip'd SQL file that `gunzip` + `psql -f` restores.

pg_dump writes a custom-format archive, and pg_restore turns it into one script that is a
single transaction (`migrations.dump`); the kit adds its teardown right after that BEGIN
(what the migrations create, which a pre-deployment dump does not know) and puts its signed
header line first (`provenance`): whose backup it is, when, the digest of
every byte after that line, and where the teardown ends and the COMMIT begins. Nothing the
database holds is formatted into the file by the kit: names reach it through pg_dump, or
through psycopg2's `sql` module (the teardown), or as escaped JSON (the header).

The kit's registry (schema azak_registry: ledger, before-images, history) is left out of the
dump; after the teardown the file carries one statement (`history.restored_sql`, a random
token and a date, nothing else) that sets the registry's ledger to the one this backup was
taken with and, when restored outside the kit (`psql -f`), adds the restore to its history.

A backup is private (directory 0700, file 0600), built in a directory its process holds
locked, checked, then given its final, never reused name (`migrations.backup_files`).
"""

from __future__ import annotations

import gzip
import os
import secrets
import shutil
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from psycopg2 import sql

from migrations import application, faults, ledger, provenance
from migrations.backup_files import publish, workspace
from migrations.contract import teardown
from migrations.dburl import KIT_PATH, URL, DeployError, UsageError, connect
from migrations.dump import dump, script
from migrations.history import restored_sql
from migrations.provenance import CHUNK, Identity, Manifest
from migrations.steps import load_all

DEFAULT_DIR = Path("data/backups")


def teardown_sql() -> sql.Composed:
    """SQL dropping every object the migrations (and the ledger) create, which a pre-deployment
    dump does not know: from their contracts, idempotent, error-free in any state. CASCADE on
    a function takes its triggers along."""
    return teardown([ledger.LEGACY, *(m.contract for m in load_all())])


def inspect(url: URL) -> tuple[Identity, str, bytes]:
    """The application's database (else DeployError): its identity, encoding and the teardown
    as this server quotes it."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            application.require(cur, url)
            identity, encoding = provenance.identity_of(cur)
            return identity, encoding, teardown_sql().as_string(conn).encode("ascii")
    finally:
        conn.close()


def backup(url: URL, directory: Path = DEFAULT_DIR, now: datetime | None = None) -> Path:
    """Dump the database to `directory/azak_backup_YYYYMMDD_HHMMSS[_N].sql.gz`; check it; return it.
    `now` (local time) names it and is the time its header records."""
    identity, encoding, clear = inspect(url)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory} is not a directory")
    taken = now or datetime.now()
    try:
        with workspace(directory) as work:
            archive, body = work / "dump", work / "body.gz"
            kept = dump(url, archive)
            faults.fault("backup:dumped")
            token = secrets.token_hex(16)  # names this backup in the registry's history
            told = f"\n-- Backup: {token}\n{restored_sql(token, taken, *kept)}".encode("ascii")
            layout = script(archive, body, clear + told, work)
            manifest = Manifest(
                identity=identity,
                taken_at=taken.astimezone(timezone.utc).isoformat(timespec="seconds"),
                encoding=encoding,
                **asdict(layout),
            )
            final = work / "backup.sql.gz"
            with (
                os.fdopen(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out,
                body.open("rb") as rest,
            ):
                out.write(gzip.compress(provenance.header(manifest), mtime=0))
                shutil.copyfileobj(rest, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            with final.open("rb") as written:
                provenance.verify(written, final.name)  # what restore will check, checked now
            return publish(final, directory, taken.strftime("%Y%m%d_%H%M%S"))
    except OSError as exc:
        raise DeployError(
            f"cannot write the backup in {directory}: {exc.strerror or exc}; no backup file was left"
        ) from None
