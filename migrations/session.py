"""A run's session: one connection with bounds, the deployment lock, short transactions retried
with backoff on a lock timeout (on giving up, a message naming the lock and the process
holding it), and the operator's progress lines."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self, TextIO, TypeVar

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from migrations import lock
from migrations.dburl import (
    APPLICATION_PATH,
    KIT_PATH,
    KIT_PATH_SQL,
    URL,
    DeployError,
    connect,
    describe,
    mask_text,
)
from migrations.progress import Progress

T = TypeVar("T")


def application_sql(cur: Cursor, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """Run the application's SQL (a migration's phase, its precondition) with public on the path,
    then give the kit's statements after it pg_catalog only again; its rows, if it returns any."""
    cur.execute(APPLICATION_PATH)
    try:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description is not None else []
    finally:
        if not cur.connection.closed and cur.connection.get_transaction_status() != 3:  # not INERROR
            cur.execute(KIT_PATH_SQL)


@dataclass
class Settings:
    """How patient and how big: every knob of a run."""

    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 60_000
    retries: int = 5
    backoff_s: float = 0.5
    lock_wait_s: float = 10.0
    batch_size: int = 5000
    workers: int = 2  # sessions sharing a large rewriting phase (migrations.batching)


class Session:
    """One database session of a run, with its bounds, the deployment lock and the operator's
    lines; every change goes through `transaction`."""

    def __init__(
        self,
        url: URL,
        settings: Settings | None = None,
        out: TextIO = sys.stdout,
        executor: str | None = None,
    ) -> None:
        self.url = url
        self.executor = executor  # who, for the ledger (else AZAK_EXECUTOR, else the OS user)
        self.settings = settings or Settings()
        self.out = out
        self.progress: Progress | None = None  # a batched phase's, while it runs
        self.shown = threading.Lock()  # sessions sharing a phase count its progress in turn
        self.conn: Connection = self.session()

    def session(self) -> Connection:
        """A session with the run's bounds, so that no query of the runner can queue forever."""
        conn = connect(
            self.url,
            **KIT_PATH,
            lock_timeout=f"{self.settings.lock_timeout_ms}ms",
            statement_timeout=f"{self.settings.statement_timeout_ms}ms",
        )
        conn.autocommit = False
        return conn

    def close(self) -> None:
        """Close the connection; the advisory lock goes with it."""
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def say(self, text: str) -> None:
        """One line of progress for the operator (another session's query it names included:
        whatever secret it shows is ***), below a batched phase's progress line."""
        if self.progress is not None:
            self.progress.clear()
        print(mask_text(text), file=self.out, flush=True)

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Read-only query in its own short transaction."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(text, params)
            return cur.fetchall() if cur.description else []

    def transaction(self, work: Callable[[Cursor], T], what: str, conn: Connection | None = None) -> T:
        """Run `work` in one short transaction (on `conn`, default the runner's), retrying lock
        timeouts and deadlocks with backoff."""
        s = self.settings
        conn = conn or self.conn
        for attempt in range(1, s.retries + 1):
            try:
                with conn, conn.cursor() as cur:  # the session carries the timeouts
                    return work(cur)
            except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected):
                holders = self.lock_holders()
                if attempt == s.retries:
                    raise DeployError(
                        f"{what}: no lock within {s.lock_timeout_ms} ms, {s.retries} tries; "
                        f"held by {holders or 'a process that has since let go'}; "
                        "nothing of this step was changed"
                    ) from None
                wait = s.backoff_s * 2 ** (attempt - 1)
                self.say(f"  {what}: lock busy ({holders}); retry {attempt} in {wait:.1f}s")
                time.sleep(wait)
            except psycopg2.Error as exc:
                if not conn.closed:
                    raise
                cause = exc.__context__ if isinstance(exc, psycopg2.InterfaceError) else exc
                raise DeployError(
                    f"{what}: the connection to the database was lost ({describe(cause or exc, self.url)});"
                    " the ledger says how far it got: run the same command again to finish"
                ) from None
        raise AssertionError("unreachable")

    def lock_holders(self) -> str:
        """Who holds locks on tables of this database (`lock.table_holders`)."""
        with self.conn, self.conn.cursor() as cur:
            return lock.table_holders(cur)

    @contextmanager
    def deployment_lock(self) -> Iterator[None]:
        """Hold the deployment lock for the run; wait a bounded time if another run holds it."""
        lock.acquire(self.conn, self.url, self.settings.lock_wait_s)
        try:
            yield
        finally:
            lock.release(self.conn)
