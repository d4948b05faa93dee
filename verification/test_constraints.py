"""Checklist: UNIQUE (UNIQUE 제약조건 확인), primary keys and CHECK constraints — each one's
definition, DEFERRABLE and validity; a primary key by its columns (its name may change).

A failure also runs the runbook's troubleshooting query: duplicate groups of each expected
UNIQUE constraint's columns.
"""

import re

from psycopg2 import sql

from migrations import catalog
from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "UNIQUE"
UNIQUE = re.compile(r"^UNIQUE \(([\w, ]+)\)$")


def duplicates(table: str, columns: list[str]) -> sql.Composed:
    """The runbook's troubleshooting query: duplicate groups (at most 10)."""
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL(
        "SELECT {keys}, count(*) FROM {table} GROUP BY {keys} HAVING count(*) > 1 LIMIT 10"
    ).format(keys=keys, table=sql.Identifier("public", table))


def troubleshooting(state: State, found: catalog.Image, target: Target) -> list[str]:
    """For each expected UNIQUE constraint of an existing table: its duplicate groups."""
    lines = []
    for key, unique in state.matching(UNIQUE):
        columns = unique[1].split(", ")
        if all(catalog.Key("column", key.table, c) in found for c in columns):
            rows = target.rows(duplicates(key.table, columns))
            shown = "; ".join(str(tuple(r)) for r in rows) or "none"
            lines.append(f"duplicate groups of {key.table} ({', '.join(columns)}): {shown}")
    return lines


def test_unique_keys_and_checks_are_as_expected(
    judge: Judge, state: State, found: catalog.Image, target: Target
) -> None:
    judge("unique", lambda: troubleshooting(state, found, target))
