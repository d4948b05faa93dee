"""The kit's registry in the database: schema `azak_registry`, outside `public` (as sqitch
keeps its registry and Flyway its history table). It holds

- `ledger`: which migration is applied (`migrations.ledger`);
- `deployments`: one row per deployment, begun when `upgrade` leaves base;
- `images`: each deployment's before-images, written once: the catalog of `public` when it
  left base, and again just before each migration that rewrites values, with a digest of
  them; `rewrite_values`: those values, one row per key. Both are made on the server
  (INSERT ... SELECT): a million priorities never travel through the client;
- `history`: every action on the database (`migrations.history`).

Verification reads its yardstick here (`yardstick`), so `--db-url` is all it needs, from
any directory; a copy made with CREATE DATABASE ... TEMPLATE carries it. A read-only verifier
needs USAGE on the schema and SELECT on its tables. `forget` removes it all.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from migrations import catalog, image, ledger
from migrations.contract import Rewrite
from migrations.dburl import IDENTITY_SQL, KIT_PATH, URL, DeployError, connect, scalar
from migrations.image import BeforeImage, as_text, changed_rows, digest_of, digest_sql, row_counts
from migrations.steps import Migration

SCHEMA = "azak_registry"
COMMENT = "azak-db-migrations registry v2: ledger, before-images, history (removed by forget-registry)"
SETUP_LOCK = (0x417A616B, 2)  # serialises creating the registry and adopting an earlier kit's ledger

DDL = (
    ledger.CREATE  # noqa: S608 (COMMENT is the kit's constant)
    + """
CREATE TABLE IF NOT EXISTS azak_registry.deployments (
    id bigserial PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    database text NOT NULL,
    note text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS azak_registry.images (
    id bigserial PRIMARY KEY,
    deployment bigint NOT NULL REFERENCES azak_registry.deployments (id),
    before_migration text,
    applied text[] NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    database text NOT NULL,
    catalog jsonb NOT NULL,
    digests jsonb NOT NULL DEFAULT '{}',
    source text NOT NULL,
    row_counts jsonb
);
CREATE TABLE IF NOT EXISTS azak_registry.rewrite_values (
    image bigint NOT NULL,
    rewrite text NOT NULL,
    key text NOT NULL,
    value text
);
CREATE INDEX IF NOT EXISTS rewrite_values_image ON azak_registry.rewrite_values USING brin (image);
CREATE TABLE IF NOT EXISTS azak_registry.history (
    id bigserial PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    environment text NOT NULL,
    executor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    result text NOT NULL DEFAULT 'started',
    migrations text NOT NULL DEFAULT '',
    failed text NOT NULL DEFAULT '',
    reason text NOT NULL DEFAULT '',
    report text NOT NULL DEFAULT '',
    notes text NOT NULL DEFAULT '',
    client text NOT NULL DEFAULT '',
    role text NOT NULL DEFAULT current_user,
    backup text,
    ledger jsonb
);
-- v2: a restore makes the deployment its backup was taken in current again (`current`). Only
-- the registry's owner may change it: another deploying role leaves a v1 registry as it is.
DO $azak$
DECLARE
    owner boolean := pg_catalog.pg_has_role((SELECT nspowner FROM pg_catalog.pg_namespace
                                             WHERE nspname = 'azak_registry'), 'USAGE');
BEGIN
    IF owner AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attname = 'made_current'
                             AND attrelid = 'azak_registry.deployments'::pg_catalog.regclass) THEN
        ALTER TABLE azak_registry.deployments ADD COLUMN made_current bigint;
    END IF;
    IF owner THEN
"""
    + f"        COMMENT ON SCHEMA azak_registry IS '{COMMENT}';\n"
    + """    END IF;
