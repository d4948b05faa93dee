"""The ledger table `schema_migrations`: which migration is applied, from which source, by whom."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from psycopg2.extensions import cursor as Cursor

from migrations.contract import Contract, table
from migrations.dburl import scalar

TABLE = "schema_migrations"

CREATE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    state text NOT NULL CHECK (state IN ('applying', 'applied', 'reverting')),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL,
    duration_ms integer
);
COMMENT ON TABLE schema_migrations IS 'US-001 migration ledger (azak-db-migrations)';
"""

# The kit's own table, as a contract: there while any migration is recorded, never at base.
CONTRACT = Contract(
    adds=table(
        TABLE,
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
        constraints={
            "schema_migrations_state_check": "CHECK ((state = ANY "
            "(ARRAY['applying'::text, 'applied'::text, 'reverting'::text])))"
        },
    )
)

# state: 'applying' / 'reverting' while a resumable migration is between its phases.
MARK = """
INSERT INTO schema_migrations (name, checksum, state, applied_by, duration_ms)
VALUES (%(name)s, %(checksum)s, %(state)s, %(by)s || ' as ' || current_user, %(ms)s)
ON CONFLICT (name) DO UPDATE
SET checksum = EXCLUDED.checksum, state = EXCLUDED.state, applied_at = now(),
    applied_by = EXCLUDED.applied_by, duration_ms = EXCLUDED.duration_ms;
"""

FORGET = "DELETE FROM schema_migrations WHERE name = %(name)s;"


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    name: str
    checksum: str
    state: str
    applied_at: str
    applied_by: str
    duration_ms: int | None


def exists(cur: Cursor) -> bool:
    """Whether the ledger table is there (it is dropped when the last migration is rolled back)."""
    return bool(scalar(cur, "SELECT to_regclass('public.schema_migrations') IS NOT NULL"))


def read(cur: Cursor) -> dict[str, Entry]:
    """The ledger rows by migration name (empty when there is no ledger)."""
    if not exists(cur):
        return {}
    cur.execute(
        "SELECT name, checksum, state, to_char(applied_at, 'YYYY-MM-DD HH24:MI:SS TZ'),"
        " applied_by, duration_ms FROM public.schema_migrations ORDER BY applied_at"
    )
    return {row[0]: Entry(*row) for row in cur.fetchall()}


def who() -> str:
    """Who runs this deployment: the OS user."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
