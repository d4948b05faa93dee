"""Checklist: tables (테이블 생성 확인) — every table, column, comment, view and policy as expected.

Expected = the before-image + what each migration up to the target declares; anything more
on a judged table fails too. RLS and UNLOGGED are part of a table's definition.
"""

import pytest

from verification.advice import YARDSTICK
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
