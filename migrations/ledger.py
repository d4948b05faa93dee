"""The ledger `azak_registry.ledger`: which migration is applied, from which source, by whom.

It lives in the kit's registry (`migrations.registry`), outside `public`: a complete
rollback leaves `public` exactly as before, and the ledger says `base`. An earlier kit kept
it in `public.schema_migrations`; it is read from there until the next command moves it
(`registry.ensure`), and `LEGACY` says what that table was, so that a restore and
verification clear and flag one left behind.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from migrations.contract import Contract, table
from migrations.dburl import scalar

TABLE = "azak_registry.ledger"
LEGACY_TABLE = "public.schema_migrations"
EXECUTOR_ENV = "AZAK_EXECUTOR"  # who deploys, when --executor is not given (else the OS user)

# The registry's schema and the ledger: what `plan` prints and what a hand-run plan creates.
CREATE = """
CREATE SCHEMA IF NOT EXISTS azak_registry;
CREATE TABLE IF NOT EXISTS azak_registry.ledger (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    state text NOT NULL CHECK (state IN ('applying', 'applied', 'reverting')),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    duration_ms integer
);
"""

# The earlier kit's ledger table in `public`: never there any more once the registry holds it.
# Its facts are that kit's, comment included (it was written when US-001 was the only change).
LEGACY = Contract(
    adds=table(
        "schema_migrations",
        columns={
            "name": "text not null",
            "checksum": "text not null",
            "state": "text not null",
            "applied_at": "timestamp with time zone not null default now()",
            "applied_by": "text not null",
            "duration_ms": "integer null",
        },
        comment="US-001 migration ledger (azak-db-migrations)",
        primary_key="PRIMARY KEY (name)",
    )
)

# state: 'applying' / 'reverting' while a resumable migration is between its phases.
MARK = """
INSERT INTO azak_registry.ledger (name, checksum, state, applied_by, duration_ms)
VALUES (%(name)s, %(checksum)s, %(state)s, %(by)s || ' as ' || current_user, %(ms)s)
ON CONFLICT (name) DO UPDATE
SET checksum = EXCLUDED.checksum, state = EXCLUDED.state, applied_at = now(),
    applied_by = EXCLUDED.applied_by, duration_ms = EXCLUDED.duration_ms;
"""

FORGET = "DELETE FROM azak_registry.ledger WHERE name = %(name)s;"


READ = {
    TABLE: "SELECT name, checksum, state, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS TZ'), applied_by,"
    " duration_ms FROM azak_registry.ledger ORDER BY applied_at",
    LEGACY_TABLE: "SELECT name, checksum, state, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS TZ'), applied_by,"
    " duration_ms FROM public.schema_migrations ORDER BY applied_at",
}


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    name: str
    checksum: str
    state: str
    applied_at: str
    applied_by: str
    duration_ms: int | None


def where(cur: Cursor) -> str | None:
    """The ledger table: the registry's, else an earlier kit's in public (a table), else None
    (base, never deployed)."""
    return scalar(
        cur,
        "SELECT CASE WHEN to_regclass('azak_registry.ledger') IS NOT NULL THEN 'azak_registry.ledger'"
        " WHEN (SELECT relkind FROM pg_catalog.pg_class WHERE oid = to_regclass('public.schema_migrations'))"
        " = 'r' THEN 'public.schema_migrations' END",
    )


def read(cur: Cursor) -> dict[str, Entry]:
    """The ledger rows by migration name (empty when there is no ledger)."""
    found = where(cur)
    if found is None:
        return {}
    cur.execute(READ[found])
    return {row[0]: Entry(*row) for row in cur.fetchall()}


def who(given: str | None = None) -> str:
    """Who runs this deployment: `given` (--executor), else AZAK_EXECUTOR, else the OS user."""
    if given:
        return given
    if os.environ.get(EXECUTOR_ENV):
        return os.environ[EXECUTOR_ENV]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
