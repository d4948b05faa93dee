"""The whole catalog of the `public` schema as comparable facts: key → definition.

One query reads every table, column, comment, constraint, index, trigger, policy, function,
sequence, view, enum and domain of `public`, and the database's event triggers, from
pg_catalog (never through search_path: the definitions are rendered with an empty
search_path, so every name is schema-qualified); who
owns each table, view, sequence and function, and who was granted what on them (the owner as
`owner`, every privilege as `all`); and the database- and role-level settings that apply to
the application's sessions here: this database's defaults and connection limits, and those
of the roles that own or were granted the application's table (LOGIN, CONNECTION LIMIT, VALID UNTIL too).
The same facts are what a migration's contract declares (`migrations.contract`), what the
runner compares for drift, and what verification diffs against the before-image;
`migrations.meaning` says what a difference does (fails, or is only noted).

The facts say what the catalog claims, and how it works where the catalog can switch a thing
off without changing its definition: a table whose triggers the catalog no longer loads
(relhastriggers off), an index not maintained on writes (NOT READY), a foreign key whose
enforcement triggers do not fire in ordinary sessions. Whether the rows hold what the catalog
claims is the data checks' business (`verification/test_data.py`).

Left out on purpose, because a correct deployment may change them: statistics, CLUSTER
marks, table storage parameters, column order and the name of a primary key (its columns are
the fact), and the indexes and constraints' own object ids. Index storage parameters are part
of the index's definition: a difference there is noted, never failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from migrations import application


class Key(NamedTuple):
    """What a fact is about: its kind, the table it belongs to ('' for none), its name."""

    kind: str
    table: str = ""
    name: str = ""

    def __str__(self) -> str:
        if self.kind == "setting":
            return f"setting {self.name} of {self.table}"
        if self.kind == "grant":
            return f"grants on {self.table}"
        if self.kind == "comment":
            return f"comment on {self.table}{'.' + self.name if self.name else ''}"
        where = ".".join(part for part in (self.table, self.name) if part)
        return f"{self.kind} {where}"


Image = dict[Key, str]

# A contract's word for "this object exists, whatever its definition" (a value that depends on
# what the database held before, such as a saved comment).
ANY = "(any definition)"

# The kinds, in the order a reader meets them; each is one checklist-sized group.
KINDS = (
    "table",
    "column",
    "comment",
    "primary key",
    "constraint",
    "index",
    "trigger",
    "policy",
    "rule",
    "function",
    "sequence",
    "view",
    "type",
    "event trigger",
    "owner",
    "grant",
    "setting",
)

IMAGE_SQL = f"""
WITH app_roles AS (  -- who acts as the application: its table's owner, grantees, their members
    SELECT m.oid FROM pg_catalog.pg_roles m
    WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                  LEFT JOIN LATERAL pg_catalog.aclexplode(c.relacl) g ON g.grantee <> 0
                  WHERE c.oid = {application.REGCLASS}
                    AND (pg_catalog.pg_has_role(m.oid, c.relowner, 'MEMBER')
                         OR pg_catalog.pg_has_role(m.oid, g.grantee, 'MEMBER')))
),
rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
           c.relhastriggers, c.relowner, c.relacl
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'public'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                        AND d.deptype = 'e')
)
SELECT 'table', r.relname, '',
       concat_ws(', ',
                 CASE r.relpersistence WHEN 'u' THEN 'unlogged' WHEN 't' THEN 'temporary' ELSE 'logged' END,
                 CASE WHEN r.relkind = 'p' THEN 'partitioned' END,
                 CASE WHEN r.relrowsecurity THEN 'row security enabled' END,
                 CASE WHEN r.relforcerowsecurity THEN 'row security forced' END,
                 CASE WHEN NOT r.relhastriggers AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                                             WHERE t.tgrelid = r.oid)
                      THEN 'triggers not loaded (relhastriggers off): none fires' END)
FROM rel r WHERE r.relkind IN ('r', 'p')
UNION ALL
SELECT CASE r.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, r.relname, '',
       regexp_replace(pg_catalog.pg_get_viewdef(r.oid), '\\s+', ' ', 'g')
FROM rel r WHERE r.relkind IN ('v', 'm')
UNION ALL
SELECT 'column', r.relname, a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END
       || coalesce(' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
                             WHEN 'd' THEN ' generated by default as identity' ELSE '' END
       || CASE WHEN a.attgenerated = 's' THEN ' generated stored' ELSE '' END
       || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
               THEN ' collate ' || (SELECT quote_ident(collname) FROM pg_catalog.pg_collation
                                    WHERE oid = a.attcollation) ELSE '' END
FROM rel r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'comment', r.relname, '', pg_catalog.obj_description(r.oid, 'pg_class')
FROM rel r WHERE pg_catalog.obj_description(r.oid, 'pg_class') IS NOT NULL AND r.relkind <> 'S'
UNION ALL
SELECT 'comment', r.relname, a.attname, pg_catalog.col_description(r.oid, a.attnum)
FROM rel r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE pg_catalog.col_description(r.oid, a.attnum) IS NOT NULL
UNION ALL
SELECT CASE WHEN c.contype = 'p' THEN 'primary key' ELSE 'constraint' END, r.relname,
       CASE WHEN c.contype = 'p' THEN '' ELSE c.conname END,
       pg_catalog.pg_get_constraintdef(c.oid)
       || CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                            WHERE t.tgconstraint = c.oid AND t.tgenabled IN ('D', 'R'))
               THEN ' (ENFORCEMENT TRIGGERS DISABLED: not checked)' ELSE '' END
