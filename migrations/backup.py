"""Backup and restore as the runbook has them: pg_dump plain SQL, gzip; gunzip | psql restores.

A backup is private (directory 0700, file 0600), written under a temporary name and given its
final, never reused name only once it is checked. The file is one transaction that first
drops what US-001 creates, so the runbook's `gunzip` + `psql -f` brings back the database
before, all or nothing, even on an upgraded database.

A restore reads the whole file before it writes: only SQL that pg_dump writes passes (no psql
meta-command but pg_dump's own `\\restrict`/`\\unrestrict`, no transaction control, COPY only
FROM stdin). It then runs the statements itself, through psycopg2, in ONE transaction on one
connection holding the deployment lock: a kill at any moment drops the connection, and
PostgreSQL rolls everything back.

pg_dump reaches the database through `dburl.libpq_command`, the same settings as every
connection of the kit; the password travels in PGPASSWORD, never in argv.
"""

from __future__ import annotations

import gzip
import os
import re
import secrets
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from migrations import ledger
from migrations.contract import teardown
from migrations.dburl import (
    IDENTITY_SQL,
    URL,
    DeployError,
    UsageError,
    connect,
    describe,
    libpq_command,
    mask,
    scalar,
    scrub,
)
from migrations.history import restored_sql
from migrations.runner import LOCK_KEY, fault
from migrations.steps import load_all

DEFAULT_DIR = Path("data/backups")
HEADER = b"-- PostgreSQL database dump"
END_MARK = b"-- PostgreSQL database dump complete"
GZIP_MAGIC = b"\x1f\x8b"


def teardown_sql() -> str:
    """SQL dropping every object the migrations (and the ledger) create, which a pre-deployment
    dump does not know: from their contracts, idempotent, error-free in any state. CASCADE on
    a function takes its triggers (trigger_stocks_priority_deprecated on stocks, ...) along."""
    return teardown([ledger.LEGACY, *(m.contract for m in load_all())])


ORIGIN = re.compile(rb"^-- Database: (.+)$", re.M)


def origin(path: Path) -> str | None:
    """The database a backup of the kit was taken of (`name on server N`); None for another dump."""
    try:
        with open_dump(path) as source:  # its first 4 KiB: the header
            found = ORIGIN.search(source.read(4096))
    except (OSError, EOFError, zlib.error, DeployError):
        return None
    return found[1].decode(errors="replace") if found else None


def prelude(database: str) -> bytes:
    """What a backup file says before pg_dump's output: whose it is, one transaction, what the
    migrations create cleared, and the kit's registry (not in the dump) told of the restore."""
    token = secrets.token_hex(16)
    return (
        HEADER
        + f"\n--\n-- Database: {database}\n-- Backup: {token}\n".encode()
        + b"--\n-- Written by azak-db-migrations `backup`. The whole file is one transaction\n"
        b"-- (BEGIN ... COMMIT): `psql -f` of it, with or without ON_ERROR_STOP, loads all of it\n"
        b"-- or nothing. First it drops what US-001 creates, which the dump below does not know,\n"
        b"-- and sets the ledger of the kit's registry (azak_registry) to the one of this backup.\n"
        b"--\n\nBEGIN;\nSET client_min_messages = warning;\n"
        + teardown_sql().encode()
        + b"\n"
        + restored_sql(token, datetime.now()).encode()
        + b"\n"
    )


EPILOGUE = b"\nCOMMIT;\n\n" + END_MARK + b"\n"


# -- reading a dump -------------------------------------------------------------------------


@dataclass
class Event:
    """One thing a dump holds: a statement, a psql meta-command, or a line of COPY data."""

    kind: str  # "sql" | "meta" | "copy-data" | "copy-end"
    line: int
    text: bytes


META_OK = re.compile(rb"^\\(restrict|unrestrict) [A-Za-z0-9]+\s*$")
COPY_STDIN = re.compile(rb"^COPY\s.*\sFROM\s+stdin\s*;\s*$", re.I | re.S)
COPY_ANY = re.compile(rb"^COPY\b", re.I)
TX_CONTROL = re.compile(
    rb"^(BEGIN|COMMIT|ROLLBACK|END|ABORT|START\s+TRANSACTION|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.I,
)
SPECIAL = re.compile(rb"[-'\"$/\\;]")
DOLLAR = re.compile(rb"\$([A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$")
IDENT = re.compile(rb"[A-Za-z_0-9$\x80-\xff]")


