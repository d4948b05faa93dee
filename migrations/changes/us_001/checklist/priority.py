"""US-001's checklist: priority (priority 값이 모두 1인지 확인) — every stocks.priority is 1 while
deprecate_priority_column is applied, every saved original is the value the before-image
holds, and after its rollback every stock has its own priority back.

The column's default, comment and trigger are catalog facts (test_tables, test_triggers).
"""

import json
from collections.abc import Sequence
from typing import Any

import pytest
from psycopg2 import sql

from migrations.image import digest_sql
from verification.checklists import Break
from verification.db import Target
from verification.state import State

CHECKLIST = "priority"
MIGRATION = "deprecate_priority_column"
REWRITE = "stocks.priority"
BACKUP = "stocks_priority_backup"
DISTRIBUTION = "SELECT priority, count(*) FROM public.stocks GROUP BY priority ORDER BY priority NULLS FIRST"

# Saved originals that differ from the before-image, both ways (a stock the application
# deleted since keeps its saved value; a stock it created never had another one).
SAVED_VS_BEFORE = """
WITH was AS (SELECT key AS code, value::int AS priority FROM jsonb_each_text(CAST(:image AS jsonb)))
SELECT format('%s: saved %s, before the deploy %s', coalesce(s.code, w.code),
              coalesce(s.priority::text, 'nothing'), coalesce(w.priority::text, 'unknown'))
FROM public.stocks_priority_backup s
FULL JOIN (SELECT * FROM was WHERE priority IS DISTINCT FROM 1) w ON w.code = s.code
WHERE s.priority IS DISTINCT FROM w.priority
  AND (s.code IS NOT NULL OR EXISTS (SELECT 1 FROM public.stocks t WHERE t.code = w.code))
ORDER BY 1 LIMIT 5
"""


def before(state: State) -> list[Any]:
    """The before-image's digest of the priorities the deploy changes, or skip saying why."""
    taken = state.rewrite_images.get(REWRITE)
    if taken is None or REWRITE not in taken.digests:
        pytest.skip(state.no_before or f"no before-image holds {REWRITE} as it was before {MIGRATION}")
    return taken.digests[REWRITE]


def differences(state: State, target: Target, query: str, found: Sequence[Any]) -> list[str]:
    """Where a digest differs: the rows that differ, from the image's every value (slow, so
    only then); none when the digest differs only by stocks the application deleted."""
    taken = state.rewrite_images[REWRITE]
    assert taken is not None
    values = json.dumps(taken.values(REWRITE))
    return [row[0] for row in target.rows(query, image=values)]


def distribution(target: Target) -> str:
    """The runbook's `SELECT DISTINCT priority` as priority → count (a full scan: failures only)."""
    return ", ".join(f"{p} → {n}" for p, n in target.rows(DISTRIBUTION))


@pytest.mark.applied(MIGRATION)
def test_every_priority_is_1(target: Target) -> None:
    # EXISTS stops at the first offender: cheap on a large table when the deploy is right.
    offender = target.value("SELECT EXISTS (SELECT 1 FROM public.stocks WHERE priority IS DISTINCT FROM 1)")
    assert not offender, f"every stocks.priority should be 1; found {distribution(target)}"


@pytest.mark.applied(MIGRATION)
@pytest.mark.rollback_source  # the rollback gives these back: wrong, only the backup has them right
def test_saved_priorities_are_the_originals(state: State, target: Target) -> None:
    ones_too = sql.SQL("count(*) FILTER (WHERE priority = 1 OR priority IS NULL), ")  # one scan for both
    ones, *found = target.rows(digest_sql(BACKUP, "code", "priority", sql.SQL("true"), ones_too))[0]
    assert ones == 0, f"a saved original priority is never 1 or NULL (it was not changed); found {ones}"
    digest = before(state)
    wrong = differences(state, target, SAVED_VS_BEFORE, found) if list(found) != digest else []
    assert not wrong, "each saved priority should be the stock's value before the deploy; " + "; ".join(wrong)


# How to make these checks fail (the kit's tests apply them at the chain's head).
BREAKS = [
    Break(
        "a priority of 3",
        "ALTER TABLE stocks DISABLE TRIGGER trigger_stocks_priority_deprecated;"
        " UPDATE stocks SET priority = 3 WHERE code = '005930';"
        " ALTER TABLE stocks ENABLE TRIGGER trigger_stocks_priority_deprecated;",
        ("test_changes::test_every_priority_is_1",),
        "3 → 1",
    ),
]
