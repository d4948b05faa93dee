"""The before-image: the whole catalog as it was before a deployment, and the values the
migrations will rewrite (what a rollback must give back).

The kit keeps a deployment's images in the database's registry (`migrations.registry`).
A file of one (`python -m migrations image`) serves a database the kit never deployed, named
by `pytest verification --before FILE`; an earlier kit kept them as files in data/images,
which the registry adopts once (`newest`). Expected state = the image + what each applied
migration's contract declares.

The file is gzip'd JSON lines: a header (database, time, catalog, the catalog kinds it holds,
a row count per table, and per rewritten column a digest: the count and hash sum of the rows
the migration will change), then one line per row of each rewritten column. An image older
than a field lacks it: verification then says what it could not check. The header is all a
passing verification reads, so it stays flat on a million rows; the rows are read only to
name what differs. Both are written and read as streams: memory stays flat too.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from psycopg2 import sql

from migrations import catalog
from migrations.contract import Rewrite
from migrations.dburl import IDENTITY_SQL, DeployError, UsageError

DIR_ENV = "AZAK_IMAGES_DIR"
DEFAULT_DIR = Path("data/images")
STAMP = "%Y%m%d_%H%M%S_%f"
MAX_HEADER = 64 << 20  # a real catalog is a few hundred kilobytes
# Kinds of fact images hold since owners, grants and settings were read; an image without `kinds`
# holds the others only.
LATER_KINDS = ("owner", "grant", "setting", "event trigger")
EXACT_UP_TO = 1_000_000  # rows: a table the planner puts above this keeps its estimate

# Each table's rows: counted where the planner's estimate is small or unknown (a table never
# analyzed, or just truncated), else the estimate (reltuples): enough to see a table emptied
# or halved, at the cost of one bounded scan of the small ones.
ROW_ESTIMATES = """
SELECT c.relname, CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples::bigint END
FROM pg_catalog.pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND NOT c.relispartition
"""


NOTHING = sql.SQL("")


def digest_sql(
    table: str, key: str, column: str, where: sql.Composable, also: sql.Composable = NOTHING
) -> sql.Composed:
    """count and hash sum of (key, column) over the rows `where` selects: equal sets, equal
    digests (after `also`, more aggregates of the same scan)."""
    return sql.SQL(
        "SELECT {also}count(*), coalesce(sum(hashtextextended({k}::text || ':' || {c}::text, 0)), 0)::text"
        " FROM {t} WHERE {w}"
    ).format(
        also=also, k=sql.Identifier(key), c=sql.Identifier(column), t=sql.Identifier("public", table), w=where
    )


def changed_rows(rw: Rewrite) -> sql.Composable:
    """The rows `rw` changes: its column is not yet the value the migration writes (all rows,
    when it writes each row a value of its own)."""
    if rw.writes is None:
        return sql.SQL("true")
    return sql.SQL("{}::text IS DISTINCT FROM {}").format(sql.Identifier(rw.column), sql.Literal(rw.writes))


@dataclass
class BeforeImage:
    """A database as it was: catalog facts, digests of the rewritten values, when and where."""

    database: str
    taken_at: str
    catalog: catalog.Image
    digests: dict[str, list[Any]] = field(default_factory=dict)  # str(rewrite) → [count, hash sum]
    applied: list[str] = field(default_factory=list)  # the migrations the ledger held then
    identity: str = ""  # `name on server N`: a same-named database of another server differs
    path: Path | None = None
    amended: list[str] = field(default_factory=list)  # why values differ from when it was taken
    kinds: list[str] = field(default_factory=lambda: list(catalog.KINDS))  # the kinds of fact it holds
    row_counts: dict[str, int] | None = None  # table → rows (None: an image older than them)
    source: str = ""  # where it was read from, as the report names it
    loader: Callable[[str], dict[str, Any]] | None = None  # a registry image's values

    def __post_init__(self) -> None:
        self.source = self.source or str(self.path or "")

    def header(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "taken_at": self.taken_at,
            "applied": self.applied,
            "identity": self.identity,
            "catalog": [[*key, value] for key, value in self.catalog.items()],
            "digests": self.digests,
            **({"amended": self.amended} if self.amended else {}),
            "kinds": self.kinds,
            "row_counts": self.row_counts,
        }

    def values(self, rewrite: str) -> dict[str, Any]:
        """Every row's value of a rewritten column before the deploy (from the registry or the file)."""
        if self.loader is not None:
            return self.loader(rewrite)
        if self.path is None:
            return {}
        with gzip.open(self.path, "rt", encoding="utf-8", errors="surrogateescape") as source:
            next(source)
            return {key: value for name, key, value in map(json.loads, source) if name == rewrite}


