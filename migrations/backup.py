"""Backups as the runbook has them: one gzip'd SQL file that `gunzip` + `psql -f` restores.

pg_dump writes a custom-format archive, and pg_restore turns it into one script that is a
single transaction (BEGIN ... COMMIT, large objects included); the kit adds its teardown
right after that BEGIN (what the migrations create, which a pre-deployment dump does not know) and
puts its signed header line first (`provenance`): whose backup it is, when, the digest of
every byte after that line, and where the teardown ends and the COMMIT begins. Nothing the
database holds is formatted into the file by the kit: names reach it through pg_dump, or
through psycopg2's `sql` module (the teardown), or as escaped JSON (the header).

The kit's registry (schema azak_registry: ledger, before-images, history) is left out of the
dump; after the teardown the file carries one statement (`history.restored_sql`, a random
token and a date, nothing else) that sets the registry's ledger to the one this backup was
taken with and, when restored outside the kit (`psql -f`), adds the restore to its history.

A backup is private (directory 0700, file 0600), built in a `.azak_backup_*.partial`
directory that its process holds locked, checked, then given its final, never reused name.
A backup sweeps the leftovers of killed ones: the directories nobody holds.

pg_dump reaches the database through `dburl.libpq_command`, the same settings as every
connection of the kit; the password travels in PGPASSWORD, never in argv.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import chain
from pathlib import Path

from psycopg2 import sql

from migrations import application, ledger, provenance
from migrations.contract import teardown
from migrations.dburl import URL, DeployError, UsageError, connect, libpq_command, mask, scrub
from migrations.faults import fault
from migrations.history import restored_sql
from migrations.provenance import CHUNK, Identity, Manifest
from migrations.steps import load_all

DEFAULT_DIR = Path("data/backups")
PARTIAL = ".azak_backup_*.partial"
PRELUDE = (
    b"\n-- azak-db-migrations: first what the migrations create is dropped (the dump below may not\n"
    b"-- know it), and the ledger of the kit's registry (azak_registry, not in the dump) is set to the\n"
    b"-- one of this backup. The whole file is one transaction: `psql -f` of it loads all of it or\n"
    b"-- nothing.\n"
    b"SET client_min_messages = warning;\n"
)
BEGIN = b"\nBEGIN;\n"
MAX_HEAD = 64 << 10
HEAD_LINE = re.compile(rb"(--.*|\\restrict [A-Za-z0-9]+|)")
TAIL = re.compile(
    rb"\n(COMMIT;\n\n--\n-- PostgreSQL database dump complete\n--\n\n(\\unrestrict [A-Za-z0-9]+\n)?\n*)\Z"
)


def teardown_sql() -> sql.Composed:
    """SQL dropping every object the migrations (and the ledger) create, which a pre-deployment
    dump does not know: from their contracts, idempotent, error-free in any state. CASCADE on
    a function takes its triggers along."""
    return teardown([ledger.LEGACY, *(m.contract for m in load_all())])


def inspect(url: URL) -> tuple[Identity, str, bytes]:
    """The application's database (else DeployError): its identity, encoding and the teardown
    as this server quotes it."""
    conn = connect(url)
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
            dump(url, archive)
            fault("backup:dumped")
            token = secrets.token_hex(16)  # names this backup in the registry's history
            told = f"\n-- Backup: {token}\n{restored_sql(token, taken)}".encode("ascii")
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


@contextmanager
def workspace(directory: Path) -> Iterator[Path]:
    """A private `.azak_backup_*.partial` directory, held locked (flock) while this backup
    lives and removed after it. Made under the backup directory's own lock, which is also
    when a killed backup's leftover (a .partial nobody holds) is swept."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(directory):
        sweep(directory)
        work = Path(tempfile.mkdtemp(prefix=".azak_backup_", suffix=".partial", dir=directory))
        held = os.open(work, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(held)


@contextmanager
def locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """flock on a file or directory for the block; whether it was had (non-blocking)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def sweep(directory: Path) -> None:
    """Remove the .partial leftovers of backups that died (their lock is free)."""
    for left in directory.glob(PARTIAL):
        try:
            with locked(left, blocking=False) as free:
                if free:
                    shutil.rmtree(left) if left.is_dir() else left.unlink()
        except FileNotFoundError:
            continue


def dump(url: URL, archive: Path) -> None:
    """pg_dump's custom-format archive of `url` (uncompressed: it lives for this backup only)."""
    argv, env = libpq_command(url)
    command = ["pg_dump", "--format=custom", "--compress=0", "--quote-all-identifiers", "--no-password"]
    command.append("--exclude-schema=azak_registry")  # the kit's registry keeps its history on restore
    try:
        done = subprocess.run(
            [*command, f"--file={archive}", *argv], capture_output=True, env=env, check=False
        )
    except FileNotFoundError:
        raise DeployError("pg_dump not found: install the PostgreSQL client tools") from None
    if done.returncode:
        said = done.stderr.decode(errors="replace") or f"exit status {done.returncode}"
        raise DeployError(f"pg_dump of {mask(url)} failed: {first_line(said, url)}; no backup file was left")


@dataclass
class Layout:
    """What follows a backup's header line: its digest, length, and where its teardown ends
    and its COMMIT begins."""

    sha256: str
    bytes: int
    teardown_end: int
    commit_at: int


def script(archive: Path, body: Path, clear: bytes, work: Path) -> Layout:
    """pg_restore's single-transaction script of the archive, the teardown (and the registry's
    statement) put right after its BEGIN, gzip'd into `body` as it streams; pg_restore's own
    head and end are checked."""
    command = ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--file=-", str(archive)]
    digest, size, teardown_end, tail = hashlib.sha256(), 0, 0, b""
    with (work / "restore.err").open("w+b") as err:
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        except FileNotFoundError:
            raise DeployError("pg_restore not found: install the PostgreSQL client tools") from None
        assert proc.stdout is not None
        try:
            with body.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as sink:
                head = proc.stdout.read(MAX_HEAD)
                at = head.find(BEGIN)
                if at < 0 or not all(HEAD_LINE.fullmatch(line) for line in head[:at].split(b"\n")):
                    raise DeployError(
                        "pg_restore's script does not start as expected (comments, then BEGIN);"
                        " no backup file was left"
                    )
                cut = at + len(BEGIN)
                rest = iter(lambda: proc.stdout.read(CHUNK), b"")  # type: ignore[union-attr]
                for i, piece in enumerate(chain([head[:cut], PRELUDE + clear, head[cut:]], rest)):
                    digest.update(piece)
                    sink.write(piece)
                    size += len(piece)
                    tail = (tail + piece)[-1024:]
                    if i == 1:
                        teardown_end = size
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code:
            err.seek(0)
            said = err.read().decode(errors="replace") or f"exit status {code}"
            raise DeployError(
                f"pg_restore of the archive failed: {first_line(said, None)}; no backup file was left"
            )
    end = TAIL.search(tail)
    if end is None:
        raise DeployError(
            "pg_restore's script does not end with COMMIT and the end mark; no backup file was left"
        )
    return Layout(digest.hexdigest(), size, teardown_end, size - len(end.group(1)))


def publish(partial: Path, directory: Path, stamp: str) -> Path:
    """Give the checked file its name: the runbook's, with _2, _3, ... if taken (never overwrites,
    even by a backup running beside this one: os.link fails on an existing name)."""
    for n in range(1, 10_000):
        final = directory / (f"azak_backup_{stamp}.sql.gz" if n == 1 else f"azak_backup_{stamp}_{n}.sql.gz")
        try:
            os.link(partial, final)
        except FileExistsError:
            continue
        return final
    raise DeployError(f"no free backup name for {stamp} in {directory}")


def first_line(text: str, url: URL | None) -> str:
    """The first error line of a libpq tool's stderr, password scrubbed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return scrub((errors or lines or ["(no message)"])[0].strip(), url)
