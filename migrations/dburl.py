"""Where the database is: URL resolution, password masking and connecting.

Shared by the runner and the verification suite, so that both read the same
settings the same way and neither ever prints a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg2
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

CONNECT_TIMEOUT_S = 5
POSTGRES_SCHEMES = ("postgresql", "postgres")


class UsageError(Exception):
    """Bad input from the operator (exit code 2)."""


class DeployError(Exception):
    """The database said no, or is not in a state we can work on (exit code 1)."""


def resolve(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> URL:
    """The database URL: `explicit`, else DATABASE_URL, else the runbook's POSTGRES_* variables."""
    env = os.environ if environ is None else environ
    text = explicit or env.get("DATABASE_URL")
    if text:
        return parse(text)
    if not (env.get("POSTGRES_DB") and env.get("POSTGRES_USER")):
        raise UsageError(
            "no database given: pass --db-url, or set DATABASE_URL, "
            "or POSTGRES_USER and POSTGRES_DB (with POSTGRES_HOST/PORT/PASSWORD)"
        )
    port = env.get("POSTGRES_PORT") or "5432"
    if not port.isdigit():
        raise UsageError(f"POSTGRES_PORT is not a port number: {port!r}")
    return URL.create(
        "postgresql",
        username=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD") or None,
        host=env.get("POSTGRES_HOST") or "localhost",
        port=int(port),
        database=env["POSTGRES_DB"],
    )


def parse(text: str) -> URL:
    """Parse a PostgreSQL URL, or raise UsageError naming what is wrong (never the password)."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise UsageError(f"not a database URL: {scrub(text, text)!r}") from None
    scheme = url.drivername.split("+", 1)[0]
    if scheme not in POSTGRES_SCHEMES:
        raise UsageError(f"not a PostgreSQL URL (scheme {url.drivername!r}): {mask(url)}")
    if not url.database:
        raise UsageError(f"the URL names no database: {mask(url)}")
    if url.port is not None and not 0 < url.port < 65536:
        raise UsageError(f"not a valid port ({url.port}) in {mask(url)}")
    return url.set(drivername="postgresql+psycopg2")


def mask(url: URL) -> str:
    """The URL as it may be shown to people: password replaced by ***."""
    return url.set(drivername=url.drivername.split("+", 1)[0]).render_as_string(hide_password=True)


def scrub(text: str, secret: str | URL | None) -> str:
    """`text` with the password of `secret` (a URL or a raw URL string) replaced by ***."""
    if isinstance(secret, str):
        raw = secret
        try:
            secret = make_url(raw)
        except Exception:
            before, _, after = raw.partition("@")
            guess = before.rpartition(":")[2] if after else ""
            return text.replace(guess, "***") if guess else text
    password = secret.password if secret is not None else None
    return text.replace(str(password), "***") if password else text


def dbname(url: URL) -> str:
    """The database a parsed URL names (parse() refuses a URL without one)."""
    if not url.database:
        raise UsageError(f"the URL names no database: {mask(url)}")
    return url.database


def libpq_params(url: URL, **settings: str) -> dict[str, Any]:
    """psycopg2.connect() keyword arguments; `settings` become server GUCs (-c name=value)."""
    params: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        "connect_timeout": CONNECT_TIMEOUT_S,
        # the OS pid: an operator can tell which deploy process a database session is
        "application_name": f"azak-db-migrations:{os.getpid()}",
    }
    params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
    if settings:
        params["options"] = " ".join(f"-c {k}={v}" for k, v in settings.items())
    return {k: v for k, v in params.items() if v is not None}


def connect(url: URL, **settings: str) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection, or raise DeployError with one clear, password-free line."""
    try:
        return psycopg2.connect(**libpq_params(url, **settings))
    except psycopg2.OperationalError as exc:
        raise DeployError(f"cannot connect to {mask(url)}: {describe(exc, url)}") from None


def fetch(url: URL, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own committed transaction on a new connection; rows if any."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def run_outside_transaction(url: URL, statement: Any) -> None:
    """Run a statement that cannot run in a transaction block (CREATE / DROP DATABASE)."""
    conn = connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def scalar(cur: psycopg2.extensions.cursor, statement: str, params: Any = None) -> Any:
    """Run a query and return the first column of its first row."""
    cur.execute(statement, params)
    row = cur.fetchone()
    assert row is not None, "the query returned no row"
    return row[0]


def describe(exc: BaseException | None, url: URL | None = None) -> str:
    """The first line of a driver error (libpq puts the reason there), password scrubbed."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return scrub(lines[0] if lines else type(exc).__name__, url)
