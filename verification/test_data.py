"""Checklist: the rows hold what the catalog claims, and no table lost its rows.

On every table a migration creates or changes, and every table whose foreign key points at
one of them, each validated CHECK and foreign key, NOT NULL column, declared width and
unique key is tried on the rows: every row up to --scan-rows per table (default 20,000),
the first that many in storage order beyond (then noted). One statement per table.

Rows lost: each table the before-image counted (exactly up to a million rows, else the
planner's estimate) must keep more than 1 - --max-row-loss of them (default 0.5): the
application's own deletes pass, a table emptied or halved fails — after an upgrade and after
a rollback alike. The server's estimates (reltuples, and the live-row statistics once they
have seen rows inserted or deleted, or the table vacuumed or analyzed) are read first; a
table is counted, by a scan that stops at the number it needs, only where an estimate
suggests a loss or none can be trusted (a table just truncated, never analyzed).
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

ESTIMATES = """
SELECT c.relname, CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN c.reltuples::bigint END,
       CASE WHEN s.n_tup_ins + s.n_tup_del > 0
                 OR coalesce(s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum) IS NOT NULL
            THEN s.n_live_tup END
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:tables)
"""


def test_rows_hold_what_the_catalog_claims(
    request: pytest.FixtureRequest, state: State, found: catalog.Image, target: Target
) -> None:
    limit = request.config.getoption("--scan-rows")
    broken, partial = [], []
    for table in state.touched(found):
        claims = rows.claims(found, [table])
        if not claims:
            continue
        scanned, *counts = target.rows(rows.statement(table, claims, limit))[0]
        if limit and scanned >= limit:
            partial.append(table)
        broken += [broke(table, claim, n) for claim, n in zip(claims, counts, strict=True) if n]
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
    lost = []
    for table, estimate, live in target.rows(ESTIMATES, tables=sorted(counted)):
        had = counted[table]
        needed = math.ceil(had * (1 - may_lose) - 1e-9)
        trusted = [e for e in (estimate, live) if e is not None]
        if needed <= 0 or (trusted and min(trusted) >= needed):
            continue
        query = sql.SQL("SELECT count(*) FROM (SELECT FROM {} LIMIT {}) s").format(
            sql.Identifier("public", table), sql.Literal(needed)
        )
        if target.value(query) < needed:
            now = target.value(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))
            lost.append(f"{table} has {now:,} rows, {had:,} before the deployment ({1 - now / had:.0%} lost)")
    assert not lost, (
        f"no table should lose more than {may_lose:.0%} of its rows (--max-row-loss): " + "; ".join(lost)
    )
