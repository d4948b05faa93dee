"""The state a database should be in: the before-image, plus what each migration up to the
target declares (its contract), compared fact by fact with what the database has.

Everything the before-image holds is judged, and everything the migrations declare: a
difference nobody declared fails, whatever it is. What is outside both (tables and functions
the application made since, other schemas) is not the deployment's business, and neither is
an extra plain index on a table the migrations did not create (tuning).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from migrations import catalog, ledger
from migrations.catalog import Key
from migrations.contract import Contract, Expected, fold
from migrations.image import BeforeImage
from migrations.steps import Migration

# `judge(group, troubleshoot=None)`, the checks' fixture (verification/conftest.py).
Judge = Callable[..., None]
ALIASES = {"upgraded": "head", "rolled-back": "base"}  # --expect, the first kit's words


def target_name(config: Any) -> str:
    """The state asked for: --to, else --expect's alias, else head."""
    chosen = config.getoption("--to") or ALIASES.get(config.getoption("--expect") or "", "head")
    return str(chosen)


def is_foreign_key(definition: str | None) -> bool:
    return bool(definition and definition.startswith("FOREIGN KEY"))


def of_kinds(*kinds: str) -> Callable[[Key, str | None], bool]:
    return lambda key, definition: key.kind in kinds


# The checklist's catalog groups: which facts each one judges (a constraint by its definition).
GROUPS: dict[str, Callable[[Key, str | None], bool]] = {
    "tables": of_kinds("table", "column", "comment", "view", "materialized view", "type", "policy", "rule"),
    "indexes": of_kinds("index"),
    "foreign keys": lambda key, definition: key.kind == "constraint" and is_foreign_key(definition),
    "unique": lambda key, definition: (
        key.kind == "primary key" or (key.kind == "constraint" and not is_foreign_key(definition))
    ),
    "triggers": of_kinds("trigger", "function"),
    "sequences": of_kinds("sequence"),
}


@dataclass
class State:
    """The expected state at `target` and how to judge a database against it."""

    target: str
    chain: list[Migration]
    applied: list[Migration]
    before: BeforeImage | None
    no_before: str = ""
    expected: Expected = field(default_factory=dict)
    # the image of each rewritten column (str(rewrite)) taken just before its migration
    rewrite_images: dict[str, BeforeImage | None] = field(default_factory=dict)
    waived: bool = False  # --before none: the operator judged the before-image unnecessary
    judged_tables: set[str] = field(default_factory=set)
    created_tables: set[str] = field(default_factory=set)

    @classmethod
    def at(
        cls,
        chain: list[Migration],
        target: str,
        before: BeforeImage | None,
        why: str = "",
        rewrite_images: dict[str, BeforeImage | None] | None = None,
        waived: bool = False,
    ) -> State:
        """The state after the migrations of `chain` up to `target` ('base': none)."""
        names = [m.name for m in chain]
        applied = chain[: names.index(target) + 1] if target != "base" else []
        state = cls(target, chain, applied, before, why, rewrite_images=rewrite_images or {}, waived=waived)
        state.build()
        return state

    def contracts(self) -> list[Contract]:
        """What is applied at the target (the kit's ledger is in its registry, not in public)."""
        return [m.contract for m in self.applied]

    def every_contract(self) -> list[Contract]:
        """Every migration's of the chain, applied at the target or not, and an earlier kit's
        ledger table in public (never there once the registry holds the ledger)."""
        return [ledger.LEGACY, *(m.contract for m in self.chain)]

    def build(self) -> None:
        start = self.before.catalog if self.before else {}
        folded = fold(self.contracts(), start)
        declared = {k for c in self.every_contract() for k in c.keys}
        gone = {k.table for k, v in folded.items() if k.kind == "table" and v is None}
        if not self.before:  # a fact a migration changes but did not create: unknown before it
            known = {k for c in self.contracts() for k in c.keys}
            created = {k for c in self.every_contract() for k in c.adds}
            declared = {k for k in declared if k in known or k in created}
        self.expected = {k: (None if k.table in gone else folded.get(k)) for k in (*declared, *start)}
        self.created_tables = {t for c in self.every_contract() for t in c.created_tables()}
        present = {k.table for k, v in self.expected.items() if k.kind == "table" and v is not None}
        self.judged_tables = present if self.before else present & self.created_tables

    def matching(self, pattern: re.Pattern[str]) -> list[tuple[Key, re.Match[str]]]:
        """The expected constraints whose definition `pattern` matches, with the match."""
        found = [(k, pattern.match(v or "")) for k, v in self.expected.items() if k.kind == "constraint"]
        return sorted(((k, m) for k, m in found if m), key=lambda km: catalog.sort_key(km[0]))

    def is_applied(self, name: str) -> bool:
        return any(m.name == name for m in self.applied)

    def expects(self, key: Key) -> bool:
        """Whether the object must exist at the target."""
        return self.expected.get(key) is not None

    def judge(self, found: catalog.Image, group: str) -> Judgement:
        """Every difference of a checklist group's facts: expected vs found, then anything more."""
        wanted = GROUPS[group]
        expected = {k: v for k, v in self.expected.items() if wanted(k, v or found.get(k))}
        lines = catalog.differences(expected, found)
        for key, definition in sorted(found.items(), key=lambda kv: catalog.sort_key(kv[0])):
            if key in self.expected or key.table not in self.judged_tables or not wanted(key, definition):
                continue
            if key.kind == "index" and self.tuning(key, definition):
                continue
            lines.append(f"{key}: expected nothing (no migration declares it), found {definition!r}")
        return Judgement(lines)

    def tuning(self, key: Key, definition: str) -> bool:
        """A plain, valid index on a table no migration created: the application's tuning."""
        plain = not definition.startswith("UNIQUE") and not definition.endswith("(INVALID)")
        return plain and key.table not in self.created_tables


@dataclass
class Judgement:
    """The differences found, split into failures and those allowed by name (--allow)."""

    lines: list[str]
    allowed: list[str] = field(default_factory=list)

    def allow(self, patterns: Iterable[str]) -> Judgement:
        patterns = list(patterns)
        keep: list[str] = []
        allowed: list[str] = []
        for line in self.lines:
            subject = line.split(": ", 1)[0]
            (allowed if any(fnmatchcase(subject, p) for p in patterns) else keep).append(line)
        return Judgement(keep, allowed)


def check(
    state: State,
    found: catalog.Image,
    group: str,
    allowed: list[str],
    notes: list[str],
    troubleshoot: Callable[[], list[str]] | None = None,
) -> None:
    """The checklist group's facts are as expected, or fail listing every difference (and
    what `troubleshoot` finds then: the runbook's troubleshooting queries)."""
    judgement = state.judge(found, group).allow(allowed)
    notes += [f"allowed: {line}" for line in judgement.allowed]
    if judgement.lines:
        raise AssertionError("\n".join(judgement.lines + (troubleshoot() if troubleshoot else [])))
