"""Whose a backup is, and that the kit wrote it: the first line of every backup file.

That line is an SQL comment holding a JSON manifest: the database the backup was taken of
(name, oid, the server's system identifier and the address it serves on), when, the sha256
and length of every byte after that line, where the kit's teardown ends and where the final
COMMIT begins, and an HMAC-SHA256 of all of it under a key kept outside the backup
directory (AZAK_BACKUP_KEY, default ~/.config/azak-db-migrations/backup.key). A file
without that line, signed under another key, or whose bytes differ from its digest is not
the kit's: restore refuses it unless told it is foreign.

`header()` records provenance and `verify()` reads it back: the one place to extend when
the database keeps a registry of its backups (issue 18).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import secrets
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, cast

from migrations.dburl import DeployError, UsageError

KEY_ENV = "AZAK_BACKUP_KEY"
MARK = b"-- azak-backup "
FORMAT = 2
END_MARK = b"-- PostgreSQL database dump complete"
GZIP_MAGIC = b"\x1f\x8b"
MAX_HEADER = 64 << 10
CHUNK = 1 << 20

# Which database this is, beyond its name: its oid, its server's system identifier, and the
# address and port that server answers on (a file-level copy of a cluster shares the system
# identifier and oid, not the address). Readable by every role.
IDENTITY_SQL = """
SELECT current_database(), d.oid::bigint,
       (SELECT system_identifier FROM pg_catalog.pg_control_system())::text,
       coalesce(pg_catalog.host(pg_catalog.inet_server_addr()), 'local socket') || ' port '
       || coalesce(pg_catalog.inet_server_port()::text, pg_catalog.current_setting('port')),
       pg_catalog.current_setting('server_encoding')
FROM pg_catalog.pg_database d WHERE d.datname = current_database()
"""


class NotTheKits(DeployError):
    """A file the kit did not write (or cannot show it wrote): foreign."""


class Damaged(DeployError):
    """A file of the kit whose bytes are no longer those it wrote."""


@dataclass(frozen=True)
class Identity:
    """Which database: name, oid, system identifier, server address."""

    database: str
    oid: int
    system_identifier: str
    server: str

    @classmethod
    def of(cls, row: Any) -> Identity:
        """From a row of IDENTITY_SQL."""
        return cls(str(row[0]), int(row[1]), str(row[2]), str(row[3]))

    @property
    def origin(self) -> str:
        """`name on server N`, as images and verification name a database."""
        return f"{self.database} on server {self.system_identifier}"

    def __str__(self) -> str:
        return f"{self.database} (oid {self.oid}) on server {self.system_identifier} at {self.server}"

    def differences(self, other: Identity) -> list[str]:
        """The fields in which `other` differs, named."""
        names = {
            "database": "name",
            "oid": "oid",
            "system_identifier": "system identifier",
            "server": "address",
        }
        return [label for key, label in names.items() if getattr(self, key) != getattr(other, key)]


@dataclass(frozen=True)
class Manifest:
    """The header of a backup of the kit."""

    identity: Identity
    taken_at: str  # ISO 8601, UTC
    encoding: str
    sha256: str  # of every byte after the header line
    bytes: int
    teardown_end: int  # offsets into those bytes: where the kit's teardown ends,
    commit_at: int  # and where the final COMMIT begins

    @property
    def taken(self) -> datetime:
        """When the backup was taken (aware, UTC)."""
        return datetime.fromisoformat(self.taken_at)

    def fields(self) -> dict[str, Any]:
        """What the signature covers."""
        return {"azak_backup": FORMAT, **asdict(self)}


def key_path() -> Path:
    """Where the signing key is kept: AZAK_BACKUP_KEY, else the user's configuration."""
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "azak-db-migrations" / "backup.key"


