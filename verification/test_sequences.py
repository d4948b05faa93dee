"""Checklist: sequences — each owned by its column as expected, and never behind the largest
id of its column (the application's next INSERT would collide)."""

from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "sequences"

# Owned sequences of judged tables with the value their next nextval() gives (NULL for a
# sequence this role may not read: not judged). The column's maximum is read through its index.
NEXT_VALUES = """
SELECT s.sequencename, t.relname, a.attname,
       CASE WHEN has_sequence_privilege(sc.oid, 'SELECT')
            THEN coalesce(s.last_value + s.increment_by, s.start_value) END
FROM pg_catalog.pg_sequences s
JOIN pg_catalog.pg_class sc ON sc.relname = s.sequencename AND sc.relnamespace = 'public'::regnamespace
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = sc.oid
     AND d.deptype IN ('a', 'i')
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE s.schemaname = 'public' AND t.relname = ANY(:tables)
"""


def test_sequences_are_as_expected(judge: Judge) -> None:
    judge("sequences")


def test_sequences_are_ahead_of_their_ids(state: State, target: Target) -> None:
    behind = []
    for sequence, table, column, following in target.rows(NEXT_VALUES, tables=sorted(state.judged_tables)):
        top = target.value(f'SELECT max("{column}") FROM public."{table}"')  # noqa: S608 (catalog names)
        if following is not None and top is not None and following <= top:
            behind.append(f"{sequence} gives {following} next, but {table}.{column} already holds {top}")
    assert not behind, "each sequence should be ahead of its ids (next INSERT collides): " + "; ".join(behind)
