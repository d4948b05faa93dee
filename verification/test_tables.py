"""Checklist: tables (테이블 생성 확인) — every table, column, comment, view and policy as expected.

Expected = the before-image + what each migration up to the target declares; anything more
on a judged table fails too. RLS and UNLOGGED are part of a table's definition.
"""

import pytest

from migrations.blockers import blockers
from verification.advice import BLOCKED, YARDSTICK
from verification.db import Target
from verification.state import Judge, State

CHECKLIST = "tables"


def test_tables_and_columns_are_as_expected(judge: Judge) -> None:
    judge("tables")


@pytest.mark.checklist(YARDSTICK)
def test_before_image_is_known(state: State) -> None:
    """Without it only what the migrations declare can be judged: a missing yardstick fails."""
    if state.waived:
        pytest.skip(state.no_before)
    assert state.before is not None, state.no_before
    assert state.before.catalog, f"the before-image {state.before.source} holds no catalog"


@pytest.mark.checklist(BLOCKED)
def test_nothing_else_depends_on_what_a_rollback_drops(state: State, target: Target) -> None:
    """A view, another table's foreign key, a child table or a function of the row type on a
    table the migrations created: PostgreSQL refuses to drop the table, so a rollback would stop
    there (the runner refuses it before it starts)."""
    conn = target.conn
    try:
        with conn.cursor() as cur:
            found = blockers(cur, list(state.applied))
    finally:
        conn.rollback()
    assert not found, (
        "nothing outside the migrations should depend on the tables a rollback drops;"
        f" found {'; '.join(found)}: a rollback would refuse to start"
    )