END
$azak$;
"""
)


def exists(cur: Cursor) -> bool:
    """Whether the registry (its history, the last table made) is there."""
    return bool(scalar(cur, "SELECT to_regclass('azak_registry.history') IS NOT NULL"))


V1_COMMENT = "azak-db-migrations registry v1: ledger, before-images, history (removed by forget-registry)"
# Ready: this version's registry, or a v1 registry another role than its owner uses as it is
# (only the owner brings it to v2; both versions read the same).
READY_SQL = """
SELECT coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '') = %(now)s
    OR (pg_catalog.obj_description(n.oid, 'pg_namespace') = %(v1)s
        AND NOT pg_catalog.pg_has_role(n.nspowner, 'USAGE'))
FROM (SELECT NULL) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'azak_registry'
"""
# An earlier kit's ledger: a table (a view or anything else of that name is no ledger: reading it
# could run its owner's code).
LEGACY_LEDGER_SQL = (
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_class"
    " WHERE oid = pg_catalog.to_regclass('public.schema_migrations') AND relkind = 'r')"
)


def ensure(cur: Cursor, chain: list[Migration]) -> list[str]:
    """Make the registry if it is not there, and move an earlier kit's ledger (and its local
    before-images) into it; the sentences that say what was moved. In the caller's transaction."""
    ready = scalar(cur, READY_SQL, {"now": COMMENT, "v1": V1_COMMENT})
    legacy = LEGACY_LEDGER_SQL
    if ready and not scalar(cur, legacy):
        return []
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", SETUP_LOCK)
    cur.execute(DDL)
    return adopt(cur, chain) if scalar(cur, legacy) else []


def adopt(cur: Cursor, chain: list[Migration]) -> list[str]:
    """An earlier kit's ledger (public.schema_migrations) into the registry, with the images it
    kept as local files (data/images, AZAK_IMAGES_DIR) if they are found here."""
    cur.execute(
        "INSERT INTO azak_registry.ledger SELECT name, checksum, state, applied_at, applied_by, duration_ms"
        " FROM public.schema_migrations ON CONFLICT (name) DO NOTHING"
    )
    moved = cur.rowcount
    cur.execute("DROP TABLE public.schema_migrations")
    said = [
        f"Adopted an earlier kit's ledger: {moved} row(s) moved from public.schema_migrations to {SCHEMA}."
    ]
    if not moved:
        return said
    database, identity = scalar(cur, "SELECT current_database()"), scalar(cur, IDENTITY_SQL)
    deployment = begin(cur, "adopted from public.schema_migrations (an earlier kit)")
    folder, names = image.directory(), [m.name for m in chain]
    cur.execute("SELECT name, applied_at FROM azak_registry.ledger")
    applied_at = dict(cur.fetchall())  # an image of this deployment was taken before its migrations
    found: list[str] = []
    base = image.newest(database, folder, identity=identity, not_after=min(applied_at.values()))
    if base is not None:
        found.append(adopt_file(cur, deployment, None, base, []))
    for m in chain:
        if m.contract.rewrites and m.name in applied_at:
            before = names[: names.index(m.name)]
            kept = image.newest(
                database, folder, identity=identity, applied=before, not_after=applied_at[m.name]
            )
            if kept is not None:
                found.append(adopt_file(cur, deployment, m.name, kept, list(m.contract.rewrites)))
    if found:
        said.append(f"Before-image(s) adopted into {SCHEMA} from {', '.join(found)}.")
    else:
        said.append(
            f"No before-image of {database} in {folder} here: verification of this deployment needs"
            " --before FILE (the image file the earlier kit kept where it ran upgrade)."
        )
    return said


