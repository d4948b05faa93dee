"""What to do now, from what failed and which migration owns it.

Each failed check says what it judged (`facts_of`): the catalog facts that differ, the
migration whose data it judges (`applied` marker), the facts a probe needs (`needs`). With
the ledger, that gives the advice, first step first:

- the ledger short of the verified state (a database not yet deployed): the upgrade, or
  `--to base`; past it: the rollback to it; an interrupted migration: the same command again;
- no before-image: how to get one;
- facts a migration owns that can be repaired without touching data (an index, a comment, a
  trigger, a function, a constraint left NOT VALID): that migration's own statement, then the
  rollback of that migration (not of the last one);
- its data or a fact that holds data (a table, a column, a key): the rollback of the owner,
  or the restore; saved values a rollback would give back wrong, values of a migration
  already rolled back, and damage the kit cannot place (a fact no migration made): the restore.

Every step names the objects and ends with the verification that proves it worked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrations.catalog import Key
from migrations.steps import Migration, previous
from verification.repairs import Difference, repair

YARDSTICK = "before-image"  # the checklist item of the check that the before-image is known
BACKUP = "backup"
BLOCKED = "rollback blocked"  # the item of the check that nothing else depends on the new tables
DIFFERENCES = pytest.StashKey[list["Difference"]]()  # a catalog check's differences
SHOWN = 5  # objects named in a step's sentence


@dataclass
class Step:
    """One thing to do now: what, and the commands if there are any."""

    text: str
    commands: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """A failed check, as the advice reads it."""

    name: str
    item: str
    differences: list[Difference] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)  # judged while these are applied
    after: list[str] = field(default_factory=list)  # judged once these are rolled back
    needs: list[Key] = field(default_factory=list)
    rollback_source: bool = False  # judges what a rollback gives back
    ran: bool = True  # False: it could not run (pytest's error), so it judged nothing
    message: str = ""


def facts_of(item: pytest.Item) -> dict[str, Any]:
    """What a failed check judged, as plain data (xdist carries it to the controller)."""
    applied = [(name, m.kwargs.get("not_", False)) for m in item.iter_markers("applied") for name in m.args]
    return {
        "differences": [[*d.key, d.expected, d.found] for d in item.stash.get(DIFFERENCES, [])],
        "owners": [name for name, negated in applied if not negated],
        "after": [name for name, negated in applied if negated],
        "needs": [list(key) for m in item.iter_markers("needs") for key in m.args],
        "rollback_source": item.get_closest_marker("rollback_source") is not None,
    }


def failure(
    name: str, item: str, facts: dict[str, Any] | None, ran: bool = True, message: str = ""
) -> Failure:
    """A Failure from `facts_of`'s data; one that could not run judged nothing."""
    facts = facts if ran and facts else {}
    return Failure(
        name,
        item,
        [Difference(Key(*d[:3]), d[3], d[4]) for d in facts.get("differences", [])],
        list(facts.get("owners", [])),
        list(facts.get("after", [])),
        [Key(*k) for k in facts.get("needs", [])],
        bool(facts.get("rollback_source")),
        ran,
        message,
    )


@dataclass
class Database:
    """One verified database as the advice needs it."""

    name: str  # the URL as shown (password ***)
    ledger: dict[str, str] | None  # migration → state; None: no ledger table
    unreadable: str = ""  # why this role may not read the ledger
    backup: Path | None = None  # its newest backup in --backup-dir
    backup_dir: Path = Path("data/backups")


@dataclass
class Kit:
    """The commands, as they run where this verification ran."""

    python: str
    verify_options: list[str] = field(default_factory=list)  # this run's options that judge

    def migrations(self, db: str, args: str) -> str:
        return f"{self.python} -m migrations {args} --db-url {shlex.quote(db)}"

    def verification(self, db: str, *args: str) -> str:
        given = {re.split(r"[= ]", a, maxsplit=1)[0] for a in args}
        kept = [o for o in self.verify_options if o.split("=", 1)[0] not in given]
        return " ".join([f"{self.python} -m verification", *args, *map(shlex.quote, kept)]) + (
            f" --db-url {shlex.quote(db)}"
        )

    def psql(self, db: str, statements: list[str]) -> str:
        """One transaction in psql, with the kit's search_path and lock_timeout."""
        head = f"psql -X -v ON_ERROR_STOP=1 -1 -d {shlex.quote(db)}"
        setup = "-c 'SET search_path = public; SET lock_timeout = 2000'"
        return " \\\n  ".join([f"{head} {setup}", *(f"-c {shlex.quote(s)}" for s in statements)])


