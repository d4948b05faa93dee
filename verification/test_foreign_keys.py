"""Checklist: FOREIGN KEY constraints (Foreign Key 제약조건 확인) — columns, target, ON DELETE,
DEFERRABLE and validity, on the new tables and on every table that referenced `stocks` before.

A failure also runs the runbook's troubleshooting query: codes missing from the parent.
"""

import re
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import Select

from migrations import catalog
from verification.db import Target
from verification.state import State, is_foreign_key

CHECKLIST = "foreign keys"
SINGLE_COLUMN_FK = re.compile(r"^FOREIGN KEY \((\w+)\) REFERENCES public\.(\w+)\((\w+)\)")


def orphans(table: str, column: str, parent: str, parent_column: str) -> Select:
    """The runbook's troubleshooting query: values missing from the parent table (at most 10)."""
    child = sa.table(table, sa.column(column), schema="public")
    ref = sa.table(parent, sa.column(parent_column), schema="public")
    missing = ~sa.exists().where(ref.c[parent_column] == child.c[column])
    return (
        sa.select(child.c[column], sa.func.count())
        .where(missing, child.c[column].is_not(None))
        .group_by(child.c[column])
        .order_by(child.c[column])
        .limit(10)
    )


def troubleshooting(state: State, found: catalog.Image, target: Target) -> list[str]:
    """For each expected single-column foreign key of an existing table: the orphans found."""
    lines = []
    for key, definition in sorted(state.expected.items(), key=lambda kv: catalog.sort_key(kv[0])):
        fk = SINGLE_COLUMN_FK.match(definition or "") if is_foreign_key(definition) else None
        if fk and catalog.Key("column", key.table, fk[1]) in found and catalog.Key("table", fk[2]) in found:
            rows = target.rows(orphans(key.table, *fk.groups()))
            shown = ", ".join(f"{value!r} ({n} rows)" for value, n in rows) or "none"
            lines.append(f"{fk[1]} values in {key.table} missing from {fk[2]}: {shown}")
    return lines


def test_foreign_keys_are_as_expected(
    judge: Callable[[str], None], state: State, found: catalog.Image, target: Target
) -> None:
    try:
        judge("foreign keys")
    except AssertionError as failure:
        raise AssertionError("\n".join([str(failure), *troubleshooting(state, found, target)])) from None
