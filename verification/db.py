"""How the checks reach the database: a read-only session, and probes that always roll back.

Every session carries `statement_timeout` and `lock_timeout`, so that verification of a
busy production database ends in seconds, passing or failing, and never stalls it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
from sqlalchemy import Connection, Engine, Executable, Inspector, create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from migrations.dburl import DeployError, describe, libpq_params, mask

STATEMENT_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 1000
# Probe rows carry explicit ids from here down: never a real row, never a sequence value.
PROBE_ID = -2_000_000_001


def engine(url: URL, read_only: bool, lock_timeout_ms: int, statement_timeout_ms: int) -> Engine:
    """An engine whose every session has the timeouts (and, if asked, is read-only); its
    connections come from the kit's one URL-to-libpq function, as the runner's do."""
    gucs = {"statement_timeout": str(int(statement_timeout_ms)), "lock_timeout": str(int(lock_timeout_ms))}
    if read_only:
        gucs["default_transaction_read_only"] = "on"
    params = {**libpq_params(url, **gucs), "application_name": "azak-verification"}
    # The reader holds one connection for the run; the probes' writer reuses one (pool of 1).
    pool = {"poolclass": NullPool} if read_only else {"pool_size": 1, "max_overflow": 2}
    return create_engine(
        URL.create("postgresql+psycopg2"), **pool, creator=lambda: psycopg2.connect(**params)
    )


class Target:
    """The database under verification."""

    def __init__(
        self,
        url: URL,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.url = url
        self.reader = engine(url, True, lock_timeout_ms, statement_timeout_ms)
        self.writer = engine(url, False, lock_timeout_ms, statement_timeout_ms)
        self._conn: Connection | None = None

    def connect(self) -> None:
        """Open the read-only session, or raise DeployError with one clear line."""
        try:
            self._conn = self.reader.connect()
        except DBAPIError as exc:
            raise DeployError(f"cannot connect to {mask(self.url)}: {describe(exc.orig, self.url)}") from None

    @property
    def conn(self) -> Connection:
        """The read-only connection (opened by `connect`)."""
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        """Close everything; nothing was written."""
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
        self.reader.dispose()
        self.writer.dispose()

    def rows(self, sql: str | Executable, **params: Any) -> Sequence[Any]:
        """Run a read-only query (SQL text or a SQLAlchemy statement); end its transaction."""
        statement = text(sql) if isinstance(sql, str) else sql
        try:
            return self.conn.execute(statement, params).all()
        finally:
            self.conn.rollback()

    def value(self, sql: str, **params: Any) -> Any:
        """The single value of a read-only query."""
        return self.rows(sql, **params)[0][0]

    def inspector(self) -> Inspector:
        """SQLAlchemy's schema reflection over the read-only session (cache cleared)."""
        return inspect(self.conn)

    @contextmanager
    def probe(self) -> Iterator[Probe]:
        """A writable transaction that is always rolled back, whatever happens inside."""
        conn = self.writer.connect()
        tx = conn.begin()
        try:
            yield Probe(conn)
        finally:
            tx.rollback()
            conn.close()


class Probe:
    """Behaviour checks inside a transaction that will be rolled back."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next_id = PROBE_ID

    def execute(self, sql: str, **params: Any) -> Sequence[Any]:
        """Run a statement; rows if it returns any."""
        result = self.conn.execute(text(sql), params)
        return result.all() if result.returns_rows else []

    def error_of(self, sql: str, **params: Any) -> DBAPIError | None:
        """Run a statement in a savepoint; the database error it raised, or None if it passed."""
        savepoint = self.conn.begin_nested()
        try:
            self.conn.execute(text(sql), params)
        except DBAPIError as exc:
            savepoint.rollback()
            return exc
        savepoint.rollback()
        return None

    def new_id(self) -> int:
        """A fresh explicit id for a probe row."""
        self.next_id -= 1
        return self.next_id

    def add_stock(self, code: str, priority: int | None = 5) -> int:
        """A probe stock (explicit id, as the application would send it); returns its id."""
        stock_id = self.new_id()
        self.execute(
            "INSERT INTO stocks (id, code, name, priority, is_active, created_at, updated_at)"
            " VALUES (:id, :code, 'verification probe', :priority, false, now(), now())",
            id=stock_id,
            code=code,
            priority=priority,
        )
        return stock_id

    def add_product(self, code: str, updated_at: str = "2000-01-01") -> int:
        """A product_info probe row for `code`; returns its id."""
        row_id = self.new_id()
        self.execute(
            "INSERT INTO product_info (id, stock_code, prdt_name, created_at, updated_at)"
            " VALUES (:id, :code, 'probe', :ts, :ts)",
            id=row_id,
            code=code,
            ts=updated_at,
        )
        return row_id

    def ratio_sql(self) -> str:
        """INSERT of one financial_ratios probe row (params: id, code, yymm, cls)."""
        return (
            "INSERT INTO financial_ratios (id, stock_code, stac_yymm, div_cls_code,"
            " created_at, updated_at) VALUES (:id, :code, :yymm, :cls, '2000-01-01', '2000-01-01')"
        )

    def add_ratio(self, code: str, yymm: str = "202412", cls: str = "0") -> int:
        """A financial_ratios probe row; returns its id."""
        row_id = self.new_id()
        self.execute(self.ratio_sql(), id=row_id, code=code, yymm=yymm, cls=cls)
        return row_id


def constraint_of(error: DBAPIError | None) -> str | None:
    """The constraint a database error names (psycopg2 diagnostics)."""
    diag = getattr(getattr(error, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None)


def sqlstate(error: DBAPIError | None) -> str | None:
    """The SQLSTATE of a database error."""
    return getattr(getattr(error, "orig", None), "pgcode", None)
