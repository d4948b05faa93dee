"""Running a migration's phases: each DDL phase in one transaction (its ledger change at the
edges), each data phase in batches of short transactions, one session or several sharing a
large table's key range (`migrations.batching`), with the keys done, the rate and the time left."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from migrations import batching, faults, ledger, registry
from migrations.contract import AS_APPLICATION, AS_DEPLOYER
from migrations.dburl import describe
from migrations.progress import Progress
from migrations.session import Session, application_sql
from migrations.steps import Batches, Ddl, Migration


class Phases(Session):
    """A session that runs migrations' phases and writes the ledger as they go."""

    def run_phases(self, migration: Migration, direction: str) -> None:
        """Run one migration's phases; the ledger changes in the first and last transaction."""
        phases = migration.upgrade if direction == "up" else migration.downgrade
        started = time.monotonic()
        marks = {
            "up": ("applying", "applied"),
            "down": ("reverting", None),
        }[direction]
        for index, phase in enumerate(phases):
            first, last = index == 0, index == len(phases) - 1
            state = marks[1] if last else (marks[0] if first else None)
            where = f"{migration.name}:{direction}:{index}"
            faults.fault(f"before:{where}")
            if isinstance(phase, Ddl):
                self.run_ddl(migration, phase, where, state, started, first or last, direction == "up")
            else:
                if first and not last:  # a data phase first: say 'applying' / 'reverting' before it
                    self.finish(migration, marks[0], started)
                self.run_batches(migration, phase, shared=direction == "up")
                if last:
                    self.finish(migration, state, started)
        elapsed = time.monotonic() - started
        verb = "applied" if direction == "up" else "rolled back"
        self.say(f"  {verb} {migration.name} in {elapsed:.2f}s")

    def run_ddl(
        self,
        migration: Migration,
        phase: Ddl,
        where: str,
        state: str | None,
        started: float,
        mark: bool,
        as_application: bool = False,
    ) -> None:
        """One DDL phase and, at the edges, its ledger change, in one transaction; an upgrade's
        as the owner of the application's table where it may (what it creates is then the application's)."""

        def work(cur: Cursor) -> None:
            if as_application:
                cur.execute(AS_APPLICATION)
            if phase.kept:
                self.note_kept(cur, migration, application_sql(cur, phase.kept))
            application_sql(cur, phase.sql)
            if mark:
                self.record(cur, migration, state, started)
            faults.fault(f"inside:{where}")

        self.transaction(work, migration.name)

    def note_kept(self, cur: Cursor, migration: Migration, rows: list[tuple[Any, ...]]) -> None:
        """The application's writes a rollback kept: noted, in the rollback's own transaction,
        in the registry's image of just before the migration (verification's yardstick for its
        rewritten values), or said to be missing."""
        if not rows:
            return
        (rewrite,) = migration.contract.rewrites
        what = f"the application wrote {len(rows)} {rewrite} value(s) during the rollback, kept"
        cur.execute("SAVEPOINT azak_kept")
        try:  # a note that cannot be written is said; the rollback goes on
            noted = registry.note_kept(cur, migration.name, rewrite, dict(rows), f"{what} ({migration.name})")
            cur.execute("RELEASE SAVEPOINT azak_kept")
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected):
            raise  # the whole phase is retried
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT azak_kept")
            noted, why = None, describe(exc, self.url)
        else:
            why = f"no image of just before {migration.name} in {registry.SCHEMA}"
        if noted is None:
            self.say(f"  {migration.name}: {what}; not noted ({why}): verification will name them")
            return
        self.say(f"  {migration.name}: {what}; noted in {registry.SCHEMA} image #{noted}")

    def finish(self, migration: Migration, state: str | None, started: float) -> None:
        """The ledger change after a last data phase, in its own transaction."""

        def work(cur: Cursor) -> None:
            self.record(cur, migration, state, started)

        self.transaction(work, f"{migration.name}: ledger")

    def record(self, cur: Cursor, migration: Migration, state: str | None, started: float) -> None:
        """Write the ledger: a state, or (None) forget the migration."""
        if state is None:
            cur.execute(ledger.FORGET, {"name": migration.name})
            return
        cur.execute(AS_DEPLOYER)  # who deployed is who is recorded
        cur.execute(
            ledger.MARK,
            {
                "name": migration.name,
                "checksum": migration.checksum,
                "state": state,
                "by": ledger.who(self.executor),
                "ms": round((time.monotonic() - started) * 1000),
            },
        )

    def run_batches(self, migration: Migration, phase: Batches, shared: bool = False) -> None:
        """Repeat the data statement in short transactions until no key is left: one session,
        or (`shared`: an upgrade's rewriting phase of a large table; `workers`) several, each
        on its own part of the key range (migrations.batching); a row left unwritten gets one
        more walk. Shows the keys done of the phase's total, the rate and the time left."""
        rewrites = migration.contract.rewrites
        rw = batching.splittable(rewrites) if shared and self.settings.workers > 1 else None
        parts = [(None, None)]
        if rw is not None:
            parts = self.transaction(
                lambda cur: batching.ranges(cur, rw, self.settings.batch_size, self.settings.workers),
                "key range",
            )
        count = phase.total
        keys = (
            self.transaction(lambda cur: application_sql(cur, count)[0][0], f"{migration.name}: count")
            if count
            else None
        )
        self.progress = Progress(f"  {migration.name}", keys, "rows", out=self.out)
        try:
            if len(parts) == 1:
                batches, total = self.walk(self.conn, migration, phase, None, None)
            else:
                assert rw is not None
                batches, total = self.walk_in_parallel(migration, phase, parts, rw)
                if self.transaction(lambda cur: batching.any_left(cur, rw), f"{migration.name}: rows left"):
                    more = self.walk(self.conn, migration, phase, None, None)
                    batches, total = batches + more[0], total + more[1]
        finally:
            self.progress.clear()
            self.progress = None
        sessions = f"{len(parts)} sessions" if len(parts) > 1 else "1 session"
        self.say(f"  {migration.name}: {total} rows changed in {batches} batches ({sessions})")

    def walk_in_parallel(
        self, migration: Migration, phase: Batches, parts: list[tuple[Any, Any]], rw: Any
    ) -> tuple[int, int]:
        """Each part walked by a session of its own; the first failure stops the others."""
        done: list[tuple[int, int]] = []
        failed: list[BaseException] = []

        def part(after: Any, stop: Any) -> None:
            try:
                conn = self.session()
                try:
                    done.append(self.walk(conn, migration, phase, after, stop, rw, failed))
                finally:
                    conn.close()
            except BaseException as exc:  # handed to the main thread
                failed.append(exc)

        threads = [threading.Thread(target=part, args=bounds) for bounds in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        return sum(d[0] for d in done), sum(d[1] for d in done)

    def walk(
        self,
        conn: Connection,
        migration: Migration,
        phase: Batches,
        after: Any,
        stop: Any,
        rw: Any = None,
        halt: list[BaseException] | None = None,
    ) -> tuple[int, int]:
        """Batches from `after` on, until none is left or one reaches `stop`; (batches, rows).
        Their commits do not wait for the disk: the ledger's last mark does, and with it every
        batch before it (a crash before that mark loses batches the next run redoes)."""
        batch, total = 0, 0
        while not halt:
            batch += 1

            def work(cur: Cursor, n: int = batch, after: Any = after) -> tuple[Any, int, bool]:
                cur.execute("SET LOCAL synchronous_commit = off")
                bounds = {"after": after, "batch_size": self.settings.batch_size}
                rows = application_sql(cur, phase.sql, bounds)
                assert len(rows) == 1, "a batch statement returns one row"
                last, changed = rows[0]
                reached = False
                if stop is not None and last is not None:
                    cur.execute(batching.past(rw), {"last": last, "stop": stop})
                    reached = bool((cur.fetchone() or (False,))[0])
                faults.fault(f"inside-batch:{migration.name}:{n}")
                return last, changed, reached

            last, changed, reached = self.transaction(work, f"{migration.name} batch {batch}", conn)
            faults.fault(f"after-batch:{migration.name}:{batch}")
            if last is None:
                return batch - 1, total
            after, total = last, total + changed
            with self.shown:
                if self.progress is not None:
                    self.progress.add(self.settings.batch_size)
            if reached:
                return batch, total
        return batch, total
