"""A file the kit did not write (`restore --foreign`): one call of a function PostgreSQL keeps harmless.

The file never reaches psql. Its SQL is ONE argument of ONE call of a SECURITY DEFINER
function owned by a role that is no superuser, has no CREATEROLE and cannot run programs or
touch server files (by default the owner of the application's table), inside the kit's transaction.
There PostgreSQL itself refuses transaction control (no COMMIT can commit part of it), role
changes, COPY from the client and COPY ... PROGRAM, and psql's backslash commands are mere
syntax errors; deferred triggers fire before the call returns, as that role. On failure the
kit rolls back, and puts back the sequences the file advanced (they are not transactional).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from migrations import application, faults, provenance
from migrations.backup import teardown_sql
from migrations.changes import APPLICATION_TABLE
from migrations.dburl import (
    APPLICATION_PATH,
    KIT_PATH,
    URL,
    DeployError,
    UsageError,
    connect,
    describe,
    mask,
    scalar,
)
from migrations.lock import Watchdog

FOREIGN_MAX = 128 << 20  # one call's argument: the server parses it whole


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
       OR r.rolname IN ('pg_execute_server_program', 'pg_write_server_files', 'pg_read_server_files',
                        'pg_write_all_data'))  -- (14+) would write the kit's registry too
"""
RUNNER = sql.SQL(
    "CREATE FUNCTION pg_temp.azak_foreign(script pg_catalog.text) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER"
    " AS $body$BEGIN EXECUTE script; SET CONSTRAINTS ALL IMMEDIATE; END$body$;"
    " ALTER FUNCTION pg_temp.azak_foreign(pg_catalog.text) OWNER TO {}"
)


def runner_role(cur: Any, role: str | None) -> str:
    """The role a foreign file runs as (given, or the owner of the application's table), refused in one
    line when PostgreSQL would let it run programs, touch server files or change roles."""
    if role is None:
        cur.execute(application.OWNER_SQL)
        row = cur.fetchone()
        if row is None:
            raise UsageError(
                f"the database has no {APPLICATION_TABLE} whose owner could run a foreign file:"
                " give --foreign-role"
            )
        role = str(row[0])
    try:
        powers = scalar(cur, PRIVILEGED_SQL, {"role": role})
    except psycopg2.Error as exc:
        raise UsageError(f"--foreign-role {role}: {describe(exc)}") from None
    if powers:
        raise DeployError(
            f"a foreign file would run as {role}, a member of {powers}: PostgreSQL would let it run programs,"
            " change roles or write any table; refused, nothing changed (give --foreign-role a role that owns"
            " the tables and is none of these)"
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
    watchdog = Watchdog(connect(url, **KIT_PATH), conn.get_backend_pid(), bound_ms)
    watchdog.start()
    try:
        with conn.cursor() as cur:
            cur.execute(teardown_sql())
            faults.fault("restore:after-teardown")
            cur.execute(RUNNER.format(sql.Identifier(ran_as)))
            sequences = sequence_states(cur)
            cur.execute("SAVEPOINT azak_foreign")
            try:
                cur.execute(APPLICATION_PATH)  # the file's own SQL finds its tables in public
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
        faults.fault("restore:before-commit")
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
