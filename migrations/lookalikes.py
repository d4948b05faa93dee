"""Functions, aggregates and operators in `public` named like PostgreSQL's own (not an
extension's): where one matches a call's argument types better than pg_catalog's
(`public.format(text, text)`, `public.=(varchar, varchar)`, `public.max(varchar)`), PostgreSQL
calls it instead, with the rights of whoever runs the statement.

The kit's own statements never see `public`; a migration's do, with pg_catalog first (an exact
twin of one of its functions never wins there). The runner refuses to run migrations that could
call one owned by another role, no superuser: its code would run with the deployer's rights.
Verification names every one come since the yardstick: a session whose search_path lists
pg_catalog after public calls even a twin."""

from __future__ import annotations

import re

from psycopg2.extensions import cursor as Cursor

# (name in the report, the function's name or NULL for an operator, its owner, an exact twin of
# pg_catalog's: only a session whose search_path lists pg_catalog after public calls that one)
LOOKALIKES_SQL = """
SELECT 'public.' || p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')',
       p.proname, p.proowner,
       EXISTS (SELECT FROM pg_catalog.pg_proc c
               WHERE c.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.proname = p.proname
                 AND c.proargtypes = p.proargtypes)
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
  AND EXISTS (SELECT FROM pg_catalog.pg_proc c
              WHERE c.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.proname = p.proname)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
                  AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid)
UNION ALL
SELECT 'operator public.' || o.oprname || '(' || pg_catalog.format_type(o.oprleft, NULL) || ', '
       || pg_catalog.format_type(o.oprright, NULL) || ')', NULL, o.oprowner,
       EXISTS (SELECT FROM pg_catalog.pg_operator c
               WHERE c.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oprname = o.oprname
                 AND c.oprleft = o.oprleft AND c.oprright = o.oprright)
FROM pg_catalog.pg_operator o
WHERE o.oprnamespace = 'public'::pg_catalog.regnamespace
  AND EXISTS (SELECT FROM pg_catalog.pg_operator c
              WHERE c.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.oprname = o.oprname)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
                  AND d.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND d.objid = o.oid)
"""
UNTRUSTED = f"""
SELECT l.shown, l.name FROM ({LOOKALIKES_SQL}) AS l(shown, name, owner, twin)
JOIN pg_catalog.pg_roles r ON r.oid = l.owner
WHERE NOT l.twin AND NOT r.rolsuper AND r.rolname <> current_user ORDER BY 1
"""  # noqa: S608 (no input)


def untrusted(cur: Cursor, statements: str) -> list[str]:
    """Lookalikes owned by another role than this session's, no superuser, that `statements`
    could call: every operator, and a function whose name they call ('public.format(text, text)',
    'operator public.=(character varying, character varying)', ...)."""
    cur.execute(UNTRUSTED)
    return [
        str(shown)
        for shown, name in cur.fetchall()
        if name is None or re.search(rf"\b{re.escape(name)}\s*\(", statements, re.I)
    ]


def lookalikes(cur: Cursor) -> list[tuple[str, str | None]]:
    """Every lookalike: (as shown, the function's name; None for an operator)."""
    cur.execute(LOOKALIKES_SQL + " ORDER BY 1")
    return [(str(shown), name) for shown, name, *_ in cur.fetchall()]