FROM rel r JOIN pg_catalog.pg_constraint c ON c.conrelid = r.oid
UNION ALL
SELECT 'index', r.relname, ic.relname,
       regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid),
                      '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+ ', '\\1')
       || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
       || CASE WHEN i.indisready OR NOT i.indisvalid THEN '' ELSE ' (NOT READY: not maintained on writes)' END
FROM rel r
JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                  WHERE k.conindid = i.indexrelid AND k.conrelid = r.oid AND k.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT 'trigger', r.relname, t.tgname,
       regexp_replace(pg_catalog.pg_get_triggerdef(t.oid),
                      '^CREATE (CONSTRAINT )?TRIGGER \\S+ (.*?) ON \\S+ ', '\\2 ')
       || CASE t.tgenabled WHEN 'D' THEN ' (DISABLED)' WHEN 'A' THEN ' (ENABLE ALWAYS)'
                           WHEN 'R' THEN ' (ENABLE REPLICA: fires only in replica sessions)'
                           WHEN 'O' THEN '' ELSE ' (tgenabled ' || t.tgenabled::text || ')' END
FROM rel r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'rule', r.relname, w.rulename,
       regexp_replace(pg_catalog.pg_get_ruledef(w.oid), '^CREATE RULE \\S+ AS\\s+', '')
       || CASE w.ev_enabled WHEN 'D' THEN ' (DISABLED)' ELSE '' END
FROM rel r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid AND w.rulename <> '_RETURN'
UNION ALL
SELECT 'policy', p.tablename, p.policyname,
       concat_ws(' ', p.permissive, 'FOR', p.cmd, 'TO', array_to_string(p.roles, ','),
                 'USING (' || p.qual || ')', 'WITH CHECK (' || p.with_check || ')')
FROM pg_catalog.pg_policies p WHERE p.schemaname = 'public'
UNION ALL
SELECT 'function', '', p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
       concat_ws(' ', 'returns', pg_catalog.pg_get_function_result(p.oid), 'language', l.lanname,
                 CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' END,
                 CASE WHEN p.prosecdef THEN 'security definer' END,
                 'set ' || array_to_string(p.proconfig, ', '))
       || ': ' || btrim(regexp_replace(p.prosrc, '\\s+', ' ', 'g'))
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'sequence', '', r.relname,
       pg_catalog.format_type(s.seqtypid, NULL)
       || coalesce((SELECT ', owned by ' || o.relname || '.' || a.attname
                    FROM pg_catalog.pg_depend d
                    JOIN pg_catalog.pg_class o ON o.oid = d.refobjid
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = r.oid
                      AND d.deptype IN ('a', 'i') LIMIT 1), ', owned by nothing')
       || CASE WHEN s.seqincrement <> 1 THEN ', increment by ' || s.seqincrement ELSE '' END
       || CASE WHEN s.seqmin <> 1 THEN ', minvalue ' || s.seqmin ELSE '' END
       || CASE WHEN s.seqmax <> CASE s.seqtypid WHEN 'int2'::regtype THEN 32767
                                                 WHEN 'int4'::regtype THEN 2147483647
                                                 ELSE 9223372036854775807 END
               THEN ', maxvalue ' || s.seqmax ELSE '' END
       || CASE WHEN s.seqcycle THEN ', cycle' ELSE '' END
FROM rel r JOIN pg_catalog.pg_sequence s ON s.seqrelid = r.oid
UNION ALL
SELECT 'type', '', t.typname,
       'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                    FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid) || ')'
FROM pg_catalog.pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'
UNION ALL
SELECT 'type', '', t.typname,
       'domain over ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)
       || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || t.typdefault, '')
       || coalesce((SELECT ' ' || string_agg(pg_catalog.pg_get_constraintdef(c.oid), ' ' ORDER BY c.conname)
                    FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid), '')
FROM pg_catalog.pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'd'
UNION ALL
SELECT 'event trigger', '', e.evtname,
       'ON ' || e.evtevent || coalesce(' WHEN TAG IN (' || array_to_string(e.evttags, ', ') || ')', '')
       || ' EXECUTE FUNCTION ' || e.evtfoid::regprocedure::text
       || CASE e.evtenabled WHEN 'D' THEN ' (DISABLED)' WHEN 'A' THEN ' (ENABLE ALWAYS)'
                            WHEN 'R' THEN ' (ENABLE REPLICA: fires only in replica sessions)' ELSE '' END
FROM pg_catalog.pg_event_trigger e
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_event_trigger'::regclass AND d.objid = e.oid
                    AND d.deptype = 'e')
