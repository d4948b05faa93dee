"""The kit's locks: the deployment lock every command that changes a database holds, and who
holds a lock another session waits for.

The deployment lock is a session advisory lock (`LOCK_KEY`), waited for a bounded time. A
restore cannot bound its own waits (pg_dump's script sets `lock_timeout = 0`): rather than
read the script to undo that, a `Watchdog` asks PostgreSQL (`pg_blocking_pids`) whether the
restore's session waits, and cancels its statement once it has waited longer than the bound,
noting who holds the lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection

from migrations.dburl import URL, DeployError, mask, scalar

# pg_try_advisory_lock(int, int) key of every deployment of this kit: "Azak", 1.
LOCK_KEY = (0x417A616B, 1)
THIS_DATABASE = "(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
# Another session as the operator reads it: its pid, state and the start of its query.
SESSION = "a.pid, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60)"
HOLDER_SQL = (
    "SELECT format('session pid %%s, %%s from %%s', l.pid, a.application_name,"
    " coalesce(host(a.client_addr), 'local socket'))"
    " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
    " AND l.database = (SELECT oid FROM pg_catalog.pg_database"
    " WHERE datname = pg_catalog.current_database())"
)
TABLE_HOLDERS_SQL = f"""
SELECT c.relname, l.mode, {SESSION}
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p')
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND l.database = {THIS_DATABASE}
  AND c.relnamespace = 'public'::regnamespace
ORDER BY l.pid, c.relname
LIMIT 5
"""  # noqa: S608 (constants only)


def session(pid: int, state: str, query: str) -> str:
    """A session of `SESSION`, in words."""
    return f"pid {pid} ({state}: {query})"


def acquire(conn: Connection, url: URL, wait_s: float) -> None:
    """Take the deployment lock for the life of the session, waiting at most `wait_s`; else
    DeployError naming the session that holds it."""
    deadline = time.monotonic() + wait_s
    while True:
        with conn.cursor() as cur:
            got = scalar(cur, "SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY)
            if not conn.autocommit:  # no transaction left open while it waits; an autocommit
                conn.commit()  # session keeps showing its last try (pg_stat_activity), not COMMIT
            if got:
                return
            if time.monotonic() >= deadline:
                cur.execute(HOLDER_SQL, LOCK_KEY)
                holder = cur.fetchone()
                raise DeployError(
                    f"another deployment is running on {mask(url)} "
                    f"({holder[0] if holder else 'it has just finished'}); "
                    f"waited {wait_s:g}s; nothing was changed"
                )
        time.sleep(0.2)


def release(conn: Connection) -> None:
    """Let go of the deployment lock (closing the session does too)."""
    if not conn.closed:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEY)


def table_holders(cur: Any) -> str:
    """Who holds locks on tables of this database: relation, mode and session (5 at most)."""
    cur.execute(TABLE_HOLDERS_SQL)
    return "; ".join(f"{rel} {mode} by {session(*who)}" for rel, mode, *who in cur.fetchall())


def waits(cur: Any, pid: int, blockers: list[int]) -> str:
    """What `pid` waits for and who holds it."""
    cur.execute(
        "SELECT l.mode || ' on ' || coalesce(l.relation::pg_catalog.regclass::text, l.locktype)"
        " FROM pg_catalog.pg_locks l WHERE l.pid = %s AND NOT l.granted LIMIT 1",
        (pid,),
    )
    wanted = cur.fetchone()
    cur.execute(
        f"SELECT {SESSION} FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY(%s) ORDER BY a.pid LIMIT 5",  # noqa: S608
        (blockers,),
    )
    held = "; ".join(session(*who) for who in cur.fetchall()) or f"pids {blockers}"
    return f"{wanted[0] if wanted else 'a lock'}, held by {held}"


class Watchdog(threading.Thread):
    """Cancels a session's statement once it has waited `bound_ms` for a lock, noting who
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