def bare(statement: bytes) -> bytes:
    """A statement without its leading whitespace and comments (-- and nested /* */)."""
    text = statement.lstrip()
    while text.startswith((b"--", b"/*")):
        if text.startswith(b"--"):
            text = text.partition(b"\n")[2].lstrip()
            continue
        depth, i = 1, 2
        while depth and i < len(text):
            found = re.compile(rb"/\*|\*/").search(text, i)
            if found is None:
                return b""
            depth += 1 if found.group(0) == b"/*" else -1
            i = found.end()
        text = text[i:].lstrip()
    return text


class DumpError(DeployError):
    """A file that is not (or not only) what pg_dump writes."""


def open_dump(path: Path) -> BinaryIO:
    """The file as bytes: gunzipped if it is a .gz (the runbook's gunzip'd .sql works too)."""
    if not path.is_file():
        raise UsageError(f"no such backup file: {path}")
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return cast(BinaryIO, gzip.open(path, "rb"))
    if path.name.endswith(".gz"):
        raise DeployError(f"{path} is not a valid gzip file")
    return path.open("rb")


# pg_dump's longest line is one row of COPY data; a larger one is no dump (a gzip bomb).
MAX_LINE = 64 << 20
MAX_STATEMENT = 256 << 20
# The tracking of quotes assumes standard_conforming_strings on, as pg_dump sets it; a
# statement turning it (or backslash_quote, escape_string_warning) any other way is refused.
LITERAL_RULES = re.compile(rb"standard_conforming_strings|backslash_quote", re.I)
SCS_ON = re.compile(rb"^\s*SET\s+standard_conforming_strings\s*(=|TO)\s*'?on'?\s*;\s*$", re.I)


