"""Checklist: settings that change what the application's sessions do without any table
changing — triggers and foreign keys switched off, its table names resolved elsewhere, and
every database or role default left behind (read-only sessions, timeouts, ...)."""

from migrations import catalog
from migrations.lock import LOCK_KEY
from migrations.lookalikes import lookalikes
from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "settings"

# Database and role defaults that apply in this database, as (role or '', setting).
DEFAULTS = """
SELECT coalesce(r.rolname, ''), cfg
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole,
     unnest(s.setconfig) cfg
WHERE (d.datname = current_database() OR s.setdatabase = 0) AND cfg LIKE :name || '=%'
"""
# Tables of these names in schemas other than public.
SHADOWS = """
SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(:schemas) AND c.relname = ANY(:tables) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY 1
"""
LOGIN_ROLES = "SELECT rolname FROM pg_catalog.pg_roles WHERE rolcanlogin"


def who(role: str) -> str:
    return f"role {role}" if role else "every role"


def test_sessions_fire_triggers_and_check_foreign_keys(target: Target) -> None:
    got = target.value("SELECT current_setting('session_replication_role')")
    defaults = target.rows(DEFAULTS, name="session_replication_role")
    off = [f"{who(role)}: {cfg}" for role, cfg in defaults if not cfg.endswith("=origin")]
    assert got == "origin" and not off, (
        f"session_replication_role should be origin for every session; this one has {got}, defaults: "
        f"{'; '.join(off) or 'none'}: no ordinary trigger fires and no foreign key is checked there"
    )


# search_path defaults by specificity (role and this database, role, this database).
PATHS = """
SELECT coalesce(r.rolname, ''), s.setdatabase <> 0, cfg
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole,
     unnest(s.setconfig) cfg
WHERE (d.datname = current_database() OR s.setdatabase = 0) AND cfg LIKE 'search_path=%'
"""
BUILT_IN = "SELECT 'search_path=' || boot_val FROM pg_catalog.pg_settings WHERE name = 'search_path'"


def effective_paths(target: Target) -> dict[str, str]:
    """Each login role's search_path in this database, as PostgreSQL picks it: set for the role
    in this database, else for the role, else for the database, else the built-in default."""
    found = {(role, here): cfg for role, here, cfg in target.rows(PATHS)}
    built_in = str(target.value(BUILT_IN))
    return {
        role: found.get((role, True)) or found.get((role, False)) or found.get(("", True)) or built_in
        for (role,) in target.rows(LOGIN_ROLES)
    }


def schemas_before_public(setting: str, role: str) -> list[str]:
    """The schemas a search_path lists before public ("$user" is the role)."""
    names = [part.strip().strip('"') for part in setting.split("=", 1)[1].split(",")]
    before = names[: names.index("public")] if "public" in names else names
    return [role if name == "$user" else name for name in before if name not in ("pg_catalog", "")]


def test_sessions_find_the_deployments_tables_in_public(state: State, target: Target) -> None:
    tables = sorted(state.judged_tables)
    shadowed = []
    for role, setting in effective_paths(target).items():
        schemas = schemas_before_public(setting, role)
        found = [row[0] for row in target.rows(SHADOWS, schemas=schemas, tables=tables)] if schemas else []
        shadowed += [f"{who(role)} ({setting}) resolves {name.split('.')[1]} to {name}" for name in found]
    assert not shadowed, "sessions should find the deployment's tables in public; " + "; ".join(shadowed)


def test_no_function_in_public_is_named_like_postgresqls_own(state: State, target: Target) -> None:
    """A function or operator in public (no extension's) named like one of pg_catalog, come since
    the yardstick: where it is a better match for a call (or a session's search_path lists
    pg_catalog after public) the application's statements call it instead; the runner refuses
    to deploy or roll back while one of another role is there."""
    conn = target.conn
    try:
        with conn.cursor() as cur:
            found = lookalikes(cur)
    finally:
        conn.rollback()
    before = {k.name.partition("(")[0] for k, v in state.expected.items() if k.kind == "function" and v}
    new = [shown for shown, name in found if name not in before]
    assert not new, (
        f"public should hold no function or operator named like PostgreSQL's own; found {', '.join(new)}"
    )


def test_database_and_role_settings_are_as_before(judge: Judge) -> None:
    """The defaults this database and the application's roles give every session, as the
    before-image holds them: one that decides whether and how statements run (read-only,
    timeouts, row security, an unknown or the kit's own setting) fails; one that only shapes
    how values are shown or plans made is noted."""
    judge("settings")


# Sessions left holding what the application writes: locks that block its writes, kept by a
# session idle in its transaction; the kit's deployment lock, which the next deployment waits
# for; prepared transactions, which keep their locks until someone ends them.
HELD = """
SELECT format('pid %s (%s, %s since %s) holds %s on %s', l.pid, a.usename, a.state,
              to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS'), l.mode,
              coalesce(c.relname, 'the deployment lock'))
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_catalog.pg_class c ON l.locktype = 'relation' AND c.oid = l.relation
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND ((l.locktype = 'relation' AND a.state LIKE 'idle in transaction%' AND c.relname = ANY(:tables)
        AND c.relnamespace = 'public'::regnamespace
        AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))
       OR (l.locktype = 'advisory' AND l.classid = :high AND l.objid = :low))
UNION ALL
SELECT format('prepared transaction %s of %s since %s keeps its locks until COMMIT or ROLLBACK PREPARED',
              gid, owner, to_char(prepared, 'YYYY-MM-DD HH24:MI:SS'))
FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database()
ORDER BY 1
"""


def test_no_session_left_holding_the_tables_or_the_deployment_lock(
    state: State, found: catalog.Image, target: Target
) -> None:
    high, low = LOCK_KEY
    held = [row[0] for row in target.rows(HELD, tables=state.touched(found), high=high, low=low)]
    assert not held, (
        "no session should be left holding what the application writes or the next deployment needs; "
        + "; ".join(held)
    )
