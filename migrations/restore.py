"""Restore: the kit's own backups run exactly as checked; a foreign file only when named so.

The file is read once, into an unlinked private copy; everything after works on that copy,
whatever happens to the path meanwhile (a swap while restore waits for the deployment lock
changes nothing). Then:

- **A backup of the kit** (`provenance.verify`: header signed with the backup key, every byte
  matching its digest, pg_dump's end mark, the database's identity) runs through psql, the
  reference reader of pg_dump's SQL, fed from the copy: one transaction whose COMMIT is the
  file's last statement, sent only once everything before it has run; psql dies with the
  kit, so a kill at any moment leaves the database wholly before or wholly restored.
- **A foreign file** (`--foreign`) is never given to psql. Its SQL runs as ONE argument of
  ONE call of a SECURITY DEFINER function owned by a role that is no superuser, has no
  CREATEROLE and cannot run programs or touch server files (by default the owner of
  `public.stocks`), inside the kit's transaction. There PostgreSQL itself refuses
  transaction control (no COMMIT can commit part of it), role changes, COPY from the client
  and COPY ... PROGRAM, and psql's backslash commands are mere syntax errors; deferred
  triggers fire before the call returns, as that role. On failure the kit rolls back (and
  puts back sequences the file advanced: they are not transactional).

Either way the restore holds the deployment lock, and a lock it waits for longer than
`--lock-timeout` is given up (the statement is cancelled), naming who holds it.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from migrations import provenance
from migrations.backup import teardown_sql
from migrations.dburl import URL, DeployError, UsageError, connect, describe, libpq_command, mask, scalar
from migrations.provenance import CHUNK, MAX_HEADER, Identity, Manifest, NotTheKits
from migrations.runner import LOCK_KEY, fault

FOREIGN_MAX = 128 << 20  # one call's argument: the server parses it whole


@contextmanager
def private_copy(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, read once into an unlinked temporary file only this process sees."""
    try:
        source = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"no such backup file: {path}") from None
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror or exc}") from None
    with source, tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(source, copy, CHUNK)
        source.close()
        copy.seek(0)
        yield copy


def target_of(url: URL) -> Identity:
    """Which database `url` is."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            return provenance.identity_of(cur)[0]
    finally:
        conn.close()


def check(url: URL, path: Path, elsewhere: bool = False, foreign: bool = False) -> str:
    """What `restore` would load, checked as it checks it; changes nothing."""
    with private_copy(path) as copy:
        return checked(url, copy, path, elsewhere, foreign)[1]


def checked(
    url: URL, copy: IO[bytes], path: Path, elsewhere: bool, foreign: bool
) -> tuple[Manifest | None, str]:
    """The copy's manifest (None for a foreign file, when allowed) and what it is, in words."""
    target = target_of(url)
    try:
        manifest = provenance.verify(copy, str(path))
    except DeployError as exc:  # not the kit's, or no longer what it wrote
        if not foreign:
            hint = (
                " (load a file the kit did not write with --foreign)" if isinstance(exc, NotTheKits) else ""
            )
            raise DeployError(f"{exc}; refused, nothing changed{hint}") from None
        copy.seek(0)
        foreign_script(copy, path)  # its size, before anything changes
        return None, f"{path} (a foreign file)"
    finally:
        copy.seek(0)
    if not elsewhere:
        provenance.refuse_elsewhere(manifest, target, str(path))
    return manifest, f"{path} (a backup of {manifest.identity}, taken {manifest.taken_at})"


def restore(
    url: URL,
    path: Path,
    lock_timeout_ms: int = 2000,
    lock_wait_s: float = 10.0,
    elsewhere: bool = False,
    foreign: bool = False,
    role: str | None = None,
) -> str:
    """Load a backup into `url` in one transaction, fully or not at all, whenever it is killed;
    what was restored, in words. A backup of another database (or server) only `elsewhere`;
    a file the kit did not write only as `foreign` (run as `role`)."""
    with private_copy(path) as copy:
        manifest, what = checked(url, copy, path, elsewhere, foreign)
        holder = connect(url)
        try:
            take_deployment_lock(holder, url, lock_wait_s)
            if manifest is None:
                ran_as = run_foreign(url, holder, foreign_script(copy, path), path, lock_timeout_ms, role)
                return f"{what} as role {ran_as}"
            run_own(url, holder, copy, manifest, path, lock_timeout_ms)
            return what
        finally:
            holder.close()


# -- the kit's own backups: psql, fed from the checked copy -----------------------------------