def adopt_file(
    cur: Cursor, deployment: int, before: str | None, kept: BeforeImage, rewrites: list[Rewrite]
) -> str:
    """One image file of an earlier kit, as a registry image (its rows loaded on the server)."""
    cur.execute(
        "INSERT INTO azak_registry.images (deployment, before_migration, applied, taken_at, database,"
        " catalog, digests, source) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s)",
        (
            deployment,
            before,
            kept.applied,
            kept.taken_at,
            kept.identity or kept.database,
            json.dumps([[*key, value] for key, value in kept.catalog.items()]),
            json.dumps({name: d for name, d in kept.digests.items() if name in map(str, rewrites)}),
            f"adopted from {kept.path}",
        ),
    )
    image_id = int(scalar(cur, "SELECT lastval()"))
    if rewrites and kept.path is not None:
        cur.execute("CREATE TEMP TABLE azak_adopted_lines (line text) ON COMMIT DROP")
        with gzip.open(kept.path, "rt", encoding="utf-8") as source:
            next(source)  # the header
            cur.copy_expert(
                "COPY azak_adopted_lines FROM STDIN (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')", source
            )
        cur.execute(
            "INSERT INTO azak_registry.rewrite_values (image, rewrite, key, value)"
            " SELECT %s, j->>0, j->>1, j->>2 FROM (SELECT line::jsonb AS j FROM azak_adopted_lines) AS l"
            " WHERE j->>0 = ANY(%s)",
            (image_id, [str(rw) for rw in rewrites]),
        )
        cur.execute("DROP TABLE azak_adopted_lines")
    return str(kept.path)


def begin(cur: Cursor, note: str) -> int:
    """A new deployment (the ledger leaves base); its id."""
    cur.execute(
        sql.SQL("INSERT INTO azak_registry.deployments (database, note) SELECT ({}), %s").format(
            sql.SQL(IDENTITY_SQL)
        ),
        (note,),
    )
    return int(scalar(cur, "SELECT lastval()"))


MADE_CURRENT = (
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attname = 'made_current'"
    " AND attrelid = pg_catalog.to_regclass('azak_registry.deployments') AND NOT attisdropped)"
)


def current(cur: Cursor) -> tuple[int, str] | None:
    """The deployment the ledger records, and when it began: the one begun last, or the one a
    restore made current again after it (the deployment its backup was taken in), after a
    complete rollback too; None before the first."""
    if not scalar(cur, "SELECT to_regclass('azak_registry.deployments') IS NOT NULL"):
        return None
    order = "coalesce(made_current, id)" if scalar(cur, MADE_CURRENT) else "id"  # v1: no restore moved it
    cur.execute(
        f"SELECT id, to_char(started_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF') FROM azak_registry.deployments"  # noqa: S608
        f" ORDER BY {order} DESC, id DESC LIMIT 1"
    )
    found = cur.fetchone()
    return None if found is None else (int(found[0]), str(found[1]))


def carried(cur: Cursor) -> tuple[str, tuple[int, str] | None]:
    """What a backup carries of the registry, read in its dump's snapshot: the ledger (JSON) and
    the current deployment (id, when it began)."""
    if not exists(cur):
        return "[]", None
    ledger_json = scalar(
        cur,
        "SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.applied_at), '[]')::text"
        " FROM azak_registry.ledger l",
    )
    return str(ledger_json), current(cur)


TAKE = sql.SQL(
    "INSERT INTO azak_registry.images (deployment, before_migration, applied, database, catalog, source)"
    " SELECT %(deployment)s, %(before)s, %(applied)s, ({identity}),"
    " coalesce(jsonb_agg(jsonb_build_array(f.kind, f.tbl, f.name, f.definition)), '[]'), 'taken by upgrade'"
    " FROM ({facts}) AS f(kind, tbl, name, definition)"
).format(identity=sql.SQL(IDENTITY_SQL), facts=sql.SQL(catalog.IMAGE_SQL))


