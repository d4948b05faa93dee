"""What outside the chain depends on what a rollback drops: a view, another table's foreign key
or column of their row type (or an array of it), a table inheriting from them, a function of
their rows, another table's default on their sequence, a trigger elsewhere calling a function
they made, an extension holding them. PostgreSQL refuses to drop such an object, so a rollback
would stop there, half done; the runner refuses before anything changes and verification names
them."""

from __future__ import annotations

import json

from psycopg2.extensions import cursor as Cursor

from migrations.steps import Migration

RELATIONS = ("table", "view", "materialized view")
# The relations and functions a rollback drops, with their row types, those types' arrays and the
# sequences they own; then every dependency on them from an object the rollback does not drop
# (triggers it drops: those the migrations declare), or an extension's hold on them.
DEPENDENTS_SQL = """
WITH given AS (SELECT %(relations)s::pg_catalog.jsonb AS relations,
                      %(functions)s::pg_catalog.jsonb AS functions,
                      %(triggers)s::pg_catalog.jsonb AS triggers),
rel AS (
    SELECT c.oid, c.reltype FROM pg_catalog.pg_class c, given
    WHERE c.oid IN (SELECT pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(r))
                    FROM pg_catalog.jsonb_array_elements_text(given.relations) AS r)
),
doomed AS (
    SELECT oid FROM rel
    UNION SELECT reltype FROM rel
    UNION SELECT t.typarray FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT reltype FROM rel)
    UNION SELECT d.objid FROM pg_catalog.pg_depend d  -- sequences the tables own
          WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
            AND d.refobjid IN (SELECT oid FROM rel)
    UNION SELECT p.oid FROM pg_catalog.pg_proc p, given  -- by the catalog's own key (arguments named)
          WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
            AND p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'
                IN (SELECT pg_catalog.jsonb_array_elements_text(given.functions))
),
own_triggers AS (
    SELECT g.oid FROM pg_catalog.pg_trigger g, given, pg_catalog.jsonb_array_elements(given.triggers) AS t
    WHERE g.tgrelid = pg_catalog.to_regclass('public.' || pg_catalog.quote_ident(t->>0)) AND g.tgname = t->>1
)
SELECT DISTINCT
       CASE WHEN d.deptype = 'e' THEN pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
            WHEN r.rulename = '_RETURN'
            THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0)
            ELSE pg_catalog.pg_describe_object(d.classid, d.objid, 0) END,
       pg_catalog.pg_describe_object(CASE WHEN d.deptype = 'e' THEN d.classid ELSE d.refclassid END,
                                     CASE WHEN d.deptype = 'e' THEN d.objid ELSE d.refobjid END, 0)
FROM pg_catalog.pg_depend d
LEFT JOIN pg_catalog.pg_rewrite r  -- a view's rule: the view
       ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.oid = d.objid
WHERE (d.deptype = 'n' AND d.refobjid IN (SELECT oid FROM doomed) AND d.objid NOT IN (SELECT oid FROM doomed)
       AND d.objid NOT IN (SELECT oid FROM own_triggers)
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend a  -- dropped with it (a publication's entry)
                       WHERE a.classid = d.classid AND a.objid = d.objid AND a.deptype IN ('a', 'i')
                         AND a.refobjid IN (SELECT oid FROM doomed))
       AND NOT (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (
           SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid IN (SELECT oid FROM rel)))
       AND NOT (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid IN (
           SELECT g.oid FROM pg_catalog.pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM rel)))
       AND NOT (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid IN (
           SELECT p.oid FROM pg_catalog.pg_policy p WHERE p.polrelid IN (SELECT oid FROM rel)))
       AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                AND r.ev_class IN (SELECT oid FROM rel))
       AND NOT (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN (
           SELECT a.oid FROM pg_catalog.pg_attrdef a WHERE a.adrelid IN (SELECT oid FROM rel))))
   OR (d.deptype = 'e' AND d.objid IN (SELECT oid FROM doomed))
ORDER BY 1, 2
"""  # noqa: S608 (no input but the migrations' names, as parameters)


def dropped(reverted: list[Migration]) -> tuple[list[str], list[str], list[list[str]]]:
    """What these migrations created, which their rollback drops: relations, functions (their
    signatures), triggers (table, name)."""
    keys = [k for m in reverted for k in m.contract.adds]
    return (
        [k.table for k in keys if k.kind in RELATIONS],
        [k.name for k in keys if k.kind == "function"],
        [[k.table, k.name] for k in keys if k.kind == "trigger"],
    )


def blockers(cur: Cursor, reverted: list[Migration]) -> list[str]:
    """'view v (on table product_info)' for each object outside these migrations that depends
    on what their rollback drops; empty when the rollback can drop it all."""
    relations, functions, triggers = dropped(reverted)
    if not (relations or functions):
        return []
    cur.execute(
        DEPENDENTS_SQL,
        {
            "relations": json.dumps(relations),
            "functions": json.dumps(functions),
            "triggers": json.dumps(triggers),
        },
    )
    return [f"{what} (on {whose})" for what, whose in cur.fetchall()]
