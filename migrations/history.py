"""The history of every action on a database, kept in its registry (`azak_registry.history`):
backup, upgrade, downgrade, restore, verification, adoption: when, who, environment, target,
result, the migrations, the facts that failed, the reason, the report or file.

An action writes its row as 'started' and commits it first, and holds an advisory lock named
by the row while it runs; at its end the row gets its result. A row still 'started' whose
lock nobody holds was interrupted (killed, or its connection terminated) and reads so.
`python -m migrations record` renders the history as the runbook's deployment table; a
database remembers its environment (the last one named), so a rollback need not repeat it.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from migrations import application, ledger, provenance, registry
from migrations.dburl import KIT_PATH, URL, DeployError, UsageError, connect, describe, scalar
from migrations.record import escape
from migrations.steps import Migration, load_all

HISTORY_LOCK = 0x417A6168  # pg_advisory_lock(HISTORY_LOCK, row id) while the row's action runs
assert HISTORY_LOCK == 1098539368  # as RESULT names it
COLUMNS = ("date", "environment", "executor", "action", "result", "migrations", "failed", "reason", "report")
UNSPECIFIED = "unspecified"

# 'started' and nobody holds the row's lock: the action was interrupted.
RESULT = """CASE WHEN h.result = 'started' AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 1098539368::oid
      AND l.objid = (h.id %% 2147483647)::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
    THEN 'interrupted' ELSE h.result END"""

REMEMBERED = (
    "SELECT environment FROM azak_registry.history WHERE environment <> 'unspecified'"
    " ORDER BY id DESC LIMIT 1"
)


def remembered(cur: Cursor) -> str | None:
    """The environment this database was last named (None: never, or no registry)."""
    if not registry.exists(cur):
        return None
    cur.execute(REMEMBERED)
    row = cur.fetchone()
    return str(row[0]) if row else None


class Action:
    """One action's history row: 'started' first, its result at the end. Where the database
    has no registry and may not get one (not the application's database, a role that may
    not write it), the action runs unrecorded there and `skipped` says why."""

    def __init__(
        self,
        url: URL,
        action: str,
        target: str = "",
        environment: str | None = None,
        executor: str | None = None,
        reason: str = "",
        chain: list[Migration] | None = None,
    ) -> None:
        self.url, self.action, self.target, self.reason = url, action, target, reason
        self.environment = environment or ""
        self.executor = ledger.who(executor)
        self.chain = chain
        self.conn: Connection | None = None
        self.id: int | None = None
        self.skipped = ""

    def start(self, create: bool = True) -> list[str]:
        """Write the 'started' row (making the registry first if `create`); the sentences that
        say what the registry adopted from an earlier kit."""
        self.conn = conn = connect(
            self.url, **KIT_PATH, lock_timeout="5s", statement_timeout="120s"
        )  # never queue forever
        said: list[str] = []
        try:
            with conn, conn.cursor() as cur:
                if not application.is_application(cur):
                    self.skipped = "not the application's database"
                elif create:
                    said = registry.ensure(cur, self.chain if self.chain is not None else load_all())
                elif not registry.exists(cur):
                    self.skipped = f"no registry ({registry.SCHEMA}) in this database"
                if self.skipped:
                    self.environment = self.environment or UNSPECIFIED
                    return []
                self.environment = self.environment or remembered(cur) or UNSPECIFIED
                self.id = self.insert(cur)
        except psycopg2.Error as exc:
            self.skipped = f"not in the database's history: {describe(exc, self.url)}"
            self.environment = self.environment or UNSPECIFIED
            self.close()
        return said

    def insert(self, cur: Cursor) -> int:
        cur.execute(
            "INSERT INTO azak_registry.history"
            " (environment, executor, action, target, reason, client, ledger)"
            " VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s THEN"
            " (SELECT coalesce(jsonb_agg(to_jsonb(l)), '[]') FROM azak_registry.ledger l) END)",
            (
                self.environment,
                self.executor,
                self.action,
                self.target,
                self.reason,
                f"{socket.gethostname()}:{os.getcwd()}",
                self.action == "backup",  # the ledger as the backup finds it: a restore of it says so
            ),
        )
        row_id = int(scalar(cur, "SELECT lastval()"))
        cur.execute("SELECT pg_advisory_lock(%s, (%s %% 2147483647)::int)", (HISTORY_LOCK, row_id))
        cur.execute(
            sql.SQL(
                "UPDATE azak_registry.history h SET result = 'interrupted'"
                " WHERE h.result = 'started' AND h.id <> %s AND ({result}) = 'interrupted'"
            ).format(result=sql.SQL(RESULT)),
            (row_id,),
        )
        return row_id

    def finish(
        self,
        result: str,
        migrations: str = "",
        failed: str = "",
        notes: str = "",
        report: str = "",
        backup: str | None = None,
    ) -> None:
        """The row's result (once); a row that cannot be finished stays 'started' (read:
        interrupted)."""
        if self.id is None or self.conn is None or self.conn.closed:
            return
        try:
            with self.conn, self.conn.cursor() as cur:
                cur.execute(
                    "UPDATE azak_registry.history SET result = %s, finished_at = now(), migrations = %s,"
                    " failed = %s, notes = %s, report = %s, backup = %s WHERE id = %s",
                    (result, migrations, failed, notes, report, backup, self.id),
                )
        except psycopg2.Error as exc:
            print(
                f"warning: history row #{self.id} could not be finished ({describe(exc, self.url)});"
                " it reads 'interrupted'",
                file=sys.stderr,
            )
        self.close()

    def cancel(self) -> None:
        """Bad input after all: the action did not happen, its row goes."""
        if self.id is not None and self.conn is not None:
            try:
                with self.conn, self.conn.cursor() as cur:
                    cur.execute("DELETE FROM azak_registry.history WHERE id = %s", (self.id,))
            except psycopg2.Error:
                pass
        self.close()

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()  # the row's lock goes with the session


def failure(exc: BaseException, url: URL) -> str:
    """What a failed action says, for its row (a database error: its first line)."""
    return str(exc) if isinstance(exc, DeployError) else f"database: {describe(exc, url)}"


@contextmanager
def recorded(action: Action, start: bool = True) -> Iterator[Action]:
    """Run an action with its history row: started first (saying what the registry adopted),
    FAILED with the reason if it fails, removed on bad input, else passed (unless the body
    finished it with more to say). `start` False: no row (the action removes the history)."""
    if start:
        for line in action.start():
            print(line)
    else:
        action.environment = action.environment or UNSPECIFIED
    try:
        yield action
    except UsageError:
        action.cancel()
        raise
    except (DeployError, psycopg2.Error) as exc:
        action.finish("FAILED", failed=failure(exc, action.url))
        raise
    action.finish("passed")


def rows(url: URL, limit: int | None = None) -> list[list[str]]:
    """The history's rows, oldest first (the last `limit`), as the table's cells."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            if not registry.exists(cur):
                raise DeployError(
                    f"no registry ({registry.SCHEMA}) in this database: no action of the kit is recorded here"
                    " (an earlier kit's deployment moves in with `python -m migrations adopt`)"
                )
            cur.execute(
                sql.SQL(
                    "SELECT * FROM (SELECT h.id, h.started_at, h.environment, h.executor,"
                    " btrim(h.action || ' ' || h.target), {result}, h.migrations, h.failed, h.reason,"
                    " h.report FROM azak_registry.history h ORDER BY h.id DESC LIMIT %s) AS last ORDER BY id"
                ).format(result=sql.SQL(RESULT)),
                (limit,),
            )
            found: list[Any] = cur.fetchall()
    finally:
        conn.close()
    return [[when.astimezone().strftime("%Y-%m-%d %H:%M %z"), *map(str, rest)] for _, when, *rest in found]


