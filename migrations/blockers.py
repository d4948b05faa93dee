"""What outside the chain depends on the tables a rollback drops: a view, another table's
foreign key or column of their row type, a table inheriting from them, a function returning
their rows. PostgreSQL refuses to drop such a table, so a rollback would stop there, half
done; the runner refuses before anything changes and verification names them."""

from __future__ import annotations

from psycopg2.extensions import cursor as Cursor

from migrations.steps import Migration

# Normal dependencies on the tables (or their row types), less what belongs to those tables
# themselves (their constraints, rules, triggers, policies) or is one of them.
DEPENDENTS_SQL = """
WITH doomed AS (
    SELECT c.oid, c.reltype FROM pg_catalog.pg_class c
    WHERE c.oid = ANY (SELECT pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(t))
                       FROM pg_catalog.unnest(%(tables)s::pg_catalog.text[]) AS t)
)
SELECT DISTINCT coalesce(
           pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0),
           pg_catalog.pg_describe_object(d.classid, d.objid, 0)),
       pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
FROM pg_catalog.pg_depend d
LEFT JOIN pg_catalog.pg_rewrite r  -- a view's rule: the view
       ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = d.objid
WHERE d.deptype = 'n'
  AND (d.refobjid IN (SELECT oid FROM doomed) OR d.refobjid IN (SELECT reltype FROM doomed))
  AND NOT (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM doomed))
  AND NOT (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (
      SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid IN (SELECT oid FROM doomed)))
  AND NOT (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid IN (
      SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM doomed)))
  AND NOT (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid IN (
      SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid IN (SELECT oid FROM doomed)))
  AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid IN (
      SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM doomed)))
ORDER BY 1, 2
"""


DROPPED_KINDS = ("table", "view", "materialized view")


def dropped_tables(reverted: list[Migration]) -> list[str]:
    """The tables and views these migrations created, which their rollback drops."""
    return [k.table for m in reverted for k in m.contract.adds if k.kind in DROPPED_KINDS]


def blockers(cur: Cursor, reverted: list[Migration]) -> list[str]:
    """'view v (on table product_info)' for each object outside these migrations that depends
    on a table their rollback drops; empty when the rollback can drop them all."""
    tables = dropped_tables(reverted)
    if not tables:
        return []
    cur.execute(DEPENDENTS_SQL, {"tables": tables})
    return [f"{what} (on {whose})" for what, whose in cur.fetchall()]
