"""A backup's body: pg_dump's custom-format archive, turned by pg_restore into one script that
is a single transaction (BEGIN ... COMMIT, large objects included), with the kit's teardown
(and the registry's statement) put right after its BEGIN, gzip'd as it streams.

pg_dump reaches the database through `dburl.libpq_command`, the same settings as every
connection of the kit; the password travels in PGPASSWORD, never in argv.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from migrations import registry
from migrations.dburl import KIT_PATH, URL, DeployError, connect, libpq_command, mask, scalar, scrub
from migrations.progress import Counting, Progress
from migrations.provenance import CHUNK

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


def dump(url: URL, archive: Path) -> tuple[str, tuple[int, str] | None]:
    """pg_dump's custom-format archive of `url` (uncompressed: it lives for this backup only); what
    the backup carries of the registry, as that dump saw it (`registry.carried`, read in the
    snapshot pg_dump takes up)."""
    argv, env = libpq_command(url)
    command = ["pg_dump", "--format=custom", "--compress=0", "--quote-all-identifiers", "--no-password"]
    command.append("--exclude-schema=azak_registry")  # the kit's registry keeps its history on restore
    conn = connect(url, **KIT_PATH)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            snapshot = scalar(cur, "SELECT pg_export_snapshot()")
            kept = registry.carried(cur)
            done = subprocess.run(
                [*command, f"--snapshot={snapshot}", f"--file={archive}", *argv],
                capture_output=True,
                env=env,
                check=False,
            )
    except FileNotFoundError:
        raise DeployError("pg_dump not found: install the PostgreSQL client tools") from None
    finally:
        conn.close()
    if done.returncode:
        said = done.stderr.decode(errors="replace") or f"exit status {done.returncode}"
        raise DeployError(f"pg_dump of {mask(url)} failed: {first_line(said, url)}; no backup file was left")
    return kept


# The schema public itself (its comment, its privileges) is the server's, not the application's:
# on PostgreSQL 13 it belongs to the bootstrap superuser, and a restore by the application's
# owner could not touch it. pg_restore's table of contents, less those entries.
SCHEMA_PUBLIC = re.compile(rb'^\d+; \d+ \d+ (?:SCHEMA - "?public"?|(?:COMMENT|ACL) - SCHEMA "?public"?) ')


def application_entries(archive: Path, work: Path) -> Path:
    """pg_restore's list of the archive's entries, less the schema public's own: its path."""
    try:
        done = subprocess.run(["pg_restore", "--list", str(archive)], capture_output=True, check=False)
    except FileNotFoundError:
        raise DeployError("pg_restore not found: install the PostgreSQL client tools") from None
    if done.returncode:
        said = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise DeployError(f"pg_restore --list of the dump failed: {said[:200]}; no backup file was left")
    kept = b"\n".join(line for line in done.stdout.split(b"\n") if not SCHEMA_PUBLIC.match(line))
    listing = work / "entries.list"
    listing.write_bytes(kept + b"\n")
    return listing


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
    listing = application_entries(archive, work)
    command = ["pg_restore", "--clean", "--if-exists", "--single-transaction", f"--use-list={listing}"]
    command += ["--file=-", str(archive)]
    digest, size, teardown_end, tail = hashlib.sha256(), 0, 0, b""
    with (work / "restore.err").open("w+b") as err:
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        except FileNotFoundError:
            raise DeployError("pg_restore not found: install the PostgreSQL client tools") from None
        assert proc.stdout is not None
        try:
            with (
                body.open("wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as sink,
                Progress("backup", archive.stat().st_size, unit="bytes") as shown,
            ):
                source = Counting(proc.stdout, shown)  # the script, of about the archive's size
                head = source.read(MAX_HEAD)
                at = head.find(BEGIN)
                if at < 0 or not all(HEAD_LINE.fullmatch(line) for line in head[:at].split(b"\n")):
                    raise DeployError(
                        "pg_restore's script does not start as expected (comments, then BEGIN);"
                        " no backup file was left"
                    )
                cut = at + len(BEGIN)
                rest = iter(lambda: source.read(CHUNK), b"")
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


def first_line(text: str, url: URL | None) -> str:
    """The first error line of a libpq tool's stderr, password scrubbed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return scrub((errors or lines or ["(no message)"])[0].strip(), url)
