"""Functions, aggregates and operators in `public` named like PostgreSQL's own (not an
extension's): where one matches a call's argument types better than pg_catalog's
(`public.format(text, text)`, `public.=(varchar, varchar)`, `public.max(varchar)`), PostgreSQL
calls it instead, with the rights of whoever runs the statement. The kit's own statements never
see `public`, but a migration's do, and the application's sessions may: the runner refuses to
upgrade or roll back while one is there, and verification names them."""

from __future__ import annotations

from psycopg2.extensions import cursor as Cursor

NOT_AN_EXTENSIONS = """NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
                  AND d.classid = '{catalog}'::pg_catalog.regclass AND d.objid = {alias}.oid)"""
LOOKALIKES_SQL = f"""
SELECT 'public.' || p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
  AND EXISTS (SELECT FROM pg_catalog.pg_proc c
              WHERE c.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.proname = p.proname)
  AND {NOT_AN_EXTENSIONS.format(catalog="pg_catalog.pg_proc", alias="p")}
UNION ALL
SELECT 'operator public.' || o.oprname || '(' || pg_catalog.format_type(o.oprleft, NULL) || ', '
       || pg_catalog.format_type(o.oprright, NULL) || ')'
FROM pg_catalog.pg_operator o
WHERE o.oprnamespace = 'public'::pg_catalog.regnamespace
  AND EXISTS (SELECT FROM pg_catalog.pg_operator c
              WHERE c.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oprname = o.oprname)
  AND {NOT_AN_EXTENSIONS.format(catalog="pg_catalog.pg_operator", alias="o")}
ORDER BY 1
"""  # noqa: S608 (no input: the catalogs' names)


def lookalikes(cur: Cursor) -> list[str]:
    """'public.format(text, text)', 'operator public.=(character varying, character varying)', ..."""
    cur.execute(LOOKALIKES_SQL)
    return [str(row[0]) for row in cur.fetchall()]
