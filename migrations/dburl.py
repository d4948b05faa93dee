"""Where the database is: URL resolution, password masking and connecting.

Shared by the runner and the verification suite, so that both read the same
settings the same way and neither ever prints a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import psycopg2
import psycopg2.extensions

from migrations import sqlascii  # noqa: F401 (how a SQL_ASCII database's bytes are read)

CONNECT_TIMEOUT_S = 5
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Every session of the kit: its own objects are public.*, whatever schemas the role can see
# (a schema named after the role would otherwise come first in the default "$user", public).
PINNED = {"search_path": "public"}


@dataclass(frozen=True)
class URL:
    """A database URL, parsed: scheme://user:password@host:port/database?query (the subset of
    SQLAlchemy's URL the kit uses, without importing SQLAlchemy: a verification run and every
    command start faster without it)."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def create(cls, drivername: str, **parts: Any) -> URL:
        return cls(
            drivername, **{k: v for k, v in parts.items() if k != "query"}, query=parts.get("query") or {}
        )

    def set(self, **parts: Any) -> URL:
        """A copy with these parts replaced."""
        return replace(self, **parts)

    def render_as_string(self, hide_password: bool = True) -> str:
        """The URL as text; the password as *** unless asked for."""
        text = f"{self.drivername}://"
        if self.username is not None:
            text += quote(self.username, safe="")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=""))
            text += "@"
        if self.host:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe="")
        pairs = [(k, v) for k, vs in self.query.items() for v in ((vs,) if isinstance(vs, str) else vs)]
        return text + (f"?{urlencode(pairs)}" if pairs else "")

    def __str__(self) -> str:
        return self.render_as_string()


URL_PATTERN = re.compile(
    r"""^(?P<scheme>[\w+.-]+)://
    (?:(?P<username>[^:/?@]*)(?::(?P<password>.*))?@)?
    (?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^/:?]*))
    (?::(?P<port>[^/?]*))?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?$""",
    re.VERBOSE | re.DOTALL,
)


def make_url(text: str) -> URL:
    """Parse URL text; ValueError when it is not one."""
    found = URL_PATTERN.match(text)
    if found is None:
        raise ValueError("not a URL")
    parts = found.groupdict()
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parse_qsl(parts["query"] or "", keep_blank_values=True):
        old = query.get(key)
        query[key] = value if old is None else (*((old,) if isinstance(old, str) else old), value)
    port = parts["port"]
    return URL(
        parts["scheme"],
        username=unquote(parts["username"]) if parts["username"] is not None else None,
        password=unquote(parts["password"]) if parts["password"] is not None else None,
        host=parts["ipv6"] or parts["host"] or None,
        port=int(port) if port else None,  # ValueError: not a port
        database=unquote(parts["database"]) if parts["database"] else None,
        query=query,
    )


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
    except ValueError:
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
        conn = psycopg2.connect(**libpq_params(url, **settings))
    except psycopg2.OperationalError as exc:
        raise DeployError(f"cannot connect to {mask(url)}: {describe(exc, url)}") from None
    if conn.encoding not in ("UTF8", "SQLASCII"):  # psycopg2 writes names without "_"
        conn.set_client_encoding("UTF8")  # psycopg2 composes names (sql.Identifier) in UTF-8 only
    return conn


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


# Which database this is, across servers: its name and its server's system identifier
# (readable by every role): a backup or an image of a same-named database elsewhere differs.
IDENTITY_SQL = (
    "SELECT current_database() || ' on server ' || (SELECT system_identifier FROM pg_control_system())"
)


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
