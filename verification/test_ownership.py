"""Checklist: who owns the tables, views, sequences and functions, and who was granted what
on them — as the before-image holds them, and what the migrations create owned like the
application's table (the application's role), its owner's alone. The owner alone may ALTER,
VACUUM or TRUNCATE a table: another owner takes that from the application, and a restore
without owners hands everything to whoever ran it. A privilege a role held and lost fails;
one given is noted."""

from verification.state import Judge

CHECKLIST = "ownership"


def test_owners_and_grants_are_as_expected(judge: Judge) -> None:
    judge("owners")
