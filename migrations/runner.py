"""The runtime: what upgrade, downgrade and status do with the chain on one database.

A `Runner` is a session (`migrations.session`: bounds, the deployment lock, retried short
transactions) that runs phases (`migrations.phases`) and keeps the registry's before-images
(`migrations.keeping`), after checking drift (`migrations.drift`).
"""

from __future__ import annotations

import sys
from typing import TextIO, TypeVar

from psycopg2.extensions import cursor as Cursor

from migrations import application, catalog, drift, ledger, plan
from migrations.blockers import blockers
from migrations.dburl import URL, DeployError, UsageError
from migrations.keeping import Keeping
from migrations.lookalikes import untrusted
from migrations.session import Settings, application_sql
from migrations.steps import Migration, load_all, previous

T = TypeVar("T")


def find(migrations: list[Migration], name: str) -> int:
    """Index of migration `name` in the chain (or -1 for 'base'), else a usage error listing
    the names."""
    if name == "base":
        return -1
    names = [m.name for m in migrations]
    if name not in names:
        raise UsageError(f"unknown migration {name!r}; known: base, {', '.join(names)}")
    return names.index(name)


class Runner(Keeping):
    """Applies and reverts migrations on one database, holding the deployment lock."""

    def __init__(
        self,
        url: URL,
        settings: Settings | None = None,
        out: TextIO = sys.stdout,
        migrations: list[Migration] | None = None,
        executor: str | None = None,
    ) -> None:
        self.migrations = load_all() if migrations is None else migrations
        super().__init__(url, settings, out, executor)
        try:
            self.require_application()
        except DeployError:
            self.close()
            raise

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
                    return [str(row[0]) for row in application_sql(cur, text)]

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
        """Stop on any difference from the contracts at the ledger head (`drift.check`); the
        pending migrations whose objects someone already made exactly as their contracts say."""
        return drift.check(self.migrations, entries, self.transaction(catalog.read, "read the catalog"))

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
            pending = [m for m in self.migrations[: target + 1] if m.name not in entries]
            unfinished = [
                m
                for m in self.migrations[: target + 1]
                if m.name in entries and entries[m.name].state != "applied"
            ]
            if pending or unfinished:
                self.refuse_lookalikes([*unfinished, *pending], "up")
            self.check_preconditions(pending)
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

    def downgrade(self, to: str) -> list[str]:
        """Revert every recorded migration after `to` (or all, for 'base'), newest first."""
        target = self.find(to)
        with self.deployment_lock():
            self.ensure_registry()
            entries = self.entries()
            todo = [m for m in self.migrations[target + 1 :] if m.name in entries][::-1]
            self.refuse_changed("roll back", todo, entries)
            if todo:
                self.refuse_lookalikes(todo, "down")
            self.refuse_blocked(todo)
            for m in todo:
                self.say(f"← {m.name}")
                self.run_phases(m, "down")
            if not todo:
                self.say("nothing to do: no recorded migration after the target")
                left = [t for m in self.migrations[target + 1 :] for t in self.unrecorded(m)]
                if left:
                    self.say(f"left in place, not recorded in the ledger (made by hand?): {', '.join(left)}")
            return [m.name for m in todo]

    def refuse_lookalikes(self, migrations: list[Migration], direction: str) -> None:
        """A migration's statements see public: a function or operator there named like
        PostgreSQL's own, of another role (no superuser), that they could call would run in
        their place with the deploying role's rights. Refused first."""
        said = "\n".join(
            "\n".join(str(getattr(p, part, "") or "") for part in ("sql", "kept", "total"))
            for m in migrations
            for p in (*dict(m.phases())[direction], *m.preconditions)
        )
        found = self.transaction(lambda cur: untrusted(cur, said), "functions named like PostgreSQL's own")
        if found:
            raise DeployError(
                f"refusing to run: public holds {', '.join(found)}, named like PostgreSQL's own: a"
                " migration's statement could call it instead, with the deploying role's rights. Rename"
                " or drop it (or deploy as its owner); nothing was changed"
            )

    def refuse_blocked(self, todo: list[Migration]) -> None:
        """A rollback PostgreSQL would stop half way (something else depends on a table it
        drops) is refused before anything changes."""
        found = self.transaction(lambda cur: blockers(cur, todo), "what depends on the tables")
        if found:
            raise DeployError(
                f"refusing to roll back: {'; '.join(found)} depend(s) on a table the rollback drops;"
                " PostgreSQL would stop it half way. Drop or move them first; nothing was changed"
            )

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
