"""Where the database is: URL resolution, password masking and connecting.

Shared by the runner and the verification suite, so that both read the same
settings the same way and neither ever prints a password.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
import time
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
# The kit's own SQL (the runner's bookkeeping, the registry, its history, restore's marks) sees
# pg_catalog only: a function or operator put into public that matches a call better than
# pg_catalog's (a public.unnest(text[]), a public.||(text, integer)) never runs in its sessions,
# which may be a superuser's. The application's SQL (a migration's phases, its preconditions)
# switches to public for its own statements (`APPLICATION_PATH`, then `KIT_PATH_SQL`).
KIT_PATH = {"search_path": "pg_catalog,pg_temp"}
APPLICATION_PATH = "SELECT pg_catalog.set_config('search_path', 'public', true)"
KIT_PATH_SQL = "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"
# Production's major version: nothing older can hold what the kit's SQL and catalog reads use.
SERVER_FLOOR = 130000  # server_version_num


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
        raise UsageError(f"not a database URL (postgresql://...): {mask_raw(text)!r}") from None
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


# What names a secret, in a URL's query and in any text: libpq's password and sslpassword in
# any letter case, and the names applications give secrets (DB_PASS, api_key, client_secret,
# access_token, ...).
_SECRET_WORD = re.compile(
    r"passw(?:or)?d|passphrase|pass(?![a-z])|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credentials?|auth(?![a-z])",
    re.IGNORECASE,
)
# Every pattern below is linear in its text: each may start only where a run of its characters
# starts (the look-behinds), and what it matches is decided without going back over a run.
# key=value, key: value, "key": "value", PASSWORD 'value' (then the value, `_VALUE`)
_KEY = re.compile(r"(?<![\w.-])([\w.-]+)([\"']?[ \t]*[:=][ \t]*|[ \t]+(?=['\"]))")
# a quoted value to its end (libpq's \' and SQL's '' inside) and the rest of its word; others
# to the next space: keyword/value strings, query strings, logs, JSON, SQL
_VALUE = re.compile(r"(?:'(?:[^'\\]|\\.|'')*'?|\"(?:[^\"\\]|\\.)*\"?)\S*|\S+")
# a scheme's `//` (also a malformed `scheme//`): user:password@ follows it in its word
_SCHEME = re.compile(r"(?<![\w+.-])[A-Za-z][\w+.-]*:?//")
# Authorization credentials (a word of 8 characters or more: "basic checks" stays)
_BEARER = re.compile(r"\b(bearer|basic)(\s+)[\w.~+/=-]{8,}", re.IGNORECASE)


def secret_key(name: str) -> bool:
    """Whether a key (of a query, a connection string, a log line) names a secret."""
    return _SECRET_WORD.search(name) is not None


def mask_text(text: str) -> str:
    """`text` (an error, a log line, a cell) with every secret it visibly carries as ***:
    key=value forms of passwords, tokens and keys, URL user-info, bearer credentials."""
    out, done = [], 0
    for key in _KEY.finditer(text):
        if key.start() < done or not secret_key(key.group(1)):
            continue
        value = _VALUE.match(text, key.end())
        if value is not None:
            out.append(text[done : key.end()] + "***")
            done = value.end()
    text = "".join(out) + text[done:]
    text = re.sub(r"\S+", lambda word: mask_user_info(word.group()), text)
    return _BEARER.sub(lambda m: f"{m[1]}{m[2]}***", text)


def mask_user_info(word: str) -> str:
    """A word with its URL's user-info password (from the first `:` after `//` to the last
    `@`) as ***."""
    scheme = _SCHEME.search(word) if "@" in word else None
    if scheme is None:
        return word
    at = word.rfind("@")
    colon = word.find(":", scheme.end(), at)
    return word if colon < 0 else word[: colon + 1] + "***" + word[at:]


def mask_raw(text: str) -> str:
    """Text meant as one database URL, unparsed (malformed): everything from the first `:` of
    its user-info to its last `@` is ***, and what `mask_text` finds too."""
    start = text.find("//") + 2 if "//" in text else 0
    at = text.rfind("@")
    colon = text.find(":", start, at) if at > start else -1
    return mask_text(text[: colon + 1] + "***" + text[at:] if colon >= 0 else text)


def mask(url: URL) -> str:
    """The URL as it may be shown to people: its password and every secret query parameter
    (password, sslpassword, in any case) replaced by ***."""
    query = {k: ("***" if secret_key(k) else v) for k, v in url.query.items()}
    shown = url.set(drivername=url.drivername.split("+", 1)[0], query=query)
    return mask_text(shown.render_as_string(hide_password=True).replace("%2A%2A%2A", "***"))


def secrets_of(url: URL) -> list[str]:
    """The secrets a URL carries (user:password@, ?password=, ?sslpassword=, ...)."""
    found = [url.password] if url.password else []
    for key, value in url.query.items():
        if secret_key(key):
            found += [value] if isinstance(value, str) else list(value)
    return sorted({str(p) for p in found if p}, key=len, reverse=True)


def scrub(text: str, secret: str | URL | None) -> str:
    """`text` with the secrets of `secret` (a URL or a raw URL string) and every secret
    `mask_text` finds replaced by ***."""
    if isinstance(secret, str):
        raw = secret
        try:
            secret = make_url(raw)
        except ValueError:
            secret = None
            text = text.replace(raw, mask_raw(raw))
    for password in secrets_of(secret) if secret is not None else []:
        text = text.replace(password, "***")
    return mask_text(text)


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


# The service a libpq tool reads its secrets from besides PGPASSWORD (see `libpq_command`).
SERVICE = "azak_secrets"
KIT_SECRETS = ("DATABASE_URL", "POSTGRES_PASSWORD")  # the kit's own variables that hold one
_SERVED: dict[str, str] = {}


def libpq_command(url: URL, **settings: str) -> tuple[list[str], dict[str, str]]:
    """(argv tail, environment) pointing a libpq tool (pg_dump, psql) at `url`: the same
    settings as `connect`, as a conninfo string (`--dbname=...`, which ps shows) without a
    secret. The password travels in PGPASSWORD; an `sslpassword` (libpq has no variable for
    it) in a service file that is a named pipe (`served`): never on a command line or disk."""
    params = libpq_params(url, **settings)
    password, sslpassword = params.pop("password", None), params.pop("sslpassword", None)
    env = {k: v for k, v in os.environ.items() if k not in KIT_SECRETS}  # not the tool's business
    if password is not None:
        env["PGPASSWORD"] = password
    if sslpassword is not None:
        if "service" in params or env.get("PGSERVICE"):
            raise UsageError(
                f"{mask(url)}: sslpassword beside a service: put sslpassword into the service file "
                "(on pg_dump's command line, ps would show it)"
            )
        if sslpassword != sslpassword.strip() or "\n" in sslpassword or "\r" in sslpassword:
            raise UsageError(f"{mask(url)}: an sslpassword with line breaks or edge spaces is not supported")
        env["PGSERVICEFILE"], env["PGSERVICE"] = served(f"[{SERVICE}]\nsslpassword={sslpassword}\n"), SERVICE
    return [f"--dbname={psycopg2.extensions.make_dsn(**params)}"], env


def served(content: str) -> str:
    """A path from which every reader reads `content`, one reader at a time: a named pipe
    (0600, in a private directory removed at exit) fed by a thread, so that the content never
    rests on disk."""
    if content in _SERVED:
        return _SERVED[content]
    folder = tempfile.mkdtemp(prefix="azak-libpq-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "pg_service.conf")
    os.mkfifo(path, 0o600)

    def feed() -> None:
        while True:
            with open(path, "w", encoding="utf-8") as pipe:  # waits for a reader
                pipe.write(content)
            while True:  # until that reader has let go: each reader reads it once, to its end
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # no reader left
                    break
                time.sleep(0.01)

    threading.Thread(target=feed, name="azak-libpq-secrets", daemon=True).start()
    _SERVED[content] = path
    return path


def connect(url: URL, application_name: str | None = None, **settings: str) -> psycopg2.extensions.connection:
    """THE connection of the kit (commands, verification, tools): a psycopg2 connection to a
    server no older than the floor, or DeployError with one clear, password-free line."""
    params = libpq_params(url, **settings)
    if application_name:
        params["application_name"] = application_name
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        raise DeployError(f"cannot connect to {mask(url)}: {describe(exc, url)}") from None
    if conn.server_version < SERVER_FLOOR:
        conn.close()
        raise DeployError(
            f"{mask(url)} runs PostgreSQL {version_name(conn.server_version)}: the kit needs "
            f"{SERVER_FLOOR // 10000} or newer (production's version)"
        )
    if conn.encoding not in ("UTF8", "SQLASCII"):  # psycopg2 writes names without "_"
        conn.set_client_encoding("UTF8")  # psycopg2 composes names (sql.Identifier) in UTF-8 only
    return conn


def version_name(number: int) -> str:
    """A server_version_num as people write it (130023 → 13.23, 90624 → 9.6)."""
    major = number // 10000
    return f"{major}.{number % 10000}" if major >= 10 else f"{major}.{number // 100 % 100}"


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
