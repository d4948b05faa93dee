"""Checklist: FOREIGN KEY constraints (Foreign Key 제약조건 확인) — columns, target, ON DELETE,
DEFERRABLE and validity, on the new tables and on every table that referenced another before.

A failure also runs the runbook's troubleshooting query: keys missing from the parent.
"""

import re

from psycopg2 import sql

from migrations import catalog
from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "foreign keys"
SINGLE_COLUMN_FK = re.compile(r"^FOREIGN KEY \((\w+)\) REFERENCES public\.(\w+)\((\w+)\)")


def orphans(table: str, column: str, parent: str, parent_column: str) -> sql.Composed:
    """The runbook's troubleshooting query: values missing from the parent table (at most 10)."""
    return sql.SQL(
        "SELECT c.{col}, count(*) FROM {child} c WHERE c.{col} IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{ref} = c.{col})"
        " GROUP BY c.{col} ORDER BY c.{col} LIMIT 10"
    ).format(
        col=sql.Identifier(column),
        child=sql.Identifier("public", table),
        parent=sql.Identifier("public", parent),
        ref=sql.Identifier(parent_column),
    )


def troubleshooting(state: State, found: catalog.Image, target: Target) -> list[str]:
    """For each expected single-column foreign key of an existing table: the orphans found."""
    lines = []
    for key, fk in state.matching(SINGLE_COLUMN_FK):
        if catalog.Key("column", key.table, fk[1]) in found and catalog.Key("table", fk[2]) in found:
            rows = target.rows(orphans(key.table, *fk.groups()))
            shown = ", ".join(f"{value!r} ({n} rows)" for value, n in rows) or "none"
            lines.append(f"{fk[1]} values in {key.table} missing from {fk[2]}: {shown}")
    return lines


def test_foreign_keys_are_as_expected(
    judge: Judge, state: State, found: catalog.Image, target: Target
) -> None:
    judge("foreign keys", lambda: troubleshooting(state, found, target))