def events(path: Path) -> Iterator[Event]:
    """The dump's statements, meta-commands and COPY data, in order; DumpError at the first
    thing pg_dump would not write, or at a truncated end. Quoting (single, E'', double,
    dollar), comments (--, nested /* */) and COPY data are tracked, so that a backslash is a
    meta-command exactly where psql would take it for one."""
    mode, tag, depth = "sql", b"", 0
    buffer: list[bytes] = []
    lineno = 0
    last: list[bytes] = []  # the last non-empty lines: the end mark is a comment among them
    held = 0  # bytes of the statement being read: a file is read in bounded memory
    with open_dump(path) as source:
        try:
            for raw in iter(lambda: source.readline(MAX_LINE + 1), b""):
                lineno += 1
                held = held + len(raw) if mode != "copy" else 0
                if len(raw) > MAX_LINE or held > MAX_STATEMENT:
                    raise DumpError(
                        f"{path} line {lineno}: a line or statement longer than pg_dump writes"
                        f" ({MAX_STATEMENT >> 20} MiB at most); refused, nothing changed"
                    )
                if mode == "copy":
                    if raw.rstrip(b"\r\n") == b"\\.":
                        mode = "sql"
                        yield Event("copy-end", lineno, raw)
                    else:
                        yield Event("copy-data", lineno, raw)
                    continue
                if raw.strip():
                    last = [*last[-7:], raw]
                if mode == "sql" and raw.startswith(b"\\") and not bare(b"".join(buffer)).strip():
                    if not META_OK.match(raw):
                        raise DumpError(
                            f"{path} line {lineno}: psql meta-command {shown(raw)}"
                            " (pg_dump writes none but \\restrict and \\unrestrict); refused, nothing changed"
                        )
                    buffer = []
                    yield Event("meta", lineno, raw)
                    continue
                i, n, line = 0, len(raw), raw
                while i < n:
                    if mode == "sql":
                        found = SPECIAL.search(line, i)
                        if found is None:
                            break
                        i = found.start()
                        c = line[i : i + 1]
                        if c == b"-" and line[i + 1 : i + 2] == b"-":
                            break  # comment to the end of the line
                        if c == b"/" and line[i + 1 : i + 2] == b"*":
                            mode, depth, i = "comment", 1, i + 2
                        elif c == b"'":
                            e_string = i > 0 and line[i - 1 : i] in (b"E", b"e")
                            e_string = e_string and not (i > 1 and IDENT.match(line, i - 2))
                            mode, i = ("estring" if e_string else "squote"), i + 1
                        elif c == b'"':
                            mode, i = "dquote", i + 1
                        elif c == b"$":
                            dollar = DOLLAR.match(line, i)
                            if dollar and not (i > 0 and IDENT.match(line, i - 1)):
                                mode, tag, i = "dollar", dollar.group(0), dollar.end()
                            else:
                                i += 1
                        elif c == b"\\":
                            raise DumpError(
                                f"{path} line {lineno}: psql meta-command {shown(line[i:])} outside quotes,"
                                " comments and COPY data (pg_dump writes none); refused, nothing changed"
                            )
                        elif c == b";":
                            statement = b"".join(buffer) + line[: i + 1]
                            buffer, line, n, i, held = [], line[i + 1 :], len(line) - i - 1, 0, 0
                            if LITERAL_RULES.search(bare(statement)) and not SCS_ON.match(bare(statement)):
                                raise DumpError(
                                    f"{path} line {lineno}: {shown(bare(statement))} changes how string"
                                    " literals are read (pg_dump sets standard_conforming_strings on);"
                                    " refused, nothing changed"
                                )
                            yield Event("sql", lineno - bare(statement).count(b"\n"), statement)
                            if COPY_STDIN.match(bare(statement)):
                                if line.strip():
                                    raise DumpError(f"{path} line {lineno}: text after COPY ... FROM stdin;")
                                mode = "copy"
                                line = b""
                                break
                        else:
                            i += 1
                    elif mode in ("squote", "dquote"):
                        quote = b"'" if mode == "squote" else b'"'
                        j = line.find(quote, i)
                        if j < 0:
                            i = n
                        elif line[j + 1 : j + 2] == quote:
                            i = j + 2
                        else:
                            mode, i = "sql", j + 1
                    elif mode == "estring":
                        found = re.compile(rb"['\\]").search(line, i)
                        if found is None:
                            i = n
                        elif found.group(0) == b"\\" or line[found.start() + 1 : found.start() + 2] == b"'":
                            i = found.start() + 2
                        else:
                            mode, i = "sql", found.start() + 1
                    elif mode == "dollar":
                        j = line.find(tag, i)
                        mode, i = ("dollar", n) if j < 0 else ("sql", j + len(tag))
                    else:  # nested /* */ comment
                        found = re.compile(rb"/\*|\*/").search(line, i)
                        if found is None:
                            i = n
                        else:
                            depth += 1 if found.group(0) == b"/*" else -1
                            i = found.end()
                            mode = "comment" if depth else "sql"
                if mode != "copy":
                    buffer.append(line)
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise DeployError(f"{path} is not a valid gzip file ({exc})") from None
        except EOFError:
            raise DeployError(f"{path} is truncated (the gzip stream ends early)") from None
    if mode != "sql" or bare(b"".join(buffer)).strip():
        where = {"copy": "COPY data", "comment": "a comment"}.get(mode, "a statement")
        raise DumpError(f"{path} is truncated (it ends inside {where}, line {lineno})")
    yield Event("end", lineno, b"".join(last))


def shown(text: bytes) -> str:
    """A line of a refused file, as an error message shows it."""
    return repr(text.strip()[:40].decode(errors="replace"))


@dataclass
class Summary:
    """What a checked dump holds."""

    statements: int
    first_begin: bool  # the file's own BEGIN ... COMMIT (backups written by this kit)


