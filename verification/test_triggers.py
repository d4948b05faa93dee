"""Checklist: the triggers US-001 installs (timing, events, level, function, enabled)."""

import pytest

from verification.catalog import Catalog
from verification.expected import TRIGGERS, Trigger

pytestmark = pytest.mark.expect("upgraded")
IDS = [t.name for t in TRIGGERS]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=IDS)
def test_trigger_definition(catalog: Catalog, trigger: Trigger) -> None:
    got = catalog.trigger(trigger.table, trigger.name)
    assert got is not None, f"trigger {trigger.name} on {trigger.table} should exist; it does not"
    want = (trigger.timing, trigger.events, trigger.update_of, True, trigger.function, True)
    have = (got.timing, got.events, got.update_of, got.row_level, got.function, got.enabled)
    assert have == want, f"trigger {trigger.name} should be {describe(*want)}, found {describe(*have)}"


@pytest.mark.parametrize("trigger", TRIGGERS, ids=IDS)
def test_trigger_function_exists(catalog: Catalog, trigger: Trigger) -> None:
    assert catalog.function_exists(trigger.function), f"function {trigger.function}() should exist"


def describe(timing, events, update_of, row_level, function, enabled) -> str:
    of = f" OF {', '.join(update_of)}" if update_of else ""
    level = "FOR EACH ROW" if row_level else "FOR EACH STATEMENT"
    return (
        f"{timing} {' OR '.join(events)}{of} {level} EXECUTE {function}(){'' if enabled else ' (disabled)'}"
    )