def directory() -> Path:
    """Where images are kept: AZAK_IMAGES_DIR, else data/images."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def keep(cur: Any, rewrites: list[Rewrite], applied: list[str], where: Path | None = None) -> BeforeImage:
    """Take the image in the caller's transaction and write it as a private file; `applied`:
    the migrations already applied (an image of base has none)."""
    cur.execute("SELECT current_database(), to_char(now(), 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')")
    database, taken_at = cur.fetchone()
    facts = catalog.read(cur)
    present = [rw for rw in rewrites if catalog.Key("column", rw.table, rw.column) in facts]
    digests = {}
    for rw in present:
        cur.execute(digest_sql(rw.table, rw.key, rw.column, changed_rows(rw)))
        digests[str(rw)] = list(cur.fetchone())
    cur.execute(IDENTITY_SQL)
    image = BeforeImage(database, taken_at, facts, digests, list(applied), cur.fetchone()[0])
    image.row_counts = row_counts(cur)

    def rows(out: IO[str]) -> None:
        for rw in present:  # the server writes each row's JSON line; COPY streams them to the file
            cur.copy_expert(
                sql.SQL(
                    "COPY (SELECT json_build_array({name}, {k}::text, {c})::text FROM {t})"
                    " TO STDOUT (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"  # JSON never holds them raw
                )
                .format(
                    name=sql.Literal(str(rw)),
                    k=sql.Identifier(rw.key),
                    c=sql.Identifier(rw.column),
                    t=sql.Identifier("public", rw.table),
                )
                .as_string(cur),
                out,
            )

    write(image, rows, where)
    return image


def row_counts(cur: Any) -> dict[str, int]:
    """Every table's rows: counted (a scan that stops past EXACT_UP_TO rows) where the estimate
    is small or unknown, else the planner's estimate."""
    cur.execute(ROW_ESTIMATES)
    counts = {}
    for table, estimate in cur.fetchall():
        if estimate is None or estimate <= EXACT_UP_TO:
            cur.execute(
                sql.SQL("SELECT count(*) FROM (SELECT FROM {} LIMIT {}) s").format(
                    sql.Identifier("public", table), sql.Literal(EXACT_UP_TO + 1)
                )
            )
            counted = int(cur.fetchone()[0])
            estimate = counted if counted <= EXACT_UP_TO else max(counted, estimate or 0)
        counts[table] = int(estimate)
    return counts


