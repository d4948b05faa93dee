"""Drift: the catalog against what the applied migrations declare, before anything changes;
and which pending migrations someone already made by hand, exactly (adoptable)."""

from __future__ import annotations

from migrations import catalog, ledger, meaning
from migrations.contract import fold
from migrations.dburl import DeployError
from migrations.steps import Migration

PARTIAL = "only part of its tables exist: {} is missing"


def check(
    migrations: list[Migration], entries: dict[str, ledger.Entry], found: catalog.Image
) -> list[Migration]:
    """Stop on any difference of the catalog (`found`) from the contracts at the ledger head;
    return the pending migrations whose objects someone already made exactly as their
    contracts say (to be adopted)."""
    applied = [m for m in migrations if m.name in entries and entries[m.name].state == "applied"]
    unfinished = [m for m in migrations if m.name in entries and m not in applied]
    in_flux = {k for m in unfinished for k in m.contract.keys}
    adoptable: list[Migration] = []
    problems: list[str] = []
    for m in migrations:  # in order: a made-by-hand migration may change an earlier fact
        made = [t for t in m.contract.created_tables() if catalog.Key("table", t) in found]
        if m.name in entries or not made:
            continue
        if m.has_data_phases:
            problems.append(f"{m.name}: {', '.join(made)} exist, but it changes rows: cannot be adopted")
        elif not judge([*applied, *adoptable, m], found, in_flux, missing=PARTIAL):
            adoptable.append(m)
        else:
            head = fold(c.contract for c in [*applied, *adoptable])
            problems += judge([m], found, set(), start=head, missing=PARTIAL)
    problems = judge([*applied, *adoptable], found, in_flux) + problems
    if problems:
        raise DeployError(
            "the database differs from the migrations; nothing was changed:\n  " + "\n  ".join(problems)
        )
    return adoptable


def judge(
    migrations: list[Migration],
    found: catalog.Image,
    skip: set[catalog.Key],
    start: dict[catalog.Key, str | None] | None = None,
    missing: str = "the ledger says applied but {} is missing",
) -> list[str]:
    """Differences between the catalog and what `migrations` declare (on top of `start`),
    each line naming the migration that declares the fact: declared facts that differ, and
    anything more on the tables they create. A created table that is missing is one line."""
    expected = fold((m.contract for m in migrations), start)
    owner = {key: m.name for m in migrations for key in m.contract.keys}
    # what only documents or tunes (a comment, storage parameters, a plain index) is no drift
    context = meaning.Context(found, frozenset(k for m in migrations for k in m.contract.data))
    problems: list[str] = []
    for m in migrations:
        gone = [t for t in m.contract.created_tables() if catalog.Key("table", t) not in found]
        problems += [f"{m.name}: {missing.format(table)}" for table in gone]
        mine = {k: v for k, v in expected.items() if owner.get(k) == m.name and k not in skip}
        mine = {k: v for k, v in mine.items() if k.table not in gone}
        problems += [f"{m.name}: {line}" for line in meaning.differences(mine, found, context)]
        created = set(m.contract.created_tables()) - set(gone)
        problems += [
            f"{m.name}: {key}: not in the contracts, found {value!r}"
            for key, value in sorted(found.items(), key=lambda kv: catalog.sort_key(kv[0]))
            if key.table in created
            and key not in expected
            and key not in skip
            and meaning.weigh(key, None, value, context, declared=False).verdict != meaning.NOTED
        ]
    return problems