def key(create: bool = False) -> bytes | None:
    """The signing key (made, 0600 in a 0700 directory, when `create` and there is none)."""
    path = key_path()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the backup key {path} ({KEY_ENV}): {exc}") from None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by a backup beside this one
        return key()
    except OSError as exc:
        raise DeployError(f"cannot create the backup key {path} ({KEY_ENV}): {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return key()


def canonical(fields: dict[str, Any]) -> bytes:
    """The manifest as signed and written: compact, sorted, ASCII (no newline can enter it)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(fields: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 of the manifest's fields."""
    return hmac.new(secret, canonical(fields), hashlib.sha256).hexdigest()


def header(manifest: Manifest) -> bytes:
    """The first line of a backup: the manifest, signed with this machine's key."""
    secret = key(create=True)
    assert secret is not None
    fields = manifest.fields()
    return MARK + canonical({**fields, "signature": sign(fields, secret)}) + b"\n"


def now_utc() -> str:
    """The current time as the manifest records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def content(source: IO[bytes], name: str) -> IO[bytes]:
    """What a backup file holds: gunzipped when it is gzip'd (a .sql.gz, or the runbook's .sql)."""
    magic = source.read(2)
    source.seek(0)
    if magic == GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=source, mode="rb"))
    if name.endswith(".gz"):
        raise Damaged(f"{name} is not a valid gzip file")
    return source


def parse(line: bytes, name: str, signed: bool = True) -> Manifest:
    """The manifest of a header line, its signature checked (unless not `signed`); NotTheKits
    when it is none of ours."""
    foreign = f"{name} was not written by this kit"
    if not line.startswith(MARK) or not line.endswith(b"\n"):
        raise NotTheKits(f"{foreign} (no azak-backup header line)")
    try:
        fields = json.loads(line[len(MARK) :])
        signature = fields.pop("signature")
        if fields.pop("azak_backup") != FORMAT:
            raise ValueError("another format")
        identity = Identity(**fields.pop("identity"))
        manifest = Manifest(identity=identity, **fields)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise NotTheKits(f"{foreign} (its header is not the kit's)") from None
    if not signed:
        return manifest
    secret = key()
    if secret is None:
        raise NotTheKits(
            f"cannot tell that the kit wrote {name}: no backup key at {key_path()} ({KEY_ENV}); "
            "use the key of the machine that took it"
        )
    if not isinstance(signature, str) or not hmac.compare_digest(sign(manifest.fields(), secret), signature):
        raise NotTheKits(f"{foreign} (its header is not signed with the backup key {key_path()})")
    return manifest


def read_header(stream: IO[bytes], name: str, signed: bool = True) -> Manifest:
    """The manifest at the start of a backup's content (bounded read), signature checked."""
    try:
        line = stream.readline(MAX_HEADER)
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise Damaged(f"{name} is not a valid gzip file ({exc})") from None
    except EOFError:
        raise Damaged(f"{name} is truncated (the gzip stream ends early)") from None
    return parse(line, name, signed)


def verify(source: IO[bytes], name: str) -> Manifest:
    """Read a whole backup once: its signed manifest, then every byte after it against the
    digest and length it records, and pg_dump's end mark before the end. Raises NotTheKits or
    Damaged (one line each); reads, never writes."""
    stream = content(source, name)
    manifest = read_header(stream, name)
    digest, size, tail = hashlib.sha256(), 0, b""
    try:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            tail = (tail + chunk)[-512:]
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise Damaged(f"{name} is not a valid gzip file ({exc})") from None
    except EOFError:
        raise Damaged(f"{name} is truncated (the gzip stream ends early)") from None
    if size != manifest.bytes or digest.hexdigest() != manifest.sha256:
        cut = " (cut short)" if size < manifest.bytes else ""
        raise Damaged(
            f"{name} differs from the digest its header records{cut}: changed since the kit wrote it"
        )
    if END_MARK not in tail:
        raise Damaged(f"{name} lacks pg_dump's end mark")
    return manifest


def peek(path: Path) -> Manifest | None:
    """What a file's header says (signature unchecked: `verify` checks it), None without one."""
    try:
        with path.open("rb") as raw:
            return read_header(content(raw, path.name), path.name, signed=False)
    except (OSError, DeployError):
        return None


def identity_of(cur: Any) -> tuple[Identity, str]:
    """The identity of the database a cursor is connected to, and its server encoding."""
    cur.execute(IDENTITY_SQL)
    row = cur.fetchone()
    return Identity.of(row), str(row[4])


def refuse_elsewhere(manifest: Manifest, target: Identity, name: str) -> None:
    """UsageError unless the backup was taken of `target`."""
    differs = manifest.identity.differences(target)
    if differs:
        raise UsageError(
            f"{name} is a backup of {manifest.identity}, not of {target} ({', '.join(differs)} "
            "differ): add --other-database to load it there"
        )