def take(
    cur: Cursor, deployment: int | None, before: str | None, applied: list[str], rewrites: list[Rewrite]
) -> int:
    """Keep a before-image on the server, as the FIRST work of the caller's transaction (one
    snapshot for the catalog, the values and their digests): of a new deployment (None), or
    of `deployment` just before migration `before` runs; its id."""
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if deployment is None:
        deployment = begin(cur, "begun by upgrade")
    cur.execute(catalog.PIN)
    cur.execute(TAKE, {"deployment": deployment, "before": before, "applied": applied})
    image_id = int(scalar(cur, "SELECT lastval()"))
    cur.execute(
        "UPDATE azak_registry.images SET row_counts = %s WHERE id = %s",
        (json.dumps(row_counts(cur), ensure_ascii=False), image_id),  # no \u escapes: SQL_ASCII
    )
    for rw in rewrites:
        there = (
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('public.%%I', %s))"
            " AND attname = %s AND attnum > 0 AND NOT attisdropped)"
        )
        if not scalar(cur, there, (rw.table, rw.column)):
            continue
        cur.execute(
            sql.SQL(
                "INSERT INTO azak_registry.rewrite_values (image, rewrite, key, value)"
                " SELECT %(image)s, %(rewrite)s, {k}::text, {c}::text FROM {t}"
            ).format(
                k=sql.Identifier(rw.key), c=sql.Identifier(rw.column), t=sql.Identifier("public", rw.table)
            ),
            {"image": image_id, "rewrite": str(rw)},
        )
        cur.execute(digest_sql(rw.table, rw.key, rw.column, changed_rows(rw)))
        count, total = cur.fetchone() or (0, "0")
        cur.execute(
            "UPDATE azak_registry.images SET digests = digests"
            " || jsonb_build_object(%s, jsonb_build_array(%s, %s)) WHERE id = %s",
            (str(rw), count, total, image_id),
        )
    return image_id


def note_kept(cur: Cursor, before: str, rw: Rewrite, kept: dict[Any, Any], why: str) -> int | None:
    """The application's writes a rollback kept (key → value of `rw`; a key the image lacks is
    added), written into the current deployment's image of just before migration `before`:
    its values and digest, and `why` in its source, so that verification expects them. In
    the caller's transaction; the image's id, None when there is none."""
    now = current(cur)
    deployment = now[0] if now else None
    found = scalar(
        cur,
        "SELECT max(id) FROM azak_registry.images WHERE deployment = %s AND before_migration = %s",
        (deployment, before),
    )
    if found is None:
        return None
    image_id, name = int(found), str(rw)
    new = {str(k): as_text(v) for k, v in kept.items()}
    cur.execute(
        "DELETE FROM azak_registry.rewrite_values WHERE image = %s AND rewrite = %s AND key = ANY(%s)"
        " RETURNING key, value",
        (image_id, name, list(new)),
    )
    old = dict(cur.fetchall())
    (n_old, h_old), (n_new, h_new) = digest_of(cur, rw, old), digest_of(cur, rw, new)
    cur.execute(
        "INSERT INTO azak_registry.rewrite_values (image, rewrite, key, value)"
        " SELECT %s, %s, k, v FROM unnest(%s::text[], %s::text[]) AS t(k, v)",
        (image_id, name, list(new), list(new.values())),
    )
    cur.execute(
        "UPDATE azak_registry.images SET source = source || '; ' || %(why)s,"
        " digests = CASE WHEN digests ? %(rw)s THEN jsonb_set(digests, ARRAY[%(rw)s], jsonb_build_array("
        "(digests->%(rw)s->>0)::bigint + %(dn)s, ((digests->%(rw)s->>1)::numeric + %(dh)s)::text))"
        " ELSE digests END WHERE id = %(id)s",
        {"why": why, "rw": name, "dn": n_new - n_old, "dh": h_new - h_old, "id": image_id},
    )
    return image_id