# -- what failed, by owner -----------------------------------------------------------------------


@dataclass
class Damage:
    """The failures of a database whose ledger is where it should be, by what fixes them."""

    applied: list[Migration]
    repairs: dict[str, list[tuple[int, str, list[str]]]] = field(default_factory=dict)
    owned: dict[str, list[str]] = field(default_factory=dict)  # owner → facts its rollback fixes
    checks: dict[str, list[str]] = field(default_factory=dict)  # owner → failed checks of its own
    restore: list[str] = field(default_factory=list)  # what only the backup has right
    other: list[str] = field(default_factory=list)  # failed checks the kit cannot trace

    def owner(self, key: Key) -> Migration | None:
        """The applied migration that made `key` (last to declare it), else the one that
        created its table (something more on a new table)."""
        declared = [m for m in self.applied if key in m.contract.keys]
        if declared:
            return declared[-1]
        return next((m for m in self.applied if key.table in m.contract.created_tables()), None)

    def sort(self, failures: Iterable[Failure]) -> Damage:
        failures = list(failures)
        for d in (d for f in failures for d in f.differences):
            self.difference(d)
        traced = {*self.repairs, *self.owned}  # a probe of theirs: their repair may explain it
        for f in (f for f in failures if not f.differences):
            owner = next(filter(None, map(self.owner, f.needs)), None)
            if f.owners and f.rollback_source:
                self.restore.append(f"{f.name} (what a rollback of {f.owners[0]} would give back)")
            elif f.owners:
                self.checks.setdefault(f.owners[0], []).append(f.name)
            elif f.after:
                self.restore.append(f"{f.name} (values of {f.after[0]}, rolled back already)")
            elif owner is not None and owner.name not in traced:
                self.checks.setdefault(owner.name, []).append(f.name)
            elif owner is None:
                self.other.append(f.name)
        return self

    def difference(self, d: Difference) -> None:
        if d.key.kind == "owner" and d.found is None:
            return  # the object itself is missing: its own difference says what puts it back
        owner = self.owner(d.key)
        if owner is None:
            self.restore.append(f"{d.key}, which no migration made")
            return
        fixed = repair(owner, d)
        if fixed is None:
            self.own(owner.name, str(d.key))
        else:
            self.repairs.setdefault(owner.name, []).append((fixed[0], str(d.key), fixed[1]))

    def own(self, owner: str, what: str) -> None:
        self.owned.setdefault(owner, []).append(what)

    def first_owner(self) -> str | None:
        """The earliest migration whose rollback covers every owned failure."""
        owners = {*self.repairs, *self.owned, *self.checks}
        return next((m.name for m in self.applied if m.name in owners), None)


# -- the steps ---------------------------------------------------------------------------------


def because(objects: list[str], checks: list[str]) -> str:
    """Why a rollback: the objects its migrations made that differ, the checks that failed."""
    made = f", which made {listed(objects)}" if objects else ""
    return made + (f" (failed: {listed(checks)})" if checks else "")


def listed(things: list[str]) -> str:
    things = list(dict.fromkeys(things))
    more = f" and {len(things) - SHOWN} more" if len(things) > SHOWN else ""
    return ", ".join(things[:SHOWN]) + more


