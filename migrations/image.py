"""The before-image: the whole catalog as it was before a deployment, and the values the
migrations will rewrite (what a rollback must give back), kept as a private file.

`upgrade` takes one when it starts from base, and `backup` beside every dump. Verification
reads the newest one of the database (or the file named by `--before`): expected state =
this image + what each applied migration's contract declares.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg2 import sql

from migrations import catalog
from migrations.contract import Rewrite
from migrations.dburl import DeployError, UsageError

DIR_ENV = "AZAK_IMAGES_DIR"
DEFAULT_DIR = Path("data/images")
PATTERN = "azak_image_*.json.gz"


@dataclass
class BeforeImage:
    """A database as it was: catalog facts, rewritten values, when and where it was taken."""

    database: str
    taken_at: str
    catalog: catalog.Image
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # str(rewrite) → key → value
    path: Path | None = None


def directory() -> Path:
    """Where images are kept: AZAK_IMAGES_DIR, else data/images."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def take(cur: Any, rewrites: list[Rewrite]) -> BeforeImage:
    """Read the image in the caller's transaction."""
    cur.execute("SELECT current_database(), to_char(now(), 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')")
    database, taken_at = cur.fetchone()
    facts = catalog.read(cur)
    values: dict[str, dict[str, Any]] = {}
    for rw in rewrites:
        if catalog.Key("column", rw.table, rw.column) not in facts:
            continue
        cur.execute(
            sql.SQL("SELECT {}::text, {} FROM {}").format(
                sql.Identifier(rw.key), sql.Identifier(rw.column), sql.Identifier("public", rw.table)
            )
        )
        values[str(rw)] = dict(cur.fetchall())
    return BeforeImage(database, taken_at, facts, values)


def save(image: BeforeImage, where: Path | None = None) -> Path:
    """Write the image as a private file (directory 0700, file 0600); its path."""
    folder = where or directory()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        body = {
            "database": image.database,
            "taken_at": image.taken_at,
            "catalog": [[*key, value] for key, value in image.catalog.items()],
            "values": image.values,
        }
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".image-", suffix=".partial")
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
            out.write(json.dumps(body, ensure_ascii=False).encode())
        path = folder / f"azak_image_{image.database}_{stamp}.json.gz"
        os.replace(tmp, path)
    except OSError as exc:
        raise DeployError(f"cannot write the before-image into {folder}: {exc.strerror or exc}") from None
    image.path = path
    return path


def load(path: Path) -> BeforeImage:
    """Read an image file, or UsageError with one line."""
    try:
        with gzip.open(path, "rb") as source:
            body = json.loads(source.read())
        facts = {catalog.Key(kind, table, name): value for kind, table, name, value in body["catalog"]}
        return BeforeImage(body["database"], body["taken_at"], facts, body.get("values", {}), path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a before-image file ({exc})") from None


def newest(database: str, where: Path | None = None) -> BeforeImage | None:
    """The newest image of `database` in the folder (images are taken only at base)."""
    folder = where or directory()
    found = []
    for path in folder.glob(f"azak_image_{database}_*.json.gz") if folder.is_dir() else ():
        stamp = path.name.removeprefix(f"azak_image_{database}_").removesuffix(".json.gz")
        if len(stamp) == len("YYYYmmdd_HHMMSS_ffffff"):  # not another database's longer name
            found.append(path)
    for path in sorted(found, reverse=True):
        image = load(path)
        if image.database == database:
            return image
    return None
