"""The changes' own checklist items: each change's optional `checklist` (a module, or a package
of modules), collected by `verification/test_changes.py`.

A checklist module holds `test_*` checks and their fixtures, and says its checklist item
(`CHECKLIST`); it may name the probes that pin down a trigger function (`PROBED`, with `WRITES`,
the query that says whether this role may run them, and `NEEDS_REPLICA`). A checklist package
may add items to the runbook's checklist (`ITEMS`) and name the one its rewritten values are
judged under (`REWRITTEN`). Every check must be able to fail: a checklist module says how to
break the database so that each of its checks fails (`BREAKS`, a list of `Break`), and the kit's
tests apply each at the chain's head and see the check fail, saying what it says.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from migrations.steps import Migration, changes

# The module the checks are collected in: their node ids say `test_changes::<check>`.
NODE = "test_changes"
REWRITTEN = "rewritten values"  # the item of a change that names none


@dataclass(frozen=True)
class Break:
    """One way to break a deployed database (`sql`), the checks that must then fail (`fails`,
    as `test_changes::<check>` for a change's own), and what the failure must say (`says`)."""

    id: str
    sql: str
    fails: tuple[str, ...]
    says: str


def of(change: str) -> ModuleType | None:
    """A change's checklist (module or package), if it has one."""
    try:
        return importlib.import_module(f"{change}.checklist")
    except ModuleNotFoundError as exc:
        if exc.name != f"{change}.checklist":
            raise
        return None


@cache
def modules() -> tuple[ModuleType, ...]:
    """Every checklist module of the chain, in the chain's order."""
    found: list[ModuleType] = []
    for change in changes():
        checklist = of(change)
        if checklist is None:
            continue
        found.append(checklist)
        for sub in pkgutil.iter_modules(getattr(checklist, "__path__", [])):
            found.append(importlib.import_module(f"{checklist.__name__}.{sub.name}"))
    return tuple(found)


def collected() -> dict[str, Any]:
    """The checks and fixtures of every checklist module, by name; two of one name refused."""
    names: dict[str, Any] = {}
    for module in modules():
        for name, value in vars(module).items():
            if not (name.startswith("test_") or hasattr(value, "_fixture_function_marker")):  # a fixture
                continue
            if name in names and names[name] is not value:
                raise ImportError(f"{module.__name__}.{name}: another change's checklist has a {name}")
            names[name] = value
    return names


def items() -> tuple[str, ...]:
    """The runbook's checklist items the chain's changes add, in order (from each checklist's
    package alone: its checks are not loaded for this)."""
    return tuple(item for change in changes() for item in getattr(of(change), "ITEMS", ()))


def rewritten_item(migration: Migration) -> str:
    """The checklist item a migration's rewritten values are judged under."""
    for change in changes():
        if migration.name in importlib.import_module(change).MIGRATIONS:
            return str(getattr(of(change), "REWRITTEN", REWRITTEN))
    return REWRITTEN


def probed() -> dict[str, tuple[ModuleType, tuple[str, ...]]]:
    """Trigger function → (the checklist module whose probes pin it down, their names)."""
    return {f: (m, probes) for m in modules() for f, probes in getattr(m, "PROBED", {}).items()}


def breaks() -> list[Break]:
    """Every checklist module's `BREAKS`, in the chain's order."""
    return [b for module in modules() for b in getattr(module, "BREAKS", ())]