def as_text(value: Any) -> str | None:
    """A JSON value of the image as PostgreSQL's `::text` writes it (3, true, abc, NULL)."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def digest_of(cur: Any, rw: Rewrite, rows: dict[str, Any]) -> tuple[int, int]:
    """The digest (count, hash sum) that `rows` (key → value) add to `rw`'s, by the server's hash."""
    cur.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended({k}::text || ':' || {c}::text, 0)), 0)::text"
            " FROM unnest(%s::text[], %s::text[]) AS t({k}, {c}) WHERE {w}"
        ).format(k=sql.Identifier(rw.key), c=sql.Identifier(rw.column), w=changed_rows(rw)),
        (list(rows), [as_text(v) for v in rows.values()]),
    )
    count, total = cur.fetchone()
    return int(count), int(total)


def write(image: BeforeImage, rows: Any, where: Path | None) -> None:
    """Header, then rows, under a temporary name renamed when complete; 0600 in a 0700 folder."""
    folder = where or directory()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".image-", suffix=".partial")
        try:
            with (
                os.fdopen(fd, "wb") as raw,
                gzip.open(raw, "wt", encoding="utf-8", errors="surrogateescape", compresslevel=1) as out,
            ):
                out.write(json.dumps(image.header(), ensure_ascii=False) + "\n")
                rows(out)
            path = folder / f"azak_image_{file_part(image.database)}_{datetime.now().strftime(STAMP)}.json.gz"
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot write the before-image into {folder}: {exc.strerror or exc}") from None
    image.path = path
    image.source = str(path)


def load(path: Path) -> BeforeImage:
    """Read an image file's header (in bounded memory), or UsageError with one line."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as source:
            first = source.readline(MAX_HEADER + 1)
        if len(first) > MAX_HEADER:
            raise ValueError(f"a header beyond {MAX_HEADER >> 20} MiB")
        head = json.loads(first)
        facts = {catalog.Key(kind, table, name): value for kind, table, name, value in head["catalog"]}
        digests, applied, identity = (
            head.get("digests", {}),
            head.get("applied", []),
            head.get("identity", ""),
        )
        loaded = BeforeImage(
            head["database"],
            head["taken_at"],
            facts,
            digests,
            applied,
            identity,
            path,
            head.get("amended", []),
        )
        loaded.kinds = list(head.get("kinds") or [k for k in catalog.KINDS if k not in LATER_KINDS])
        counts = head.get("row_counts")
        loaded.row_counts = {str(t): int(n) for t, n in counts.items()} if isinstance(counts, dict) else None
        return loaded
    except (OSError, EOFError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise UsageError(f"{path} is not a before-image file ({exc})") from None


def file_part(database: str) -> str:
    """A database's name as a file name may hold it (a name may hold `/`, a newline, `*`)."""
    return quote(database, safe="")


def candidates(database: str, folders: list[Path]) -> Iterator[Path]:
    """This database's image files (not another database's with a longer name), newest name
    first; only files this user owns and nobody else may write (a file planted beside them
    decides nothing)."""
    prefix = f"azak_image_{file_part(database)}_"
    found = []
    for folder in folders:
        for path in folder.glob(f"{prefix}*.json.gz") if folder.is_dir() else ():
            stamp = path.name.removeprefix(prefix).removesuffix(".json.gz")
            if len(stamp) == len(datetime.now().strftime(STAMP)) and private(path):
                found.append(path)
    return iter(sorted(found, key=lambda p: p.name, reverse=True))


def private(path: Path) -> bool:
    """Owned by this user, written by nobody else."""
    try:
        status = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o022


def newest(
    database: str,
    where: Path | list[Path] | None = None,
    before: str | None = None,
    identity: str | None = None,
    applied: list[str] | None = None,
    not_after: datetime | None = None,
) -> BeforeImage | None:
    """The newest image of `database` (of that server, given its `identity`) in the folders, by
    the time it was taken (not after `not_after`: an image of a deployment must precede it):
    taken at base; or (`before`) while that migration was not applied yet; or (`applied`)
    while exactly those migrations were, i.e. just before the next one ran."""
    folders = where if isinstance(where, list) else [where or directory()]
    best: tuple[datetime, BeforeImage] | None = None
    for path in candidates(database, folders):
        image = load(path)
        if identity and image.identity and image.identity != identity:
            continue  # a same-named database of another server
        if applied is not None:
            fits = image.applied == applied
        else:
            fits = (before is None and not image.applied) or (
                before is not None and before not in image.applied
            )
        try:
            taken = datetime.fromisoformat(image.taken_at)
        except ValueError:
            continue
        if taken.tzinfo is None:
            taken = taken.astimezone()
        if fits and (not_after is None or taken <= not_after) and (best is None or taken > best[0]):
            best = (taken, image)
    return best[1] if best else None
