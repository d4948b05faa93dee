"""Compare a table found in the database with the one its migration would create.

The expected shape is not written down twice: the migration's own DDL is run in a scratch
schema inside a transaction that is always rolled back, and both are described from the
catalog in the same words.
"""

from __future__ import annotations

import re

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from migrations.dburl import scalar
from migrations.steps import Migration

SCRATCH = "azak_drift_probe"

DESCRIBE = """
SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(rel)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid)
       || CASE WHEN convalidated THEN '' ELSE ' (not validated)' END
FROM pg_constraint WHERE conrelid = %(rel)s::regclass
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %(rel)s::regclass
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' body ' || md5(p.prosrc)
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgrelid = %(rel)s::regclass AND NOT t.tgisinternal
UNION ALL
SELECT 'comment ' || coalesce(obj_description(%(rel)s::regclass, 'pg_class'), '(none)')
"""


def describe(cur: Cursor, schema: str, table: str) -> set[str]:
    """The table's shape as comparable lines, schema names removed."""
    rel = scalar(
        cur,
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    )
    cur.execute(DESCRIBE, {"rel": rel})
    strip = re.compile(rf'\b(?:"?{re.escape(schema)}"?|public)\.')
    return {strip.sub("", row[0]) for row in cur.fetchall()}


def table_exists(cur: Cursor, table: str) -> bool:
    """Whether public.`table` exists."""
    return bool(
        scalar(
            cur, "SELECT to_regclass(quote_ident('public') || '.' || quote_ident(%s)) IS NOT NULL", (table,)
        )
    )


def expected(cur: Cursor, migration: Migration) -> dict[str, set[str]]:
    """What the migration's first DDL phase would create, described; nothing is kept.

    The caller owns the transaction and must roll it back.
    """
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCRATCH)))
    cur.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(SCRATCH)))
    cur.execute(migration.upgrade[0].sql)
    return {table: describe(cur, SCRATCH, table) for table in migration.owns}


def differences(found: set[str], wanted: set[str]) -> list[str]:
    """Human lines: what is missing from the database and what it has that is not due."""
    return [f"missing: {line}" for line in sorted(wanted - found)] + [
        f"not in the migration: {line}" for line in sorted(found - wanted)
    ]