UNION ALL
SELECT 'owner', r.relname, '', pg_catalog.pg_get_userbyid(r.relowner)
FROM rel r WHERE r.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT 'owner', '', p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
       pg_catalog.pg_get_userbyid(p.proowner)
FROM pg_catalog.pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'grant', r.relname, '', string_agg(g.who || ': ' || g.privileges, '; ' ORDER BY g.who)
FROM rel r
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.grantee = r.relowner THEN 'owner' WHEN a.grantee = 0 THEN 'PUBLIC'
                ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS who,
           CASE WHEN array_agg(a.privilege_type) @> (
                    SELECT array_agg(d.privilege_type)
                    FROM pg_catalog.aclexplode(pg_catalog.acldefault(
                        CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner)) d)
                THEN 'all' ELSE string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type) END AS privileges
    FROM pg_catalog.aclexplode(coalesce(r.relacl, pg_catalog.acldefault(
        CASE WHEN r.relkind = 'S' THEN 's' ELSE 'r' END::"char", r.relowner))) a
    GROUP BY a.grantee
) g
WHERE r.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
GROUP BY r.relname
UNION ALL
SELECT 'setting', 'the database', o.name, o.value
FROM pg_catalog.pg_database d,
     LATERAL (VALUES ('ALLOW_CONNECTIONS', CASE WHEN NOT d.datallowconn THEN 'false' END),
                     ('CONNECTION LIMIT', nullif(d.datconnlimit, -1)::text)) AS o(name, value)
WHERE d.datname = pg_catalog.current_database() AND o.value IS NOT NULL
UNION ALL
SELECT 'setting', 'role ' || pg_catalog.quote_ident(a.rolname), o.name, o.value
FROM pg_catalog.pg_roles a,
     LATERAL (VALUES ('LOGIN', CASE WHEN NOT a.rolcanlogin THEN 'false' END),
                     ('CONNECTION LIMIT', nullif(a.rolconnlimit, -1)::text),
                     ('VALID UNTIL', a.rolvaliduntil::text)) AS o(name, value)
WHERE a.oid IN (SELECT oid FROM app_roles) AND o.value IS NOT NULL
UNION ALL
SELECT 'setting',
       CASE WHEN s.setrole = 0 THEN 'the database'
            WHEN s.setdatabase = 0 THEN 'role ' || pg_catalog.quote_ident(o.rolname)
            ELSE 'role ' || pg_catalog.quote_ident(o.rolname) || ' in the database' END,
       split_part(cfg, '=', 1), substr(cfg, strpos(cfg, '=') + 1)
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_roles o ON o.oid = s.setrole,
     unnest(s.setconfig) cfg
WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
   OR (s.setdatabase = 0 AND s.setrole IN (SELECT oid FROM app_roles))
"""  # noqa: S608 (the application's table is configuration, not input)

# Rendered with an empty search_path (every name in a definition schema-qualified) and fixed
# settings for the literals it prints (a timestamptz default in UTC), whatever the session's
# are. Local to the transaction.
PIN = (
    "SELECT pg_catalog.set_config(name, value, true) FROM (VALUES ('search_path', ''),"
    " ('TimeZone', 'UTC'), ('DateStyle', 'ISO, YMD'), ('IntervalStyle', 'postgres'),"
    " ('extra_float_digits', '1')) AS pinned(name, value)"
)


def from_rows(rows: Iterable[tuple[Any, ...]]) -> Image:
    """The image from IMAGE_SQL's rows (kind, table, name, definition)."""
    return {Key(kind, table, name): definition for kind, table, name, definition in rows}


def read(cur: Any) -> Image:
    """Read the image on a DB-API cursor, inside the caller's transaction."""
    cur.execute(PIN)
    cur.execute(IMAGE_SQL)
    return from_rows(cur.fetchall())


def differences(expected: Mapping[Key, str | None], found: Mapping[Key, str]) -> list[str]:
    """One line per key whose definition differs: `key: expected X, found Y`.

    An expected value of None means the object must not exist.
    """
    lines = []
    for key in sorted(set(expected) | set(found), key=sort_key):
        want, have = expected.get(key), found.get(key)
        if key not in expected or want == have or (want == ANY and have is not None):
            continue
        lines.append(difference(key, want, have))
    return lines


def difference(key: Key, want: str | None, have: str | None, declared: bool = True) -> str:
    """One difference as a failure message says it (`declared` False: nothing declares it)."""
    if not declared:
        why = "not set before the deployment" if key.kind == "setting" else "no migration declares it"
        return f"{key}: expected nothing ({why}), found {have!r}"
    return f"{key}: expected {show(want)}, found {show(have)}"


def show(value: str | None) -> str:
    """A definition as a failure message shows it."""
    return "nothing (absent)" if value is None else repr(value)


def sort_key(key: Key) -> tuple[int, str, str]:
    """Kinds in reading order, then by table and name."""
    return (KINDS.index(key.kind) if key.kind in KINDS else len(KINDS), key.table, key.name)
