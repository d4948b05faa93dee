"""Checklist: settings that silently switch triggers and foreign keys off for every session."""

from verification.db import Target

CHECKLIST = "triggers"

# A database or role default of session_replication_role = replica fires no ordinary trigger
# and checks no foreign key: the priority trigger and every ON DELETE CASCADE stop working.
DEFAULTS = """
SELECT coalesce(r.rolname, 'every role') || ' in ' || coalesce(d.datname, 'every database') || ': '
       || array_to_string(s.setconfig, ', ')
FROM pg_catalog.pg_db_role_setting s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
WHERE (d.datname = current_database() OR s.setdatabase = 0)
  AND array_to_string(s.setconfig, ',') LIKE '%session_replication_role%'
"""


def test_sessions_fire_triggers_and_check_foreign_keys(target: Target) -> None:
    got = target.value("SELECT current_setting('session_replication_role')")
    where = "; ".join(row[0] for row in target.rows(DEFAULTS)) or "no database or role default"
    assert got == "origin", (
        f"session_replication_role should be origin in a new session, found {got} ({where}): "
        "no ordinary trigger fires and no foreign key is checked"
    )
