"""Checklist: triggers and their functions — definition, enabled state (DISABLED, ENABLE
REPLICA, ENABLE ALWAYS are named) and the function bodies."""

from verification.state import Judge

CHECKLIST = "triggers"


def test_triggers_and_functions_are_as_expected(judge: Judge) -> None:
    judge("triggers")
