"""Checklist: the ledger records exactly the migrations of the verified state, each applied, each
with the checksum of the migration as it is (else the next `downgrade` refuses to run)."""

from verification.db import Target
from verification.state import State

CHECKLIST = "ledger"


def test_ledger_records_exactly_the_state(state: State, target: Target) -> None:
    rows = target.ledger()
    present, rows = rows is not None, rows or {}
    chain = {m.name for m in state.chain}
    found = {name: s for name, s in rows.items() if name in chain}
    wanted = {m.name: "applied" for m in state.applied}
    assert found == wanted, (
        f"the ledger should record {wanted or 'nothing (no ledger table)'} at {state.target}, "
        f"found {found or ('nothing' if present else 'no ledger table')}"
    )


def test_ledger_checksums_are_the_migrations(state: State, target: Target) -> None:
    recorded = target.checksums()
    changed = [m.name for m in state.applied if m.name in recorded and not m.matches(recorded[m.name])]
    assert not changed, (
        f"the ledger's checksum of {', '.join(changed)} should be the migration's own, found another:"
        " the next upgrade or downgrade refuses to run (`python -m migrations status` shows it)"
    )