def run_own(
    url: URL, holder: Connection, copy: IO[bytes], manifest: Manifest, path: Path, bound_ms: int
) -> None:
    """Feed the checked copy to psql: the teardown, the dump, then (once all of it has run) the
    final COMMIT; fault points between them."""
    stream = provenance.content(copy, path.name)
    feed = Psql(url, holder, bound_ms)
    commit_sent = False
    try:
        feed.send(stream.readline(MAX_HEADER))
        feed.copy(stream, manifest.teardown_end)
        feed.reach("teardown")
        fault("restore:after-teardown")
        feed.copy(stream, manifest.commit_at - manifest.teardown_end)
        feed.reach("commit")
        fault("restore:before-commit")
        commit_sent = True
        feed.copy(stream, manifest.bytes - manifest.commit_at)
        feed.close()
    except (BrokenPipeError, Stopped):
        pass
    finally:
        code = feed.end()
    if code != 0 or not commit_sent:
        raise feed.failure(mask(url), path.name, commit_sent)


class Stopped(Exception):
    """psql ended before reaching a mark."""


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGKILL when the kit dies (Linux), so no psql goes
    on restoring without the deployment lock; None where prctl is unknown."""
    parent = os.getpid()
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return arm


class Psql:
    """psql reading the kit's pipe (no psqlrc, ON_ERROR_STOP), and the marks it answers with."""

    def __init__(self, url: URL, holder: Connection, bound_ms: int) -> None:
        argv, env = libpq_command(url)
        self.nonce = secrets.token_hex(8)
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as psql)
        self.marks: queue.Queue[str | None] = queue.Queue()
        self.lines = 0  # lines sent so far
        self.kit_lines: list[int] = []  # the kit's own lines (marks), by number
        command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", "-f", "-", *argv]
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.errors,
                env=env,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 (no thread runs yet)
            )
        except FileNotFoundError:
            raise DeployError("psql not found: install the PostgreSQL client tools") from None
        threading.Thread(target=self.read_marks, daemon=True).start()
        self.watchdog: Watchdog | None = None
        try:
            pid = int(self.reach("pid", "pg_catalog.pg_backend_pid()"))
        except (BrokenPipeError, Stopped, ValueError):
            return
        self.watchdog = Watchdog(holder, pid, bound_ms)
        self.watchdog.start()

    def read_marks(self) -> None:
        assert self.proc.stdout is not None
        prefix = f"azak-mark {self.nonce} "
        for raw in self.proc.stdout:
            line = raw.decode("ascii", errors="replace").rstrip("\n")
            if line.startswith(prefix):
                self.marks.put(line[len(prefix) :])
        self.marks.put(None)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.lines += data.count(b"\n")

    def copy(self, stream: IO[bytes], size: int) -> None:
        """Send exactly `size` bytes of the stream."""
        while size > 0:
            chunk = stream.read(min(CHUNK, size))
            if not chunk:
                raise Stopped
            self.send(chunk)
            size -= len(chunk)

    def reach(self, name: str, value: str = "''") -> str:
        """Send a mark and wait until psql has run everything before it: the mark's value."""
        self.kit_lines.append(self.lines + 1)
        self.send(f"SELECT 'azak-mark {self.nonce} {name} ' || {value};\n".encode())
        assert self.proc.stdin is not None
        self.proc.stdin.flush()
        while True:
            got = self.marks.get()
            if got is None:
                raise Stopped
            if got.startswith(f"{name} "):
                return got[len(name) + 1 :]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def end(self) -> int:
        """Wait for psql (closing its input: without the COMMIT it ends in a rollback)."""
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self.proc.wait()
        if self.watchdog:
            self.watchdog.finish()
        return code

    def failure(self, where: str, name: str, commit_sent: bool) -> DeployError:
        """The one line that says why psql stopped."""
        if self.watchdog and self.watchdog.reason:
            return DeployError(f"restore into {where}: {self.watchdog.reason}; nothing changed")
        self.errors.seek(0)
        said = self.errors.read().decode(errors="replace")
        lines = [ln for ln in said.splitlines() if re.search(r"ERROR|FATAL|psql:", ln)] or ["psql stopped"]
        found = re.match(r"psql:<stdin>:(\d+): (.*)", lines[0])
        text, at = (found[2], int(found[1])) if found else (lines[0], 0)
        line = at - sum(1 for n in self.kit_lines if n < at)  # stdin's lines less the kit's marks
        place = f" at line {line} of {name}" if at else ""
        if commit_sent and "ERROR" not in text:
            return DeployError(
                f"restore into {where}: psql stopped while committing ({text}): check the database"
            )
        return DeployError(f"restore into {where} failed{place}, nothing changed: {text.strip()}")


