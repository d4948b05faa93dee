"""What a run keeps in the kit's registry (`migrations.registry`): the registry itself, the
before-images (at base, and just before a migration that rewrites values), and the ledger row
of a migration someone made by hand, exactly (adopted)."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors
from psycopg2.extensions import cursor as Cursor

from migrations import faults, registry
from migrations.dburl import DeployError, mask, scalar
from migrations.phases import Phases
from migrations.steps import Migration


class Keeping(Phases):
    """A session that runs phases and keeps the registry's records of the chain."""

    migrations: list[Migration]

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
        now = self.transaction(registry.current, "read the registry")
        return now[0] if now else None

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
            faults.fault("inside:before-image")
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
