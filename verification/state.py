"""The state a database should be in: the before-image, plus what each migration up to the
target declares (its contract), compared fact by fact with what the database has.

Everything the before-image holds is judged, and everything the migrations declare; what a
difference does decides its verdict (`migrations.meaning`): it fails when it changes what the
application can do, what a rollback can restore or what the next deployment meets, and is
noted otherwise (comments, storage parameters, a plain index, a disabled trigger, equivalent
forms). A CHECK or a function body spelled differently is judged by behaviour (the caller's
`behaviour`). What is outside both the image and the contracts (tables and functions the
application made since, other schemas) is not the deployment's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from migrations import catalog, ledger, meaning
from migrations.catalog import Key
from migrations.contract import Contract, Expected, fold
from migrations.image import BeforeImage
from migrations.steps import Migration

# `judge(group, troubleshoot=None)`, the checks' fixture (verification/conftest.py).
Judge = Callable[..., None]
# Judges a BEHAVIOUR difference: (whether the behaviour is the same, what showed it).
Behaviour = Callable[[Key, str, str], tuple[bool, str]]
# Kinds a before-image may predate: without them in the image, they are not judged (noted).
NEWER_KINDS = {
    "owner": "owners",
    "grant": "grants",
    "setting": "database and role settings",
    "event trigger": "event triggers",
}
# Kinds that belong to the database, not to a table: judged wherever a before-image is.
DATABASE_KINDS = ("setting", "event trigger")
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
    "triggers": of_kinds("trigger", "function", "event trigger"),
    "sequences": of_kinds("sequence"),
    "owners": of_kinds("owner", "grant"),
    "settings": of_kinds("setting"),
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
    data_keys: frozenset[Key] = frozenset()  # facts holding data a rollback reads
    unknown_kinds: set[str] = field(default_factory=set)  # kinds the before-image predates

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
        self.data_keys = frozenset(k for c in self.every_contract() for k in c.data)
        held = set(self.before.kinds) if self.before else set(NEWER_KINDS)
        self.unknown_kinds = {kind for kind in NEWER_KINDS if kind not in held}

    def touched(self, found: catalog.Image) -> list[str]:
        """The tables the migrations create or change, and those whose foreign keys point at them."""
        tables = {k.table for c in self.every_contract() for k in c.keys} & {
            k.table for k in found if k.kind == "table"
        }
        tables |= {
            k.table
            for k, v in found.items()
            if k.kind == "constraint" and any(f"REFERENCES public.{t}(" in v for t in tables)
        }
        return sorted(tables)

    def matching(self, pattern: re.Pattern[str]) -> list[tuple[Key, re.Match[str]]]:
        """The expected constraints whose definition `pattern` matches, with the match."""
        found = [(k, pattern.match(v or "")) for k, v in self.expected.items() if k.kind == "constraint"]
        return sorted(((k, m) for k, m in found if m), key=lambda km: catalog.sort_key(km[0]))

    def is_applied(self, name: str) -> bool:
        return any(m.name == name for m in self.applied)

    def expects(self, key: Key) -> bool:
        """Whether the object must exist at the target."""
        return self.expected.get(key) is not None

    def judge(self, found: catalog.Image, group: str, categories: dict[str, str] | None = None) -> Judgement:
        """Every difference of a checklist group's facts, expected vs found, then anything more
        on what the deployment answers for, each weighed by what it does."""
        wanted = GROUPS[group]
        expected = {
            k: v
            for k, v in self.expected.items()
            if wanted(k, v or found.get(k)) and k.kind not in self.unknown_kinds
        }
        more = {
            k for k, v in found.items() if k not in self.expected and wanted(k, v) and self.answers_for(k)
        }
        context = meaning.Context(found, self.data_keys, categories or {}, meaning.roles_of(self.expected))
        judgement = Judgement([])
        for key in sorted(set(expected) | more, key=catalog.sort_key):
            declared = key in expected
            want, have = expected.get(key), found.get(key)
            weight = meaning.weigh(key, want, have, context, declared)
            if weight.verdict != meaning.SAME:
                judgement.add(
                    weight, Difference(key, want, have, catalog.difference(key, want, have, declared))
                )
        kinds = {k.kind for k in found if wanted(k, found[k])}
        judgement.unjudged = [NEWER_KINDS[kind] for kind in sorted(kinds & self.unknown_kinds)]
        return judgement

    def answers_for(self, key: Key) -> bool:
        """Whether an object nothing declares is the deployment's business: on a table it
        judges, or the database's own (a setting, an event trigger: with a before-image to
        compare with)."""
        if key.kind in self.unknown_kinds:
            return False
        if key.kind in DATABASE_KINDS:
            return self.before is not None
        return key.table in self.judged_tables


@dataclass(frozen=True)
class Difference:
    """One fact that differs: expected `want` (None: absent), found `have`, as a line."""

    key: Key
    want: str | None
    have: str | None
    line: str


@dataclass
class Judgement:
    """The differences found: failures, those allowed by name (--allow), those noted as
    harmless, those left to behaviour, and the kinds the before-image predates."""

    lines: list[str]
    allowed: list[str] = field(default_factory=list)
    noted: list[str] = field(default_factory=list)
    behaviour: list[tuple[Difference, str]] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)

    def add(self, weight: meaning.Weight, difference: Difference) -> None:
        if weight.verdict == meaning.NOTED:
            self.noted.append(f"{difference.line} ({weight.why})")
        elif weight.verdict == meaning.BEHAVIOUR:
            self.behaviour.append((difference, weight.why))
        else:
            self.lines.append(difference.line)

    def allow(self, patterns: Iterable[str]) -> Judgement:
        patterns = list(patterns)
        keep: list[str] = []
        allowed: list[str] = []
        for line in self.lines:
            subject = line.split(": ", 1)[0]
            (allowed if any(fnmatchcase(subject, p) for p in patterns) else keep).append(line)
        return Judgement(keep, allowed, self.noted, self.behaviour, self.unjudged)

    def settle(self, behaviour: Behaviour | None) -> None:
        """Judge the differences left to behaviour: noted where it is the same, failed where
        it differs or cannot be judged."""
        for difference, why in self.behaviour:
            same, shown = (
                behaviour(difference.key, difference.want or "", difference.have or "")
                if behaviour and difference.have
                else (False, "no behaviour judge")
            )
            if same:
                self.noted.append(f"{difference.line} ({why}; judged by behaviour: {shown})")
            else:
                self.lines.append(f"{difference.line} ({why}; judged by behaviour: {shown})")
        self.behaviour = []


def check(
    state: State,
    found: catalog.Image,
    group: str,
    allowed: list[str],
    notes: list[str],
    troubleshoot: Callable[[], list[str]] | None = None,
    categories: dict[str, str] | None = None,
    behaviour: Behaviour | None = None,
) -> None:
    """The checklist group's facts are as expected, or fail listing every difference (and
    what `troubleshoot` finds then: the runbook's troubleshooting queries). Allowed and noted
    differences go to `notes` (the terminal, the report, the record)."""
    judgement = state.judge(found, group, categories)
    judgement.settle(behaviour)
    judgement = judgement.allow(allowed)
    notes += [f"allowed: {line}" for line in judgement.allowed]
    notes += [f"noted: {line}" for line in judgement.noted]
    notes += [f"noted: {what} not checked: the before-image predates them" for what in judgement.unjudged]
    if judgement.lines:
        raise AssertionError("\n".join(judgement.lines + (troubleshoot() if troubleshoot else [])))