def yardstick(cur: Cursor) -> tuple[BeforeImage | None, dict[str, BeforeImage], str]:
    """The deployment's base image, the image kept just before each migration that rewrites
    values (by its name), and why there is no base image (else "")."""
    now = current(cur)
    if now is None:
        return None, {}, f"no before-image in {SCHEMA}: the kit keeps one when its upgrade leaves base"
    deployment = now[0]
    cur.execute(
        "SELECT DISTINCT ON (before_migration) id, before_migration, applied,"
        " to_char(taken_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF'), database, source, digests,"
        " CASE WHEN before_migration IS NULL THEN catalog END, row_counts"
        " FROM azak_registry.images WHERE deployment = %s ORDER BY before_migration, id DESC",
        (deployment,),
    )
    base: BeforeImage | None = None
    rewrites: dict[str, BeforeImage] = {}
    for image_id, before, applied, taken_at, identity, source, digests, facts, counts in cur.fetchall():
        try:
            facts = {catalog.Key(k, t, n): v for k, t, n, v in facts or []}
        except (TypeError, ValueError):
            raise DeployError(
                f"{SCHEMA} image #{image_id} is damaged: its catalog is not a list of facts"
            ) from None
        kept = BeforeImage(
            identity.split(" on server ")[0],
            taken_at,
            facts,
            digests,
            list(applied),
            identity,
            source=f"{SCHEMA} image #{image_id} of deployment #{deployment} ({source}, {taken_at})",
            loader=values_loader(cur.connection, image_id),
        )
        kept.row_counts = {str(t): int(n) for t, n in counts.items()} if isinstance(counts, dict) else None
        if before is None:
            base = kept
        else:
            rewrites[before] = kept
    why = "" if base else f"no before-image of deployment #{deployment} in {SCHEMA}"
    return base, rewrites, why


def values_loader(conn: Any, image_id: int) -> Any:
    """Reads an image's values of one rewritten column, by key (only when a digest differs)."""

    def load(rewrite: str) -> dict[str, Any]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT key, value FROM azak_registry.rewrite_values WHERE image = %s AND rewrite = %s",
                (image_id, rewrite),
            )
            return dict(cur.fetchall())

    return load


def forget(cur: Cursor) -> str:
    """Remove the registry entirely; what went with it."""
    counts = scalar(
        cur,
        "SELECT format('%s deployment(s), %s before-image(s), %s history row(s)',"
        " (SELECT count(*) FROM azak_registry.deployments), (SELECT count(*) FROM azak_registry.images),"
        " (SELECT count(*) FROM azak_registry.history))",
    )
    cur.execute("DROP SCHEMA azak_registry CASCADE")
    return str(counts)


def summary(cur: Cursor) -> str:
    """One sentence on the registry, for `status`."""
    if ledger.where(cur) == ledger.LEGACY_TABLE:
        return (
            "The ledger is an earlier kit's (public.schema_migrations): the next upgrade, downgrade, backup"
            f" or restore (or `python -m migrations adopt`) moves it into {SCHEMA}."
        )
    if not exists(cur):
        return f"No registry ({SCHEMA}) yet: the first upgrade, backup or restore makes it."
    now = current(cur)
    cur.execute(
        "SELECT %s, (SELECT count(*) FROM azak_registry.history),"
        " (SELECT environment FROM azak_registry.history WHERE environment <> 'unspecified'"
        "  ORDER BY id DESC LIMIT 1)",
        (now[0] if now else None,),
    )
    deployment, actions, environment = cur.fetchone() or (None, 0, None)
    return (
        f"Registry {SCHEMA}: deployment #{deployment or '-'}, environment {environment or 'unspecified'},"
        f" {actions} action(s) in its history (`python -m migrations record`)."
    )


def after_unknown_restore(url: URL, chain: list[Migration]) -> str:
    """After restoring a dump that does not carry the kit's registry statement: at base when it
    holds none of the migrations' tables; else the ledger is left, and said so."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            if not exists(cur):
                return "The database has no registry: nothing to tell it."
            tables = [t for m in chain for t in m.contract.created_tables()]
            cur.execute(
                "SELECT t FROM unnest(%s::text[]) t WHERE to_regclass(format('public.%%I', t)) IS NOT NULL",
                (tables,),
            )
            made = [row[0] for row in cur.fetchall()]
            if made:
                return (
                    f"This backup does not say which migrations it holds ({', '.join(made)} exist):"
                    " the ledger is left as it was; compare it with `python -m migrations status`."
                )
            cur.execute("DELETE FROM azak_registry.ledger")
            return "This backup holds none of the migrations' tables: the ledger now says base."
    finally:
        conn.close()
