"""The runtime: one connection, the advisory lock, short transactions, retries and the ledger.

Every change goes through `Runner.transaction`: `lock_timeout` set, retried with backoff on
a lock timeout, and on giving up a message naming the lock and the process holding it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from migrations import application, batching, catalog, ledger, lock, meaning, plan, registry
from migrations.contract import AS_APPLICATION, AS_DEPLOYER, fold
from migrations.dburl import URL, DeployError, UsageError, connect, describe, mask, mask_text, scalar
from migrations.faults import fault
from migrations.progress import Progress
from migrations.steps import Batches, Ddl, Migration, load_all, previous

T = TypeVar("T")

PARTIAL = "only part of its tables exist: {} is missing"


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


def find(migrations: list[Migration], name: str) -> int:
    """Index of migration `name` in the chain (or -1 for 'base'), else a usage error listing
    the names."""
    if name == "base":
        return -1
    names = [m.name for m in migrations]
    if name not in names:
        raise UsageError(f"unknown migration {name!r}; known: base, {', '.join(names)}")
    return names.index(name)


class Runner:
    """Applies and reverts migrations on one database, holding the deployment lock."""

    def __init__(
        self,
        url: URL,
        settings: Settings | None = None,
        out: TextIO = sys.stdout,
        migrations: list[Migration] | None = None,
        executor: str | None = None,
    ) -> None:
        self.url = url
        self.executor = executor  # who, for the ledger (else AZAK_EXECUTOR, else the OS user)
        self.settings = settings or Settings()
        self.out = out
        self.migrations = load_all() if migrations is None else migrations
        self.progress: Progress | None = None  # a batched phase's, while it runs
        self.shown = threading.Lock()  # sessions sharing a phase count its progress in turn
        self.conn: Connection = self.session()
        try:
            self.require_application()
        except DeployError:
            self.close()
            raise

    # -- plumbing -------------------------------------------------------------------------

    def session(self) -> Connection:
        """A session with the run's bounds, so that no query of the runner can queue forever."""
        conn = connect(
            self.url,
            lock_timeout=f"{self.settings.lock_timeout_ms}ms",
            statement_timeout=f"{self.settings.statement_timeout_ms}ms",
        )
        conn.autocommit = False
        return conn

    def close(self) -> None:
        """Close the connection; the advisory lock goes with it."""
        self.conn.close()

    def __enter__(self) -> Runner:
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

    # -- what is there ---------------------------------------------------------------------

    def entries(self) -> dict[str, ledger.Entry]:
        """The ledger rows by name."""
        with self.conn, self.conn.cursor() as cur:
            return ledger.read(cur)

    def find(self, name: str) -> int:
        """Index of migration `name` (or -1 for 'base'), else a usage error listing the names."""
        return find(self.migrations, name)

    def require_application(self) -> None:
        """Every migration hangs off the application's database."""
        with self.conn, self.conn.cursor() as cur:
            application.require(cur, self.url)

    def check_preconditions(self, todo: list[Migration]) -> None:
        """Each migration's own preconditions, before anything changes."""
        for m in todo:
            for pre in m.preconditions:

                def ask(cur: Cursor, text: str = pre.sql) -> list[str]:
                    cur.execute(text)
                    return [str(row[0]) for row in cur.fetchall()]

                found = self.transaction(ask, m.name)
                if found:
                    raise DeployError(f"{pre.problem}: {', '.join(found)}; nothing was changed")

    def changed(self, entries: dict[str, ledger.Entry]) -> list[Migration]:
        """Recorded migrations whose file changed since they were applied."""
        return [m for m in self.migrations if m.name in entries and not m.matches(entries[m.name].checksum)]

    def refuse_changed(self, verb: str, todo: list[Migration], entries: dict[str, ledger.Entry]) -> None:
        """Stop, naming every migration in `todo` whose file changed after it was applied."""
        changed = [m for m in self.changed(entries) if m in todo]
        if changed:
            raise DeployError(
                f"refusing to {verb}: "
                + "; ".join(
                    f"{m.name} ({m.path.name} changed since it was applied on {entries[m.name].applied_at})"
                    for m in changed
                )
                + "; restore the file as it was, or roll back with the version that applied it"
            )

    def status(self) -> list[tuple[str, str]]:
        """(name, state) for every migration: pending, applied, changed-since-applied, ..."""
        entries = self.entries()
        rows = []
        for m in self.migrations:
            entry = entries.get(m.name)
            made = self.unrecorded(m) if entry is None else []
            if made:
                state = f"pending, but {', '.join(made)} exist(s) without it in the ledger (made by hand?)"
            elif entry is None:
                state = "pending"
            elif m in self.changed(entries):
                state = "changed-since-applied"
            elif entry.state != "applied":
                state = f"interrupted ({entry.state}): run upgrade or downgrade to finish"
            else:
                state = f"applied {entry.applied_at} by {entry.applied_by} in {entry.duration_ms} ms"
            rows.append((m.name, state))
        return rows

    def unrecorded(self, migration: Migration) -> list[str]:
        """The tables a migration creates that exist although the ledger does not record it."""
        tables = migration.contract.created_tables()
        rows = self.query(
            "SELECT t FROM unnest(%s::text[]) t WHERE to_regclass(format('public.%%I', t)) IS NOT NULL",
            (tables,),
        )
        return [t for (t,) in rows]

    # -- drift ---------------------------------------------------------------------------

    def check_drift(self, entries: dict[str, ledger.Entry]) -> list[Migration]:
        """Stop on any difference from the contracts at the ledger head; return the pending
        migrations whose objects someone already made exactly as their contracts say."""
        found = self.transaction(catalog.read, "read the catalog")
        applied = [m for m in self.migrations if m.name in entries and entries[m.name].state == "applied"]
        unfinished = [m for m in self.migrations if m.name in entries and m not in applied]
        in_flux = {k for m in unfinished for k in m.contract.keys}
        adoptable: list[Migration] = []
        problems: list[str] = []
        for m in self.migrations:  # in order: a made-by-hand migration may change an earlier fact
            made = [t for t in m.contract.created_tables() if catalog.Key("table", t) in found]
            if m.name in entries or not made:
                continue
            if m.has_data_phases:
                problems.append(f"{m.name}: {', '.join(made)} exist, but it changes rows: cannot be adopted")
            elif not judge([*applied, *adoptable, m], found, in_flux, missing=PARTIAL):
                adoptable.append(m)
            else:
                head = fold(c.contract for c in [*applied, *adoptable])
                problems += judge([m], found, set(), start=head, missing=PARTIAL)
        problems = judge([*applied, *adoptable], found, in_flux) + problems
        if problems:
            raise DeployError(
                "the database differs from the migrations; nothing was changed:\n  " + "\n  ".join(problems)
            )
        return adoptable

    # -- applying --------------------------------------------------------------------------

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
            fault(f"before:{where}")
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
                cur.execute(phase.kept)
                self.note_kept(cur, migration, cur.fetchall())
            cur.execute(phase.sql)
            if mark:
                self.record(cur, migration, state, started)
            fault(f"inside:{where}")

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
        keys = self.transaction(lambda cur: scalar(cur, count), f"{migration.name}: count") if count else None
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
                cur.execute(phase.sql, {"after": after, "batch_size": self.settings.batch_size})
                row = cur.fetchone()
                assert row is not None, "a batch statement returns one row"
                last, changed = row
                reached = False
                if stop is not None and last is not None:
                    cur.execute(batching.past(rw), {"last": last, "stop": stop})
                    reached = bool((cur.fetchone() or (False,))[0])
                fault(f"inside-batch:{migration.name}:{n}")
                return last, changed, reached

            last, changed, reached = self.transaction(work, f"{migration.name} batch {batch}", conn)
            fault(f"after-batch:{migration.name}:{batch}")
            if last is None:
                return batch - 1, total
            after, total = last, total + changed
            with self.shown:
                if self.progress is not None:
                    self.progress.add(self.settings.batch_size)
            if reached:
                return batch, total
        return batch, total

    def plan(self) -> str:
        """The SQL that `upgrade` would run now, as a script; nothing is executed."""
        entries = self.entries()
        todo = [m for m in self.migrations if m.name not in entries or entries[m.name].state != "applied"]
        return plan.script(todo, self.settings)

    def upgrade(self, to: str | None = None) -> list[str]:
        """Apply pending (or interrupted) migrations up to `to`; returns what was done."""
        target = self.find(to) if to else len(self.migrations) - 1
        with self.deployment_lock():
            entries = self.entries()
            self.check_preconditions([m for m in self.migrations[: target + 1] if m.name not in entries])
            self.refuse_changed("upgrade", self.migrations, entries)
            adoptable = self.check_drift(entries)
            self.ensure_registry()
            deployment = None if not entries and target >= 0 else self.deployment()
            if deployment is None and target >= 0:
                deployment = self.keep_before_image(None, None, [])  # the yardstick of everything
            done = []
            for m in self.migrations[: target + 1]:
                entry = entries.get(m.name)
                if entry is not None and entry.state == "applied":
                    continue
                if m in adoptable:
                    self.adopt(m)
                else:
                    if m.contract.rewrites and m.name not in entries:  # its values, just before it
                        applied = [n.name for n in self.migrations if n.name in entries or n.name in done]
                        self.keep_before_image(deployment, m, applied)
                    self.say(f"→ {m.name}")
                    self.run_phases(m, "up")
                done.append(m.name)
            if not done:
                self.say("nothing to do: every migration up to the target is applied")
            return done

    def ensure_registry(self) -> None:
        """The kit's registry (azak_registry), made if need be; an earlier kit's ledger moved in."""
        try:
            said = self.transaction(lambda cur: registry.ensure(cur, self.migrations), "the registry")
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise DeployError(
                f"cannot make the kit's registry ({registry.SCHEMA}) in {mask(self.url)}: "
                f"{str(exc).strip().splitlines()[0]}; grant the deploying role CREATE on the database, "
                f"or have its owner run CREATE SCHEMA {registry.SCHEMA} AUTHORIZATION <deploying role>;"
                " nothing was changed"
            ) from None
        for line in said:
            self.say(line)

    def deployment(self) -> int | None:
        """The deployment the ledger records (None: the kit has not begun one here)."""
        return self.transaction(registry.current, "read the registry")

    def keep_before_image(
        self, deployment: int | None, migration: Migration | None, applied: list[str]
    ) -> int:
        """Keep a before-image in the registry, on the server: of a new deployment (None) as the
        database is before the first migration (verification's yardstick), and again just
        before a migration that rewrites values (they are judged against it). The deployment's id."""

        def work(cur: Cursor) -> tuple[int, int]:
            rewrites = list(migration.contract.rewrites) if migration else []
            image_id = registry.take(
                cur, deployment, migration.name if migration else None, applied, rewrites
            )
            fault("inside:before-image")
            owner = scalar(cur, "SELECT deployment FROM azak_registry.images WHERE id = %s", (image_id,))
            return image_id, int(owner)

        image_id, kept_for = self.transaction(work, "keep the before-image")
        what = f"just before {migration.name}" if migration else "at base"
        self.say(f"  before-image #{image_id} ({what}) kept in {registry.SCHEMA}, deployment #{kept_for}")
        return kept_for

    def adopt(self, migration: Migration) -> None:
        """Record a migration whose tables someone created by hand and that match exactly."""
        started = time.monotonic()
        self.transaction(
            lambda cur: self.record(cur, migration, "applied", started), f"adopt {migration.name}"
        )
        self.say(f"  adopted {migration.name}: its tables exist and match the migration exactly")

    def downgrade(self, to: str) -> list[str]:
        """Revert every recorded migration after `to` (or all, for 'base'), newest first."""
        target = self.find(to)
        with self.deployment_lock():
            self.ensure_registry()
            entries = self.entries()
            todo = [m for m in self.migrations[target + 1 :] if m.name in entries][::-1]
            self.refuse_changed("roll back", todo, entries)
            for m in todo:
                self.say(f"← {m.name}")
                self.run_phases(m, "down")
            if not todo:
                self.say("nothing to do: no recorded migration after the target")
                left = [t for m in self.migrations[target + 1 :] for t in self.unrecorded(m)]
                if left:
                    self.say(f"left in place, not recorded in the ledger (made by hand?): {', '.join(left)}")
            return [m.name for m in todo]

    def apply_one(self, name: str, direction: str) -> None:
        """The runbook's per-step form: exactly this step, only when its neighbours allow it."""
        index = self.find(name)
        entries = self.entries()
        if direction == "up":
            missing = [m.name for m in self.migrations[:index] if m.name not in entries]
            if missing:
                raise DeployError(f"apply {', '.join(missing)} before {name}")
            self.upgrade(to=name)
        else:
            later = [m.name for m in self.migrations[index + 1 :] if m.name in entries]
            if later:
                raise DeployError(f"roll back {', '.join(later[::-1])} before {name}")
            self.downgrade(to=previous([m.name for m in self.migrations], name))


