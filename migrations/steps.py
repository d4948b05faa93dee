"""The vocabulary a migration script speaks: what changes, never how it is run.

A migration module lists `UPGRADE` and `DOWNGRADE` as a tuple of phases and names the
tables it `OWNS` (compared with what it would create when the ledger does not know them).
The runner (`migrations.runner`) decides connections, transactions, locks and the ledger.
A migration writes its SQL out in full, even where two migrations look alike (the two
`updated_at` triggers): a migration is frozen once applied, and the checksum of its own
file must cover everything it does.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from migrations import ORDER


@dataclass(frozen=True)
class Ddl:
    """Schema statements applied together in one short transaction."""

    sql: str


@dataclass(frozen=True)
class Batches:
    """A data statement repeated, one short transaction each, until it reports no key left.

    The SQL takes `%(after)s` (the last key done) and `%(batch_size)s`; its last statement
    returns one row: (last key of this batch or NULL when nothing was left, rows changed).
    """

    sql: str


Phase = Ddl | Batches


@dataclass(frozen=True)
class Migration:
    """One migration script as the runner sees it."""

    name: str
    upgrade: tuple[Phase, ...]
    downgrade: tuple[Phase, ...]
    owns: tuple[str, ...]
    checksum: str
    path: Path

    @property
    def atomic(self) -> bool:
        """True when the upgrade is a single transaction (no resumable in-between state)."""
        return len(self.upgrade) == 1 and len(self.downgrade) == 1


def from_module(module: ModuleType) -> Migration:
    """Read a migration module's declarations."""
    path = Path(module.__file__ or "")
    return Migration(
        name=module.__name__.rpartition(".")[2],
        upgrade=tuple(module.UPGRADE),
        downgrade=tuple(module.DOWNGRADE),
        owns=tuple(getattr(module, "OWNS", ())),
        checksum=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=path,
    )


def load_all() -> list[Migration]:
    """Every migration, in deployment order."""
    return [from_module(importlib.import_module(f"migrations.{name}")) for name in ORDER]
