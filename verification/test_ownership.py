"""Checklist: who owns the tables, views, sequences and functions — as the before-image holds
them, and what the migrations create owned like `stocks` (the application's role): the
owner alone may ALTER, VACUUM or TRUNCATE a table, so another owner takes that from the
application, and a restore without owners hands everything to whoever ran it."""

from verification.state import Judge

CHECKLIST = "ownership"


def test_owners_are_as_expected(judge: Judge) -> None:
    judge("owners")
