"""Checklist: indexes (인덱스 생성 확인) — method, columns, order, NULLS, predicate and validity.

An extra plain index on a table the migrations did not create is the application's tuning
and passes; an extra UNIQUE or INVALID index, or anything more on a new table, fails.
"""

from verification.state import Judge

CHECKLIST = "indexes"


def test_indexes_are_as_expected(judge: Judge) -> None:
    judge("indexes")