class Advisor:
    """The steps for one database."""

    def __init__(self, db: Database, chain: list[Migration], target: str, kit: Kit) -> None:
        self.db, self.chain, self.target, self.kit = db, chain, target, kit
        self.names = [m.name for m in chain]
        self.wanted = self.names[: self.names.index(target) + 1] if target != "base" else []
        self.shown = "head" if target == self.names[-1] else target

    def verify(self, target: str, *more: str) -> str:
        shown = "head" if target == self.names[-1] else target
        return self.kit.verification(self.db.name, f"--to {shown}", *more)

    def run(self, args: str) -> str:
        return self.kit.migrations(self.db.name, args)

    def backed_up(self, target: str) -> list[str]:
        """At base, never deployed (no before-image in the registry yet): a backup, then verify
        what the migrations declare (the first upgrade keeps the image)."""
        where = shlex.quote(str(self.db.backup_dir))
        return [
            self.run(f"backup --dir {where}"),
            self.verify(target, f"--backup-dir={where}", "--before=none"),
        ]

    def steps(self, failures: list[Failure]) -> list[Step]:
        if self.db.unreadable:
            return [
                Step(
                    f"This role may not read the ledger ({self.db.unreadable}): verify with a role that"
                    " may (SELECT on every table of public) before changing anything."
                )
            ]
        stopped = [f for f in failures if not f.ran]
        failures = [f for f in failures if f.ran]
        steps = []
        if stopped:
            why = stopped[0].message.strip().splitlines()[0] if stopped[0].message.strip() else "an error"
            steps.append(
                Step(
                    f"{len(stopped)} check(s) could not run, so they judged nothing"
                    f" ({listed([f.name for f in stopped])}): {why}. Put that right, then verify again:",
                    [self.verify(self.target)],
                )
            )
            if not failures:
                return steps
        ledger = self.ledger_steps(failures)
        if ledger:
            return steps + ledger
        steps += self.yardstick_steps(failures) + self.backup_steps(failures) + self.blocked_steps(failures)
        rest = [f for f in failures if f.item not in (YARDSTICK, BACKUP, BLOCKED)]
        return steps + (self.damage_steps(rest) if rest or not steps else [])

    def ledger_steps(self, failures: list[Failure]) -> list[Step]:
        """The ledger is not at the verified state: bring it there first."""
        ledger = self.db.ledger or {}
        recorded = [n for n in self.names if n in ledger]
        unfinished = [n for n in recorded if ledger[n] != "applied"]
        to = "" if self.target == self.names[-1] else f" --to {self.target}"
        if unfinished:
            name = unfinished[0]
            before = previous(self.names, name)
            upgrade = ledger[name] == "applying"  # finished up to the verified state, not past it
            again = f"upgrade{to}" if upgrade else f"downgrade --to {before}"
            return [
                Step(
                    f"{name} was interrupted ({ledger[name]}): run the same command again to finish it:",
                    [self.run(again), self.verify(self.target if upgrade else before)],
                )
            ]
        if recorded == self.wanted:
            return []
        if recorded == self.wanted[: len(recorded)]:
            if not any(f.differences for f in failures):
                return [
                    Step(
                        f"The database has what {self.shown} makes, but the ledger records only "
                        f"{listed(recorded) or 'nothing'}: someone changed the ledger. Do not upgrade (a "
                        "migration that rewrites rows is never adopted); see the ledger query in "
                        'README.md, section "Troubleshooting".'
                    )
                ]
            if not recorded:
                no_image = any(f.item == YARDSTICK for f in failures)
                return [
                    Step(
                        f"This database is not deployed: the ledger records no migration ({self.shown}"
                        " expected). Deploy it (upgrade keeps the before-image first):",
                        [self.run(f"upgrade{to}"), self.verify(self.target)],
                    ),
                    Step(
                        "Or, if it should be as before the deployment, verify that instead"
                        + (
                            " (no before-image yet: the first upgrade keeps one; until then what the"
                            " migrations declare is judged):"
                            if no_image
                            else ":"
                        ),
                        self.backed_up("base") if no_image else [self.verify("base")],
                    ),
                ]
            return [
                Step(
                    f"The ledger stops at {recorded[-1]} ({self.shown} expected): finish the upgrade:",
                    [self.run(f"upgrade{to}"), self.verify(self.target)],
                )
            ]
        if recorded[: len(self.wanted)] == self.wanted:
            later = recorded[len(self.wanted) :]
            return [
                Step(
                    f"The ledger still records {listed(later)} after {self.shown}: finish the rollback"
                    " (it resumes where it stopped):",
                    [self.run(f"downgrade --to {self.target}"), self.verify(self.target)],
                ),
                self.restore_step("Or "),
            ]
        return [self.restore_step(f"The ledger records {listed(recorded)}, not a state of the chain: ")]

    def yardstick_steps(self, failures: list[Failure]) -> list[Step]:
        """No before-image: how to get one."""
        if not any(f.item == YARDSTICK for f in failures):
            return []
        if not self.db.ledger:  # at base: a backup keeps one now
            return [
                Step(
                    "No before-image of the database (the yardstick of every fact the migrations do not"
                    " declare): the kit keeps one in the database's registry (azak_registry) when its"
                    " upgrade leaves base. Until then, take a backup and judge what the migrations declare:",
                    self.backed_up(self.target),
                )
            ]
        return [
            Step(
                "No before-image of the database (the yardstick of every fact the migrations do not"
                " declare) in the database's registry (azak_registry): a deployment of an earlier kit"
                " brings its image files in with `python -m migrations adopt` where that kit ran upgrade."
                " Verify with an image file of it, --before FILE; or judge only what the migrations"
                " declare:",
                [self.verify(self.target, "--before=none")],
            )
        ]

    def backup_steps(self, failures: list[Failure]) -> list[Step]:
        if not any(f.item == BACKUP for f in failures):
            return []
        where = shlex.quote(str(self.db.backup_dir))
        return [
            Step(
                f"No usable recent backup in {self.db.backup_dir}: take one before changing anything:",
                [self.run(f"backup --dir {where}")],
            )
        ]

    def blocked_steps(self, failures: list[Failure]) -> list[Step]:
        """Objects outside the migrations on their tables: a rollback refuses to start."""
        if not any(f.item == BLOCKED for f in failures):
            return []
        return [
            Step(
                "Something outside the migrations depends on their tables (the check names it): it is the"
                " application's or a DBA's. A rollback refuses to start while it is there; drop or move it"
                " before any rollback, then verify again:",
                [self.verify(self.target)],
            )
        ]

    def damage_steps(self, failures: list[Failure]) -> list[Step]:
        applied = self.chain[: len(self.wanted)]
        damage = Damage(applied).sort(failures)
        owner = damage.first_owner()
        if damage.restore:
            return [self.restore_step(f"Only the backup has {listed(damage.restore)} right: ")]
        if damage.repairs and not (damage.owned or damage.checks or damage.other):
            order = {n: i for i, n in enumerate(self.names)}
            fixes = sorted((order[m], *fix) for m, fixes in damage.repairs.items() for fix in fixes)
            objects = [what for _, _, what, _ in fixes]
            statements = list(dict.fromkeys(s for *_, stmts in fixes for s in stmts))
            assert owner is not None
            return [
                Step(
                    f"Repair {listed(objects)} with the statements of {listed(list(damage.repairs))}"
                    " that made them (no data is touched):",
                    [self.kit.psql(self.db.name, statements), self.verify(self.target)],
                ),
                self.rollback_step(owner, because(objects, []), "If that fails, roll back"),
                self.restore_step("Or "),
            ]
        if owner is not None:
            objects = [w for fixes in damage.repairs.values() for _, w, _ in fixes]
            objects += [w for ws in damage.owned.values() for w in ws]
            checks = [c for cs in damage.checks.values() for c in cs] + damage.other
            return [self.rollback_step(owner, because(objects, checks)), self.restore_step("Or ")]
        if applied:
            why = f": {listed(damage.other)} failed, which the kit cannot trace to a migration"
            return [self.rollback_step(applied[0].name, why), self.restore_step("Or ")]
        return [self.restore_step("")]

    def rollback_step(self, owner: str, why: str, lead: str = "Roll back") -> Step:
        """Roll back `owner` and what came after it, then verify the state before it."""
        before = previous(self.names, owner)
        later = self.wanted[self.names.index(owner) + 1 :]
        text = f"{lead} {owner}" + (f" (and {listed(later)} after it)" if later else "")
        return Step(text + why + ":", [self.run(f"downgrade --to {before}"), self.verify(before)])

    def restore_step(self, why: str) -> Step:
        """Restore the newest backup (before the deployment), then verify the state before it."""
        backup = self.db.backup
        pattern = self.db.backup_dir / "azak_backup_YYYYMMDD_HHMMSS.sql.gz"
        text = f"{why}restore the newest backup of the database (one transaction: all or nothing)"
        if backup is None:
            text += f"; take the newest {self.db.backup_dir / 'azak_backup_*.sql.gz'} of it"
        path = shlex.quote(str(backup)) if backup else str(pattern)
        return Step(
            text[0].upper() + text[1:] + ", then verify it is as before the deployment:",
            [self.run(f"restore {path} --yes"), self.verify("base")],
        )
