"""Where the database is: URL resolution, password masking and connecting.

Shared by the runner and the verification suite, so that both read the same
settings the same way and neither ever prints a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

CONNECT_TIMEOUT_S = 5
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Every session of the kit: its own objects are public.*, whatever schemas the role can see
# (a schema named after the role would otherwise come first in the default "$user", public).
PINNED = {"search_path": "public"}


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
    url = url.set(drivername="postgresql+psycopg2")
    if not (url.database or url.query.get("dbname")):
        raise UsageError(f"the URL names no database: {mask(url)}")
    if url.port is not None and not 0 < url.port < 65536:
        raise UsageError(f"not a valid port ({url.port}) in {mask(url)}")
    try:  # libpq's own parser: an unknown or malformed parameter is bad input, not a failure
        psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(**libpq_params(url)))
    except psycopg2.ProgrammingError as exc:
        raise UsageError(f"not a valid libpq URL ({describe(exc, url)}): {mask(url)}") from None
    return url


def mask(url: URL) -> str:
    """The URL as it may be shown to people: password (also `?password=`) replaced by ***."""
    query = {k: ("***" if k == "password" else v) for k, v in url.query.items()}
    shown = url.set(drivername=url.drivername.split("+", 1)[0], query=query)
    return shown.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def secrets_of(url: URL) -> list[str]:
    """The passwords a URL carries (user:password@, ?password=)."""
    found = [url.password] if url.password else []
    query = url.query.get("password")
    found += [query] if isinstance(query, str) else list(query or ())
    return [str(p) for p in found if p]


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
    for password in secrets_of(secret) if secret is not None else []:
        text = text.replace(password, "***")
    return text


def dbname(url: URL) -> str:
    """The database a parsed URL names (parse() refuses a URL without one)."""
    name = url.query.get("dbname") or url.database
    if not isinstance(name, str) or not name:
        raise UsageError(f"the URL names no database: {mask(url)}")
    return name


def libpq_params(url: URL, **settings: str) -> dict[str, Any]:
    """THE way from a URL to libpq: psycopg2.connect() keywords for every connection of the kit
    (runner, verification's engine) and, through `libpq_command`, for pg_dump and psql.

    Everything libpq takes in a URL counts, query parameters included (host, port, dbname,
    user, password, sslmode, options, ...), and override the URL's main part as in libpq; what
    the URL leaves out, libpq takes from PG* variables and ~/.pgpass. `settings` and the
    pinned search_path become server settings (-c name=value) after the URL's own options.
    """
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        "connect_timeout": CONNECT_TIMEOUT_S,
        # the OS pid: an operator can tell which deploy process a database session is
        "application_name": f"azak-db-migrations:{os.getpid()}",
    }
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else ",".join(value)  # multi-host: a,b
    gucs = {**PINNED, **settings}
    options = [params.get("options") or ""] + [f"-c {k}={v}" for k, v in gucs.items()]
    params["options"] = " ".join(o for o in options if o)
    return {k: str(v) for k, v in params.items() if v is not None}


def libpq_command(url: URL, **settings: str) -> tuple[list[str], dict[str, str]]:
    """(argv tail, environment) pointing a libpq tool (pg_dump, psql) at `url`: the same
    settings as `connect`, as a conninfo string (`--dbname=...`, which ps may show) without
    the password, which travels in PGPASSWORD only."""
    params = libpq_params(url, **settings)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return [f"--dbname={psycopg2.extensions.make_dsn(**params)}"], env


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