def render(cells: list[list[str]]) -> str:
    """The rows as the runbook's markdown table, every cell escaped."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


TOKEN = re.compile(rb"^-- Backup: ([0-9a-f]{16,64})$", re.M)


def backup_token(path: Path) -> str | None:
    """The token a backup of the kit carries after its teardown (a restore of it names the
    backup); None for a file without the kit's header line."""
    if provenance.peek(path) is None:
        return None
    try:
        with path.open("rb") as raw:
            stream = provenance.content(raw, path.name)
            stream.readline(provenance.MAX_HEADER)
            found = TOKEN.search(stream.read(provenance.MAX_HEADER + (64 << 10)))
    except (OSError, EOFError, zlib.error, DeployError):
        return None
    return found[1].decode() if found else None


def restored_sql(token: str, taken: datetime, kept_ledger: str, deployment: tuple[int, str] | None) -> str:
    """The statement a backup's prelude carries: restored (by the kit, or by the runbook's
    `psql -f`), the registry's ledger becomes the one the backup was taken with (`kept_ledger`,
    JSON, read in the dump's own snapshot: another database, or a row someone added to the
    history, cannot change it; a database without a registry gets one, in the same transaction),
    the deployment it was taken in (id, when it began) becomes the
    current one again where this registry holds it (verification's yardstick is its image), and
    a restore outside the kit adds its history row. It sees
    pg_catalog only (nothing put into public runs in it). A registry that cannot take it fails the
    kit's restore, and is warned about by the runbook's `psql -f`."""
    assert re.fullmatch(r"[0-9a-f]+", token)
    when = taken.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    kept = base64.b64encode(kept_ledger.encode()).decode("ascii")
    made = base64.b64encode(registry.DDL.encode()).decode("ascii")  # the registry, where there is none
    number, began = deployment or (0, "epoch")
    assert re.fullmatch(r"[0-9T:.+-]+|epoch", began)
    backup_row = f"FROM azak_registry.history h WHERE h.backup = '{token}' ORDER BY h.id DESC LIMIT 1"
    # nothing in it is given from outside: a token of hex digits, a date, base64 digits
    return f"""DO $azak$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF pg_catalog.to_regclass('azak_registry.history') IS NULL THEN  -- a database without one
        EXECUTE pg_catalog.convert_from(pg_catalog.decode('{made}', 'base64'), 'UTF8');
    END IF;
    DELETE FROM azak_registry.ledger;
    INSERT INTO azak_registry.ledger
    SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::azak_registry.ledger,
        pg_catalog.convert_from(pg_catalog.decode('{kept}', 'base64'), 'UTF8')::pg_catalog.jsonb);
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attname = 'made_current' AND NOT attisdropped
               AND attrelid = pg_catalog.to_regclass('azak_registry.deployments')) THEN
        UPDATE azak_registry.deployments
        SET made_current = pg_catalog.nextval('azak_registry.deployments_id_seq')
        WHERE id = {int(number)} AND started_at = '{began}'::pg_catalog.timestamptz;
    END IF;
    IF pg_catalog.current_setting('application_name') NOT LIKE 'azak-db-migrations:%' THEN
        INSERT INTO azak_registry.history (environment, executor, action, target, result, finished_at,
                                           migrations, notes)
        SELECT coalesce(({REMEMBERED}), 'unspecified'), session_user, 'restore',
               coalesce((SELECT h.report {backup_row}), 'the backup {token} taken {when}') || ' (psql -f)',
               'passed', pg_catalog.now(),
               'ledger: ' || coalesce((SELECT pg_catalog.string_agg(l.name, ', ' ORDER BY l.applied_at)
                                       FROM azak_registry.ledger l), 'base'),
               'restored by psql -f of the backup file (the runbook), outside the kit';
    END IF;
EXCEPTION WHEN others THEN
    IF pg_catalog.current_setting('application_name') LIKE 'azak-db-migrations:%' THEN
        RAISE;  -- the kit's restore: all or nothing, the registry included
    END IF;
    RAISE WARNING 'the registry azak_registry was not updated by this restore: %', SQLERRM;
END
$azak$;
"""  # noqa: S608


def ledger_line(url: URL) -> str:
    """The ledger after an action, in the history's words: `ledger: base` or its migrations."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            names = list(ledger.read(cur))
    finally:
        conn.close()
    return "ledger: " + (", ".join(names) if names else "base")
