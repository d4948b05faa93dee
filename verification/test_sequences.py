"""Checklist: sequences — each owned by its column as expected, and never behind the largest
id of its column (the application's next INSERT would collide)."""

from psycopg2 import sql

from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "sequences"

# Owned sequences of judged tables: the owning column, the increment, and whether this role
# may read the sequence (one it may not read is not judged).
OWNED = """
SELECT sc.relname, t.relname, a.attname, s.seqincrement, has_sequence_privilege(sc.oid, 'SELECT')
FROM pg_catalog.pg_sequence s
JOIN pg_catalog.pg_class sc ON sc.oid = s.seqrelid AND sc.relnamespace = 'public'::regnamespace
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = sc.oid
     AND d.deptype IN ('a', 'i')
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE t.relname = ANY(:tables)
"""


def next_value(target: Target, sequence: str, increment: int) -> int:
    """What nextval() would give: last_value, plus the increment once it was handed out."""
    last, called = target.rows(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier("public", sequence))
    )[0]
    return int(last + increment if called else last)


def test_sequences_are_as_expected(judge: Judge) -> None:
    judge("sequences")


def test_sequences_are_ahead_of_their_ids(state: State, target: Target) -> None:
    behind = []
    for sequence, table, column, increment, readable in target.rows(
        OWNED, tables=sorted(state.judged_tables)
    ):
        if not readable:
            continue
        top = target.value(
            sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier("public", table))
        )
        following = next_value(target, sequence, increment)
        if top is not None and (following <= top if increment > 0 else following >= top):
            behind.append(f"{sequence} gives {following} next, but {table}.{column} already holds {top}")
    assert not behind, "each sequence should be ahead of its ids (next INSERT collides): " + "; ".join(behind)