def judge(
    migrations: list[Migration],
    found: catalog.Image,
    skip: set[catalog.Key],
    start: dict[catalog.Key, str | None] | None = None,
    missing: str = "the ledger says applied but {} is missing",
) -> list[str]:
    """Differences between the catalog and what `migrations` declare (on top of `start`),
    each line naming the migration that declares the fact: declared facts that differ, and
    anything more on the tables they create. A created table that is missing is one line."""
    expected = fold((m.contract for m in migrations), start)
    owner = {key: m.name for m in migrations for key in m.contract.keys}
    # what only documents or tunes (a comment, storage parameters, a plain index) is no drift
    context = meaning.Context(found, frozenset(k for m in migrations for k in m.contract.data))
    problems: list[str] = []
    for m in migrations:
        gone = [t for t in m.contract.created_tables() if catalog.Key("table", t) not in found]
        problems += [f"{m.name}: {missing.format(table)}" for table in gone]
        mine = {k: v for k, v in expected.items() if owner.get(k) == m.name and k not in skip}
        mine = {k: v for k, v in mine.items() if k.table not in gone}
        problems += [f"{m.name}: {line}" for line in meaning.differences(mine, found, context)]
        created = set(m.contract.created_tables()) - set(gone)
        problems += [
            f"{m.name}: {key}: not in the contracts, found {value!r}"
            for key, value in sorted(found.items(), key=lambda kv: catalog.sort_key(kv[0]))
            if key.table in created
            and key not in expected
            and key not in skip
            and meaning.weigh(key, None, value, context, declared=False).verdict != meaning.NOTED
        ]
    return problems
