"""The restore's locks: the deployment lock, and a bound on every lock it waits for.

pg_dump's script sets `lock_timeout = 0`; rather than read the script to undo that, a
watchdog asks PostgreSQL (`pg_blocking_pids`) whether the restore's session waits, and
cancels its statement once it has waited longer than the bound, noting who holds the lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection

from migrations.dburl import URL, DeployError, mask, scalar
from migrations.runner import LOCK_KEY


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
