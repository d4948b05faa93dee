"""The runbook's non-database checks: application health, the log, the pre-deploy backup."""

from __future__ import annotations

import base64
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

from migrations import provenance
from migrations.dburl import mask_text
from migrations.provenance import Identity, Manifest

ERROR = re.compile(r"\b(ERROR|CRITICAL|FATAL|Traceback)\b")
STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})")
AGO = re.compile(r"^(\d+)\s*([mhd])$")


def shown(url: str) -> str:
    """The URL as it may be shown to people: a password in it (user:password@) is ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def health(url: str, timeout: float) -> tuple[int | None, float, str]:
    """(HTTP status or None, seconds taken, reason) of a GET on the health URL. Credentials
    in the URL (user:password@) go in an Authorization header; the reason never shows them."""
    started = time.monotonic()
    parts = urllib.parse.urlsplit(url)
    headers = {}
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        secret = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def clean(reason: str) -> str:
        return reason.replace(parts.password, "***") if parts.password else reason

    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 (operator's URL)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, time.monotonic() - started, clean(response.reason)
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started, clean(str(exc.reason))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, time.monotonic() - started, clean(str(getattr(exc, "reason", exc)))


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO time, or `30m` / `2h` / `1d` ago; ValueError otherwise."""
    now = now or datetime.now()
    ago = AGO.match(text.strip())
    if ago:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[ago.group(2)]
        return now - timedelta(**{unit: int(ago.group(1))})
    return datetime.fromisoformat(text.strip())


def log_errors(path: Path, since: datetime | None, limit: int = 5) -> list[str]:
    """The first error lines of the log written at or after `since` (undated lines follow the last stamp)."""
    found: list[str] = []
    in_window = since is None
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            stamp = STAMP.match(line)
            if stamp and since is not None:
                in_window = datetime.fromisoformat(stamp.group(1).replace(" ", "T")) >= since
            if in_window and ERROR.search(line):
                found.append(mask_text(line.rstrip()))  # a password or token logged: ***
                if len(found) >= limit:
                    break
    return found


def newest_backup(directory: Path, database: str | None = None) -> Path | None:
    """The newest `azak_backup_*.sql.gz` of `database` (`name on server N`) in the directory, by
    the time its header records (the file's time says nothing); a file without the kit's
    header is no database's backup."""
    found = []
    for path in directory.glob("azak_backup_*.sql.gz"):
        manifest = provenance.peek(path)
        if manifest and database in (None, manifest.identity.origin):
            found.append((manifest.taken_at, path.name, path))
    return max(found)[2] if found else None


def restorable(path: Path, target: Identity) -> Manifest:
    """The backup as restore checks it (signed by the kit, every byte matching its digest,
    pg_dump's end mark) and taken of `target`; DeployError saying why not."""
    with path.open("rb") as raw:
        manifest = provenance.verify(raw, path.name)
    differs = manifest.identity.differences(target)
    if differs:
        raise provenance.Damaged(
            f"it is a backup of {manifest.identity}, not of this database, {target}"
            f" ({', '.join(differs)} differ)"
        )
    return manifest
