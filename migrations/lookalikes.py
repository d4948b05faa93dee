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

# Of one catalog (alias x): (name in the report, the function's name or NULL for an operator, its
# owner, an exact twin of pg_catalog's: only a session whose search_path lists pg_catalog after
# public calls that one); named like one of pg_catalog's, in public, no extension's.
OF_CATALOG = """
SELECT {shown}, {name}, x.{prefix}owner,
       EXISTS (SELECT FROM pg_catalog.{catalog} c
               WHERE c.{prefix}namespace = 'pg_catalog'::pg_catalog.regnamespace
                 AND c.{prefix}name = x.{prefix}name AND {twin})
FROM pg_catalog.{catalog} x
WHERE x.{prefix}namespace = 'public'::pg_catalog.regnamespace
  AND EXISTS (SELECT FROM pg_catalog.{catalog} c
              WHERE c.{prefix}namespace = 'pg_catalog'::pg_catalog.regnamespace
                AND c.{prefix}name = x.{prefix}name)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
                  AND d.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND d.objid = x.oid)
"""
LOOKALIKES_SQL = "UNION ALL".join(
    (
        OF_CATALOG.format(
            catalog="pg_proc",
            prefix="pro",
            shown="'public.' || x.proname || '(' || pg_catalog.oidvectortypes(x.proargtypes) || ')'",
            name="x.proname",
            twin="c.proargtypes = x.proargtypes",
        ),
        OF_CATALOG.format(
            catalog="pg_operator",
            prefix="opr",
            shown="'operator public.' || x.oprname || '(' || pg_catalog.format_type(x.oprleft, NULL) || ', '"
            " || pg_catalog.format_type(x.oprright, NULL) || ')'",
            name="NULL",
            twin="c.oprleft = x.oprleft AND c.oprright = x.oprright",
        ),
    )
)
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