def check(path: Path, require_table: str | None = None) -> Summary:
    """A backup is a complete pg_dump (gzip'd or not) holding only what pg_dump writes (and
    `require_table`), else DeployError naming the line and why. Reads; never writes."""
    with open_dump(path) as source:
        try:
            head = source.read(64)
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise DeployError(f"{path} is not a valid gzip file ({exc})") from None
        except EOFError:
            raise DeployError(f"{path} is truncated (the gzip stream ends early)") from None
    if b"PostgreSQL database dump" not in head:
        raise DumpError(f"{path} is not a pg_dump SQL file")
    create = f"CREATE TABLE public.{require_table} (".encode() if require_table else b""
    found_table, end_mark, count = not create, False, 0
    sqls: list[bytes] = []
    for event in events(path):
        if event.kind == "end":
            end_mark = END_MARK in event.text
        if event.kind != "sql":
            continue
        count += 1
        body = bare(event.text)
        if create and body.startswith(create):
            found_table = True
        if COPY_ANY.match(body) and not COPY_STDIN.match(body):
            raise DumpError(f"{path} line {event.line}: COPY other than FROM stdin; refused, nothing changed")
        if TX_CONTROL.match(body):
            sqls.append(body.split(None, 1)[0].rstrip(b";").upper() + b"@" + str(count).encode())
    if not end_mark:
        raise DeployError(f"{path} is truncated (no end-of-dump mark)")
    own = sqls == [b"BEGIN@1", f"COMMIT@{count}".encode()]
    if sqls and not own:
        raise DumpError(
            f"{path}: transaction control ({', '.join(s.decode() for s in sqls)}) other than one BEGIN first"
            " and COMMIT last; refused, nothing changed"
        )
    if not found_table:
        raise DumpError(
            f"{path} holds no CREATE TABLE public.{require_table}: not a dump of the application's database"
        )
    return Summary(count, own)


# -- backup ---------------------------------------------------------------------------------


def require_stocks(url: URL) -> str:
    """Backups and restores are of the application's database only; which database it is."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            if not scalar(cur, "SELECT to_regclass('public.stocks') IS NOT NULL"):
                raise DeployError(f"{mask(url)} has no table public.stocks: not the application's database")
            return str(scalar(cur, IDENTITY_SQL))
    finally:
        conn.close()


def identity(url: URL) -> str:
    """Which database `url` is: `name on server N` (it may be empty: a restore makes it)."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            return str(scalar(cur, IDENTITY_SQL))
    finally:
        conn.close()


def backup(url: URL, directory: Path = DEFAULT_DIR, now: datetime | None = None) -> Path:
    """Dump the database to `directory/azak_backup_YYYYMMDD_HHMMSS[_N].sql.gz`; check it; return it."""
    database = require_stocks(url)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--dir {directory} is not a directory")
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".azak_backup_", suffix=".partial", dir=directory)  # 0600
    except OSError as exc:
        raise DeployError(f"cannot write a backup in {directory}: {exc.strerror or exc}") from None
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", filename="") as sink:
                sink.write(prelude(database))
                dump_into(url, sink)
                sink.write(EPILOGUE)
            raw.flush()
            os.fsync(raw.fileno())
        check(partial, require_table="stocks")
        return publish(partial, directory, stamp)
    except OSError as exc:
        raise DeployError(
            f"cannot write the backup in {directory}: {exc.strerror or exc}; no backup file was left"
        ) from None
    finally:
        partial.unlink(missing_ok=True)