class Watchdog(threading.Thread):
    """Cancels the restore's statement once it has waited `bound_ms` for a lock, noting who
    holds it (pg_blocking_pids: PostgreSQL's own answer, any kind of lock)."""

    def __init__(self, conn: Connection, pid: int, bound_ms: int) -> None:
        super().__init__(daemon=True)
        self.conn, self.pid, self.bound_s = conn, pid, bound_ms / 1000
        self.reason = ""
        self.done = threading.Event()

    def run(self) -> None:
        since: float | None = None
        try:
            with self.conn.cursor() as cur:
                while not self.done.wait(0.05):
                    blockers = scalar(cur, "SELECT pg_catalog.pg_blocking_pids(%s)", (self.pid,))
                    if not blockers:
                        since = None
                        continue
                    since = since or time.monotonic()
                    if time.monotonic() - since >= self.bound_s:
                        held = waits(cur, self.pid, blockers)
                        self.reason = f"no lock within {round(self.bound_s * 1000)} ms ({held})"
                        cur.execute("SELECT pg_catalog.pg_cancel_backend(%s)", (self.pid,))
                        return
        except psycopg2.Error:
            return

    def finish(self) -> None:
        self.done.set()
        self.join()


def waits(cur: Any, pid: int, blockers: list[int]) -> str:
    """What `pid` waits for and who holds it: pid, state and query."""
    cur.execute(
        "SELECT l.mode || ' on ' || coalesce(l.relation::pg_catalog.regclass::text, l.locktype)"
        " FROM pg_catalog.pg_locks l WHERE l.pid = %s AND NOT l.granted LIMIT 1",
        (pid,),
    )
    wanted = cur.fetchone()
    cur.execute(
        "SELECT a.pid, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60)"
        " FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY(%s) ORDER BY a.pid LIMIT 5",
        (blockers,),
    )
    held = "; ".join(f"pid {p} ({state}: {q})" for p, state, q in cur.fetchall()) or f"pids {blockers}"
    return f"{wanted[0] if wanted else 'a lock'}, held by {held}"


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


# -- foreign files: one call of a function PostgreSQL keeps harmless ---------------------------


def foreign_script(copy: IO[bytes], path: Path) -> bytes:
    """A foreign file's SQL (gunzipped), at most FOREIGN_MAX bytes, read in bounded memory."""
    stream = provenance.content(copy, path.name)
    try:
        data = stream.read(FOREIGN_MAX + 1)
    except (OSError, EOFError, ValueError) as exc:
        raise DeployError(f"{path} cannot be read as SQL ({exc}); refused, nothing changed") from None
    finally:
        copy.seek(0)
    if len(data) > FOREIGN_MAX:
        raise DeployError(
            f"{path} holds more than a foreign restore runs ({FOREIGN_MAX >> 20} MiB at most);"
            " refused, nothing changed"
        )
    return unrestricted(data)


RESTRICT = re.compile(rb"\\restrict ([A-Za-z0-9]+)")


def unrestricted(script: bytes) -> bytes:
    """pg_dump's `\\restrict KEY` (its first line that is no comment) and `\\unrestrict KEY`
    lines are psql's business: for the server they become comments. Nothing else is touched
    (whatever the text is, it runs in the same sandbox)."""
    lines = script.split(b"\n")
    first = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith(b"--")), None)
    found = RESTRICT.fullmatch(lines[first]) if first is not None else None
    if found:
        end = b"\\unrestrict " + found[1]
        lines = [b"--" + line if i == first or line == end else line for i, line in enumerate(lines)]
    return b"\n".join(lines)


# Roles whose members PostgreSQL lets run programs, read or write server files, or make roles.
PRIVILEGED_SQL = """
SELECT string_agg(r.rolname || CASE WHEN r.rolsuper THEN ' (superuser)'
                                    WHEN r.rolcreaterole THEN ' (CREATEROLE)' ELSE '' END, ', ')
FROM pg_catalog.pg_roles r
WHERE pg_catalog.pg_has_role(%(role)s, r.oid, 'MEMBER')
  AND (r.rolsuper OR r.rolcreaterole
       OR r.rolname IN ('pg_execute_server_program', 'pg_write_server_files', 'pg_read_server_files'))
"""
RUNNER = sql.SQL(
    "CREATE FUNCTION pg_temp.azak_foreign(script pg_catalog.text) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER"
    " AS $body$BEGIN EXECUTE script; SET CONSTRAINTS ALL IMMEDIATE; END$body$;"
    " ALTER FUNCTION pg_temp.azak_foreign(pg_catalog.text) OWNER TO {}"
)


