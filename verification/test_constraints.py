"""Checklist: UNIQUE (UNIQUE 제약조건 확인), primary keys and CHECK constraints — each one's
definition, DEFERRABLE and validity; a primary key by its columns (its name may change).

A failure also runs the runbook's troubleshooting query: duplicate groups of each expected
UNIQUE constraint's columns.
"""

import re
from collections.abc import Callable

from psycopg2 import sql

from migrations import catalog
from verification.db import Target
from verification.state import State

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
    for key, definition in sorted(state.expected.items(), key=lambda kv: catalog.sort_key(kv[0])):
        unique = UNIQUE.match(definition or "") if key.kind == "constraint" else None
        columns = unique[1].split(", ") if unique else []
        if columns and all(catalog.Key("column", key.table, c) in found for c in columns):
            rows = target.rows(duplicates(key.table, columns))
            shown = "; ".join(str(tuple(r)) for r in rows) or "none"
            lines.append(f"duplicate groups of {key.table} ({', '.join(columns)}): {shown}")
    return lines


def test_unique_keys_and_checks_are_as_expected(
    judge: Callable[[str], None], state: State, found: catalog.Image, target: Target
) -> None:
    try:
        judge("unique")
    except AssertionError as failure:
        raise AssertionError("\n".join([str(failure), *troubleshooting(state, found, target)])) from None