def dump_into(url: URL, sink: gzip.GzipFile) -> None:
    """Stream `pg_dump --clean --if-exists` of `url` into `sink`."""
    argv, env = libpq_command(url)
    proc = subprocess.Popen(
        # the kit's registry is not the application's: a restore leaves its history in place
        ["pg_dump", "--format=plain", "--clean", "--if-exists", "--exclude-schema=azak_registry"]
        + ["--no-password", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    try:
        for chunk in iter(lambda: stdout.read(1 << 16), b""):
            sink.write(chunk)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise DeployError(f"pg_dump of {mask(url)} failed: {first_line(err, url)}; no backup file was left")


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


# -- restore --------------------------------------------------------------------------------


class CopySource:
    """COPY ... FROM stdin data for cursor.copy_expert, pulled from the dump as it streams."""

    def __init__(self, stream: Iterator[Event]) -> None:
        self.stream = stream
        self.done = False

    def read(self, size: int = -1) -> bytes:
        out: list[bytes] = []
        total = 0
        while not self.done and (size < 0 or total < size):
            event = next(self.stream)
            if event.kind == "copy-end":
                self.done = True
                break
            out.append(event.text)
            total += len(event.text)
        return b"".join(out)

    def readline(self, size: int = -1) -> bytes:
        """One line of data (copy_expert's file protocol; `size` is not honoured)."""
        if self.done:
            return b""
        event = next(self.stream)
        self.done = event.kind == "copy-end"
        return b"" if self.done else event.text


def restore(
    url: URL, path: Path, lock_timeout_ms: int = 2000, lock_wait_s: float = 10.0, elsewhere: bool = False
) -> None:
    """Load a backup into `url` in one transaction: fully, or not at all, whenever it is killed.
    A backup of another database (or server) is refused unless `elsewhere` says it is meant."""
    summary = check(path, require_table="stocks")  # every line read before anything is written
    taken_of, target = origin(path), identity(url)
    if taken_of and taken_of != target and not elsewhere:
        raise UsageError(
            f"{path} is a backup of {taken_of}, not of {target}: add --other-database to load it there"
        )
    conn = connect(url, lock_timeout=f"{lock_timeout_ms}ms")
    try:
        take_deployment_lock(conn, url, lock_wait_s)
        conn.autocommit = False
        line = 0
        try:
            with conn.cursor() as cur:
                cur.execute(teardown_sql())
                fault("restore:after-teardown")
                stream = events(path)
                count = 0
                for event in stream:
                    line = event.line
                    if event.kind != "sql":
                        continue  # \restrict / \unrestrict / the end: nothing for the server
                    count += 1
                    if summary.first_begin and count in (1, summary.statements):
                        continue  # the file's own BEGIN / COMMIT: this transaction is ours
                    body = bare(event.text)
                    if COPY_STDIN.match(body):
                        cur.copy_expert(body.decode(), CopySource(stream))
                    else:
                        cur.execute(event.text)
                    if re.match(rb"SET\s+(lock_timeout|statement_timeout)\b", body, re.I):
                        keep_bounds(cur, lock_timeout_ms)
                    fault(f"restore:statement:{count}")
            fault("restore:before-commit")
            conn.commit()
        except psycopg2.errors.LockNotAvailable:
            conn.rollback()
            raise DeployError(
                f"restore into {mask(url)}: no lock within {lock_timeout_ms} ms (line {line}); "
                f"held by {relation_holders(conn) or 'a process that has since let go'}; nothing changed"
            ) from None
        except psycopg2.Error as exc:
            conn.rollback()
            raise DeployError(
                f"restore into {mask(url)} failed at line {line} of {path.name}, nothing changed: "
                f"{describe(exc, url)}"
            ) from None
    finally:
        conn.close()


def keep_bounds(cur: Cursor, lock_timeout_ms: int) -> None:
    """The dump sets lock_timeout = 0 (wait forever): the restore keeps its own bound."""
    cur.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")


def take_deployment_lock(conn: Connection, url: URL, wait_s: float) -> None:
    """The deployment lock (runner.LOCK_KEY), for the life of the connection; a bounded wait."""
    conn.autocommit = True
    deadline = time.monotonic() + wait_s
    with conn.cursor() as cur:
        while not scalar(cur, "SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY):
            if time.monotonic() >= deadline:
                cur.execute(
                    "SELECT format('session pid %%s, %%s', l.pid, a.application_name)"
                    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
                    "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    LOCK_KEY,
                )
                holder = cur.fetchone()
                raise DeployError(
                    f"another deployment is running on {mask(url)} "
                    f"({holder[0] if holder else 'it has just finished'}); "
                    f"waited {wait_s:g}s; nothing changed"
                )
            time.sleep(0.2)


def relation_holders(conn: Connection) -> str:
    """Who holds locks on this database's public tables: pid, mode, state and query."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT DISTINCT c.relname, l.mode, l.pid, a.state,
                   left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60)
            FROM pg_locks l
            JOIN pg_class c ON c.oid = l.relation
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.granted AND l.pid <> pg_backend_pid()
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY l.pid, c.relname LIMIT 5
            """
        )
        rows: list[Any] = cur.fetchall()
    return "; ".join(f"{rel} {mode} by pid {pid} ({state}: {q})" for rel, mode, pid, state, q in rows)


def first_line(text: str, url: URL) -> str:
    """The first error line of a libpq tool's stderr, password scrubbed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return scrub((errors or lines or ["(no message)"])[0].strip(), url)
