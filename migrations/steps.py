"""The vocabulary a migration script speaks: what changes, never how it is run.

A migration module declares `UPGRADE` and `DOWNGRADE` (tuples of phases) and, if it needs
one, `PRECONDITIONS`; its contract (what it does to the catalog) is the module of the same
name in the `contracts` package beside it. The runner (`migrations.runner`) decides
connections, transactions, locks and the ledger. This module imports nothing of the runner:
a migration that imports only this cannot pull the runtime into itself.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from migrations import ORDER
from migrations.contract import Contract

# More migration modules, after ORDER: a change being tried out before it joins ORDER (the
# tests' throwaway fourth migration uses this). Dotted module names, comma-separated.
EXTRA_ENV = "AZAK_EXTRA_MIGRATIONS"

# Checksums earlier versions of the kit recorded: a ledger written by one is read as applied,
# not as changed. The first version hashed whole files; its migration 3 differs in substance
# only in schema-qualifying its trigger function's backup table (and reaching an empty stock
# code): verification names that function's body as a difference. The second (cfbdc31f...)
# had the same upgrade and ends; its downgrade dropped the trigger first (today's keeps the
# application's writes during the rollback, and finishes what that one started).
LEGACY_CHECKSUMS = {
    "add_product_info_table": ("566f1795ccc0353c7d64dcb39567501f48aa0cf3b96dd48008ca27fbd3c41015",),
    "add_financial_ratios_table": ("0305ed3b914451ad847956da01c8a14ce359101b8bb19dd54fec75f40eabf76c",),
    "deprecate_priority_column": (
        "4e4133d8d141da5dc3051c34ace0597d2785b095c7c713506c1cd9a944e37a66",
        "cfbdc31fb922385f3306537eabb7e6c2b3251ee77d25d31cbb7ee57e4ecb854a",
    ),
}


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
        return recorded in (self.checksum, *LEGACY_CHECKSUMS.get(self.name, ()))

    @property
    def has_data_phases(self) -> bool:
        """A migration that changes rows can never be taken as done from the schema alone."""
        return any(isinstance(p, Batches) for p in self.upgrade)


def from_module(module: ModuleType) -> Migration:
    """Read a migration module's declarations and its contract."""
    package, _, name = module.__name__.rpartition(".")
    contract = importlib.import_module(f"{package}.contracts.{name}").CONTRACT
    return Migration(
        name=name,
        upgrade=tuple(module.UPGRADE),
        downgrade=tuple(module.DOWNGRADE),
        contract=contract,
        preconditions=tuple(getattr(module, "PRECONDITIONS", ())),
        path=Path(module.__file__ or ""),
    )


def chain() -> list[str]:
    """The dotted module names of every migration, in deployment order."""
    extra = [m.strip() for m in os.environ.get(EXTRA_ENV, "").split(",") if m.strip()]
    return [f"migrations.{name}" for name in ORDER] + extra


def load_all() -> list[Migration]:
    """Every migration, in deployment order."""
    return [from_module(importlib.import_module(module)) for module in chain()]


def entry_points(module: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """The runbook's `upgrade(db_url=None)` and `downgrade(db_url=None)` for a migration module."""

    def upgrade(db_url: str | None = None) -> None:
        """Apply this migration (its predecessors must be applied)."""
        from migrations.script import run_step

        run_step(module, "up", db_url)

    def downgrade(db_url: str | None = None) -> None:
        """Roll this migration back (its successors must be rolled back)."""
        from migrations.script import run_step

        run_step(module, "down", db_url)

    return upgrade, downgrade


def main() -> None:
    """`python -m migrations.<name> [upgrade|downgrade]`: the runbook's per-step form."""
    from migrations.script import main as script_main

    script_main()