def runner_role(cur: Any, role: str | None) -> str:
    """The role a foreign file runs as (given, or the owner of public.stocks), refused in one
    line when PostgreSQL would let it run programs, touch server files or change roles."""
    if role is None:
        cur.execute(
            "SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class"
            " WHERE oid = pg_catalog.to_regclass('public.stocks')"
        )
        row = cur.fetchone()
        if row is None:
            raise UsageError(
                "the database has no public.stocks whose owner could run a foreign file: give --foreign-role"
            )
        role = str(row[0])
    try:
        powers = scalar(cur, PRIVILEGED_SQL, {"role": role})
    except psycopg2.Error as exc:
        raise UsageError(f"--foreign-role {role}: {describe(exc)}") from None
    if powers:
        raise DeployError(
            f"a foreign file would run as {role}, a member of {powers}: PostgreSQL would let it run programs"
            " or change roles; refused, nothing changed (give --foreign-role a role that owns the tables"
            " and is none of these)"
        )
    return role


def run_foreign(
    url: URL, conn: Connection, script: bytes, path: Path, bound_ms: int, role: str | None
) -> str:
    """Run a foreign file's SQL as one argument of one call, in one transaction with the
    teardown; the role it ran as."""
    with conn.cursor() as cur:
        ran_as = runner_role(cur, role)
        cur.execute(
            "SELECT current_setting('server_encoding'), current_setting('search_path'),"
            " current_setting('client_encoding')"
        )
        row = cur.fetchone()
        assert row is not None
        encoding, search_path, client_encoding = row
    conn.autocommit = False
    watchdog = Watchdog(connect(url), conn.get_backend_pid(), bound_ms)
    watchdog.start()
    try:
        with conn.cursor() as cur:
            cur.execute(teardown_sql())
            fault("restore:after-teardown")
            cur.execute(RUNNER.format(sql.Identifier(ran_as)))
            sequences = sequence_states(cur)
            cur.execute("SAVEPOINT azak_foreign")
            try:
                cur.execute(
                    "SELECT pg_temp.azak_foreign(pg_catalog.convert_from(%s, %s))",
                    (psycopg2.Binary(script), encoding),
                )
            except psycopg2.Error:
                cur.execute("ROLLBACK TO SAVEPOINT azak_foreign")
                put_back(cur, sequences)
                raise
            cur.execute(
                "SELECT pg_catalog.set_config('search_path', %s, false),"
                " pg_catalog.set_config('client_encoding', %s, false)",
                (search_path, client_encoding),
            )
            cur.execute("DROP FUNCTION pg_temp.azak_foreign(pg_catalog.text)")
        fault("restore:before-commit")
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise foreign_failure(exc, watchdog, mask(url), path, script, encoding) from None
    finally:
        watchdog.finish()
        watchdog.conn.close()
    return ran_as


def foreign_failure(
    exc: psycopg2.Error, watchdog: Watchdog, where: str, path: Path, script: bytes, encoding: str
) -> DeployError:
    """The one line that says why a foreign file did not load."""
    if watchdog.reason:
        return DeployError(f"restore into {where}: {watchdog.reason}; nothing changed")
    hint = ""
    if "cannot COPY to/from client" in str(exc) or COPY_STDIN.search(script):
        hint = " (it holds COPY ... FROM stdin data, which a foreign file may not: use pg_dump --inserts)"
    return DeployError(
        f"restore of the foreign file {path} into {where} failed{line_of(exc, script, encoding)},"
        f" nothing changed: {describe(exc)}{hint}"
    )


COPY_STDIN = re.compile(rb"(?im)^COPY .* FROM stdin;$")


def line_of(exc: psycopg2.Error, script: bytes, encoding: str) -> str:
    """` at line N` of the foreign file where the server's error points, if it points."""
    position = exc.diag.internal_position
    if not position:
        return ""
    codec = psycopg2.extensions.encodings.get(encoding, "utf-8")
    text = script.decode(codec, errors="replace")
    return f" at line {text[: int(position)].count(chr(10)) + 1}"


def sequence_states(cur: Any) -> list[tuple[int, Any, Any]]:
    """(oid, last_value, is_called) of every sequence the session may read and set: they are
    not transactional, so a failed foreign file that advanced one is undone by hand."""
    cur.execute(
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT, UPDATE') END"
    )
    states = []
    for oid, schema, name in cur.fetchall():
        cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name)))
        states.append((oid, *cur.fetchone()))
    return states


def put_back(cur: Any, states: list[tuple[int, Any, Any]]) -> None:
    """Set every sequence that changed since `states` back (they survive a rollback)."""
    now = {oid: (value, called) for oid, value, called in sequence_states(cur)}
    for oid, value, called in states:
        if oid in now and now[oid] != (value, called):
            cur.execute(
                "SELECT pg_catalog.setval(%s::pg_catalog.oid::pg_catalog.regclass, %s, %s)",
                (oid, value, called),
            )
