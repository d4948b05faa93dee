"""The vocabulary a migration script speaks: what changes, never how it is run.

A migration module declares `UPGRADE` and `DOWNGRADE` (tuples of phases) and, if it needs
one, `PRECONDITIONS`; its contract (what it does to the catalog) is the module of the same
name in the `contracts` package beside it. The runner (`migrations.runner`) decides
connections, transactions, locks and the ledger. This module imports nothing of the runner:
a migration that imports only this (and `migrations.runbook`'s entry points, which load the
runner only when called) cannot pull the runtime into itself.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from migrations.changes import CHAIN
from migrations.contract import Contract, Rewrite
from migrations.dburl import UsageError

# More change packages after the chain, for trying one out before it joins CHAIN (the tests'
# throwaway changes). Dotted package names, comma-separated. A change that says `AFTER = <the
# migration it follows>` is tried on the chain cut there: the changes after that point in
# CHAIN (a real next change) are left out, so the two never meet.
EXTRA_ENV = "AZAK_EXTRA_CHANGES"


@dataclass(frozen=True)
class Ddl:
    """Schema statements applied together in one short transaction.

    `kept` (a rollback's last phase): a query run first in that transaction, returning (key,
    value) rows of the migration's rewritten column that the application wrote during the
    rollback and the rollback kept; the runner notes them in the image of just before the
    migration, so that verification expects them.
    """

    sql: str
    kept: str | None = None


@dataclass(frozen=True)
class Batches:
    """A data statement repeated, one short transaction each, until it reports no key left.

    The SQL takes `%(after)s` (the last key done; NULL before the first batch) and
    `%(batch_size)s`; its last statement returns one row: (last key of this batch or NULL when
    nothing was left, rows changed). `total`, a query of one value, says how many keys the
    batches will go through: for the progress line only (not part of the checksum).
    """

    sql: str
    total: str | None = None


Phase = Ddl | Batches


@dataclass(frozen=True)
class Precondition:
    """A query that must return no row before the migration runs; `problem` says why not."""

    sql: str
    problem: str


@dataclass(frozen=True)
class Migration:
    """One migration as the runner, backup and verification see it."""

    name: str
    upgrade: tuple[Phase, ...]
    downgrade: tuple[Phase, ...]
    contract: Contract
    preconditions: tuple[Precondition, ...]
    path: Path
    change: str = ""
    legacy: tuple[str, ...] = ()

    @property
    def checksum(self) -> str:
        """sha256 of everything the migration runs, in order."""
        kept = lambda p: f"\nkept:{p.kept}" if isinstance(p, Ddl) and p.kept else ""  # noqa: E731
        text = "\n".join(f"{d}:{type(p).__name__}:{p.sql}{kept(p)}" for d, ps in self.phases() for p in ps)
        return hashlib.sha256(text.encode()).hexdigest()

    def phases(self) -> tuple[tuple[str, tuple[Phase, ...]], ...]:
        return (("up", self.upgrade), ("down", self.downgrade))

    def matches(self, recorded: str) -> bool:
        """Whether a ledger checksum is this migration's (today's or the first kit's)."""
        return recorded in (self.checksum, *self.legacy)

    @property
    def has_data_phases(self) -> bool:
        """A migration that changes rows can never be taken as done from the schema alone."""
        return any(isinstance(p, Batches) for p in self.upgrade)


def from_module(module: ModuleType) -> Migration:
    """Read a migration module's declarations, its contract and its change's facts."""
    package, _, name = module.__name__.rpartition(".")
    change = importlib.import_module(package)
    contract = importlib.import_module(f"{package}.contracts.{name}").CONTRACT
    return Migration(
        name=name,
        upgrade=tuple(module.UPGRADE),
        downgrade=tuple(module.DOWNGRADE),
        contract=contract,
        preconditions=tuple(getattr(module, "PRECONDITIONS", ())),
        path=Path(module.__file__ or ""),
        change=getattr(change, "TITLE", package.rpartition(".")[2]),
        legacy=tuple(getattr(change, "LEGACY_CHECKSUMS", {}).get(name, ())),
    )


def changes() -> list[str]:
    """The dotted package names of the chain's changes, in deployment order (with any tried out)."""
    chained = list(CHAIN)
    for extra in (c.strip() for c in os.environ.get(EXTRA_ENV, "").split(",") if c.strip()):
        after = getattr(importlib.import_module(extra), "AFTER", None)
        if after is not None:
            cut = [c for c in chained if after in importlib.import_module(c).MIGRATIONS]
            if not cut:
                raise UsageError(f"{extra} follows {after}, which no change of the chain has")
            if importlib.import_module(cut[0]).MIGRATIONS[-1] != after:  # the cut keeps whole changes
                raise UsageError(f"{extra} follows {after}, which is not the last migration of {cut[0]}")
            chained = chained[: chained.index(cut[0]) + 1]
        chained.append(extra)
    return chained


# Names a migration may not take: the ledger knows a migration by its name alone, and the
# runbook's form `python -m migrations.<name>` finds the kit's own modules first.
KIT = Path(__file__).parent
RESERVED = {p.stem for p in KIT.iterdir() if p.suffix == ".py" or p.is_dir()} | {"contracts", "checklist"}


def chain() -> list[str]:
    """The dotted module names of every migration, in deployment order; a name two changes
    share, or one of the kit's own modules, is refused."""
    modules = [f"{c}.{name}" for c in changes() for name in importlib.import_module(c).MIGRATIONS]
    names = [m.rpartition(".")[2] for m in modules]
    for module, name in zip(modules, names, strict=True):
        if names.count(name) > 1 or name in RESERVED:
            why = "another migration of the chain" if names.count(name) > 1 else "a module of the kit"
            raise UsageError(f"migration {module}: the name {name} is taken by {why}; rename it")
    return modules


def load_all() -> list[Migration]:
    """Every migration, in deployment order."""
    return [from_module(importlib.import_module(module)) for module in chain()]


def previous(names: list[str], name: str) -> str:
    """The migration before `name` in the chain (`names`, in order), or 'base' for the first."""
    index = names.index(name)
    return names[index - 1] if index else "base"


def rewrites(migrations: list[Migration]) -> dict[Rewrite, Migration]:
    """Every column the chain rewrites, and the migration that rewrites it."""
    return {rw: m for m in migrations for rw in m.contract.rewrites}


def title(through: str = "head") -> str:
    """What the chain up to migration `through` is called: the titles of its changes up to the
    one holding it (every change for 'head' or 'base'), joined by ' + '."""
    migrations = load_all()
    names = [m.name for m in migrations]
    last = names.index(through) if through in names else len(migrations) - 1
    return " + ".join(dict.fromkeys(m.change for m in migrations[: last + 1]))
