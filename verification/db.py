"""How the checks reach the database: a read-only session, and probes that always roll back.

Every session carries `statement_timeout` and `lock_timeout`, so that verification of a
busy production database ends in seconds, passing or failing, and never stalls it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
from psycopg2 import sql as pgsql
from psycopg2.extensions import connection as Connection

from migrations.dburl import IDENTITY_SQL, URL, connect

STATEMENT_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 1000
SCAN_ROWS = 5_000  # rows per table the data checks try (the first in storage order)
MAX_ROW_LOSS = 0.5  # the share of a table's rows it may lose since the before-image
# Probe rows carry explicit ids from here down: never a real row, never a sequence value.
PROBE_ID = -2_000_000_001
# `:name` placeholders (not `::type` casts), as the checks write them.
PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

Query = str | pgsql.Composable
# Whether a table is there, from the catalog: no privilege on its schema needed to know it.
EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :table)"
)


def bind(text: str) -> str:
    """A check's SQL with `:name` placeholders, in psycopg2's `%(name)s` style."""
    return PLACEHOLDER.sub(r"%(\1)s", text.replace("%", "%%"))


def run(conn: Connection, query: Query, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute on `conn` (placeholders bound); the rows, if the statement returns any."""
    text = query.as_string(conn) if isinstance(query, pgsql.Composable) else query
    with conn.cursor() as cur:
        cur.execute(bind(text), params) if params else cur.execute(text)
        return cur.fetchall() if cur.description else []


class Target:
    """The database under verification: a read-only session, and a writer for the probes,
    both from the kit's one URL-to-libpq function, as the runner's are."""

    def __init__(
        self,
        url: URL,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.url = url
        self.timeouts = {
            "statement_timeout": str(int(statement_timeout_ms)),
            "lock_timeout": str(int(lock_timeout_ms)),
        }
        self._conn: Connection | None = None
        self._writer: Connection | None = None
        self.blind: str | None = None  # why this role can read nothing of the schema, if it cannot

    def session(self, read_only: bool) -> Connection:
        """A new session with the timeouts (and, if asked, read-only), or one clear line."""
        gucs = {**self.timeouts, **({"default_transaction_read_only": "on"} if read_only else {})}
        return connect(self.url, application_name="azak-verification", **gucs)

    def connect(self) -> None:
        """Open the read-only session."""
        self._conn = self.session(read_only=True)

    @property
    def conn(self) -> Connection:
        """The read-only connection (opened by `connect`)."""
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        """Close everything; nothing was written."""
        for conn in (self._conn, self._writer):
            if conn is not None and not conn.closed:
                conn.rollback()
                conn.close()

    def rows(self, query: Query, **params: Any) -> Sequence[Any]:
        """Run a read-only query (`:name` placeholders); end its transaction."""
        try:
            return run(self.conn, query, params)
        finally:
            self.conn.rollback()

    def value(self, query: Query, **params: Any) -> Any:
        """The single value of a read-only query."""
        return self.rows(query, **params)[0][0]

    def ledger(self) -> dict[str, str] | None:
        """The ledger's rows (in the kit's registry), migration → state; None when there is no
        ledger table. A role that may not read it gets the database's error (psycopg2.Error)."""
        if not self.value(EXISTS, schema="azak_registry", table="ledger"):
            return None
        return dict(self.rows("SELECT name, state FROM azak_registry.ledger ORDER BY applied_at, name"))

    def checksums(self) -> dict[str, str]:
        """The checksum the ledger recorded for each migration (empty without a ledger)."""
        if not self.value(EXISTS, schema="azak_registry", table="ledger"):
            return {}
        return dict(self.rows("SELECT name, checksum FROM azak_registry.ledger"))

    def legacy_ledger(self) -> bool:
        """Whether the ledger is still an earlier kit's, in public.schema_migrations."""
        return bool(
            self.value(EXISTS, schema="public", table="schema_migrations")
            and not self.value(EXISTS, schema="azak_registry", table="ledger")
        )

    def blind_spot(self) -> str | None:
        """Why this role may read nothing in schema public (no USAGE on it), else None."""
        user, quoted, usage = self.rows(
            "SELECT current_user, quote_ident(current_user), to_regnamespace('public') IS NULL"
            " OR has_schema_privilege('public', 'USAGE')"
        )[0]
        if usage:
            return None
        return f"the role {user} has no USAGE on schema public (GRANT USAGE ON SCHEMA public TO {quoted})"

    def identity(self) -> str:
        """Which database this is: `name on server N` (backups and images say it too)."""
        return str(self.value(IDENTITY_SQL))

    @contextmanager
    def probe(self) -> Iterator[Probe]:
        """A writable transaction that is always rolled back, whatever happens inside."""
        if self._writer is None or self._writer.closed:
            self._writer = self.session(read_only=False)
        try:
            yield Probe(self._writer)
        finally:
            self._writer.rollback()


class Probe:
    """Behaviour checks inside a transaction that will be rolled back."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next_id = PROBE_ID

    def execute(self, query: str, **params: Any) -> Sequence[Any]:
        """Run a statement; rows if it returns any."""
        return run(self.conn, query, params)

    def outcome(self, query: str, **params: Any) -> tuple[Sequence[Any], psycopg2.Error | None]:
        """Run a statement in a savepoint that is rolled back: (rows, None) or ([], its error)."""
        run(self.conn, "SAVEPOINT probe", {})
        try:
            return run(self.conn, query, params), None
        except psycopg2.Error as exc:
            return [], exc
        finally:
            run(self.conn, "ROLLBACK TO SAVEPOINT probe", {})

    def error_of(self, query: str, **params: Any) -> psycopg2.Error | None:
        """The database error a statement raises (in a rolled-back savepoint), or None."""
        return self.outcome(query, **params)[1]

    def new_id(self) -> int:
        """A fresh explicit id for a probe row."""
        self.next_id -= 1
        return self.next_id


def constraint_of(error: psycopg2.Error | None) -> str | None:
    """The constraint a database error names (psycopg2 diagnostics)."""
    return error.diag.constraint_name if error is not None else None


def sqlstate(error: psycopg2.Error | None) -> str | None:
    """The SQLSTATE of a database error."""
    return error.pgcode if error is not None else None
