"""Checklist: the rows hold what the catalog claims, and no table lost its rows.

On every table a migration creates or changes, and every table whose foreign key points at
one of them, each validated CHECK and foreign key, NOT NULL column, declared width and
unique key is tried on the rows: every row up to --scan-rows per table (default 5,000),
the first that many in storage order beyond (then noted). One statement per table.

Rows lost: each table the before-image counted (exactly up to a million rows, else the
planner's estimate) must keep more than 1 - --max-row-loss of them (default 0.5): the
application's own deletes pass, a table emptied or halved fails — after an upgrade and after
a rollback alike. Each table's rows now are estimated from a sample of about a hundred of its
pages (TABLESAMPLE SYSTEM: the rows this transaction sees, whatever the statistics say; all
of a small table's), and counted exactly, by a scan that stops at the number it needs, only
where the estimate comes within a quarter of the loss allowed.
"""

from __future__ import annotations

import math

import pytest
from psycopg2 import sql

from migrations import catalog
from migrations.catalog import Key
from verification import rows
from verification.db import Target
from verification.report import note
from verification.state import State

CHECKLIST = "data"

# Each table's pages as they are on disk now (no statistics: they may be reset, stale, or
# count rolled-back writes), and whether it is partitioned (its rows live in its partitions).
PAGES = """
SELECT c.relname, pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int,
       c.relkind = 'p'
FROM pg_catalog.pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:tables)
"""
SAMPLE_PAGES = 100  # pages a table's rows are estimated from: about 10% either way
MARGIN = 1.25  # an estimate this close to the loss allowed is counted exactly


def test_rows_hold_what_the_catalog_claims(
    request: pytest.FixtureRequest, state: State, found: catalog.Image, target: Target
) -> None:
    limit = request.config.getoption("--scan-rows")
    claims = {table: rows.claims(found, [table]) for table in state.touched(found)}
    claims = {table: claimed for table, claimed in claims.items() if claimed}
    statements = [rows.statement(table, claimed, limit) for table, claimed in claims.items()]
    found_rows = target.rows(sql.SQL(" UNION ALL ").join(statements)) if statements else []
    broken, partial = [], []
    for table, scanned, counts in found_rows:
        if limit and scanned >= limit:
            partial.append(table)
        broken += [broke(table, claim, n) for claim, n in zip(claims[table], counts, strict=True) if n]
    if partial:
        note(
            request,
            [f"noted: {', '.join(partial)}: only the first {limit:,} rows of each tried (--scan-rows)"],
        )
    assert not broken, "the rows should hold what the catalog claims: " + "; ".join(broken)


def broke(table: str, claim: rows.Claim, count: int) -> str:
    """What the rows say against the catalog's word."""
    if claim.grouped:
        values = "key value" + ("s" if count != 1 else "")
        return f"{table}: {count} {values} repeated although the catalog says {claim.said}"
    return (
        f"{table}: {count} row{'s break' if count != 1 else ' breaks'} what the catalog says ({claim.said})"
    )


def test_no_table_lost_most_of_its_rows(
    request: pytest.FixtureRequest, state: State, found: catalog.Image, target: Target
) -> None:
    before = state.before
    if before is None:
        pytest.skip(state.no_before)
    if before.row_counts is None:
        pytest.skip("the before-image has no row counts (an older kit took it)")
    may_lose = request.config.getoption("--max-row-loss")
    counted = {
        t: n
        for t, n in before.row_counts.items()
        if n and state.expects(Key("table", t)) and Key("table", t) in found
    }
    needed = {t: math.ceil(n * (1 - may_lose) - 1e-9) for t, n in counted.items()}
    needed = {t: n for t, n in needed.items() if n > 0}
    pages = {t: (p, partitioned) for t, p, partitioned in target.rows(PAGES, tables=sorted(needed))}
    estimates = estimate(target, {t: p for t, (p, partitioned) in pages.items() if not partitioned})
    lost = []
    for table, up_to in sorted(needed.items()):
        if estimates.get(table, 0) >= up_to * MARGIN:
            continue
        if count(target, table, up_to) < up_to:
            now, had = count(target, table), counted[table]
            lost.append(f"{table} has {now:,} rows, {had:,} before the deployment ({1 - now / had:.0%} lost)")
    assert not lost, (
        f"no table should lose more than {may_lose:.0%} of its rows (--max-row-loss): " + "; ".join(lost)
    )


def estimate(target: Target, pages: dict[str, int]) -> dict[str, float]:
    """The rows each table holds now, from a sample of about SAMPLE_PAGES of its pages (every
    page of a small one): what this transaction sees, dead rows left out. One statement."""
    parts = [
        sql.SQL(
            "SELECT {name}, count(*) * 100.0 / {share}"
            " FROM {table} TABLESAMPLE SYSTEM ({share}) REPEATABLE (0)"
        ).format(
            name=sql.Literal(table),
            share=sql.Literal(min(100.0, 100.0 * SAMPLE_PAGES / n)),
            table=sql.Identifier("public", table),
        )
        for table, n in pages.items()
        if n > 0
    ]
    found = target.rows(sql.SQL(" UNION ALL ").join(parts)) if parts else []
    return {table: float(rows_now) for table, rows_now in found}


def count(target: Target, table: str, up_to: int | None = None) -> int:
    """A table's rows, exactly; a scan that stops at `up_to` when given."""
    limit = sql.SQL(" LIMIT {}").format(sql.Literal(up_to)) if up_to is not None else sql.SQL("")
    query = sql.SQL("SELECT count(*) FROM (SELECT FROM {}{}) s").format(
        sql.Identifier("public", table), limit
    )
    return int(target.value(query))
