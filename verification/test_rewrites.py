"""Checklist: after a complete rollback, every value a migration rewrote is back, as it was just
before that migration ran (under the checklist item its change names, `checklists.rewritten_item`).

Judged for every column any migration of the chain declares it rewrites (`rewrites=` in its
contract), against the image the kit kept just before that migration. A passing run reads
one digest per column; only a difference reads the image's every row to name the rows.
"""

import json

import pytest
from psycopg2 import sql

from migrations.contract import Rewrite
from migrations.image import changed_rows, digest_sql
from migrations.steps import load_all, rewrites
from verification import checklists
from verification.db import Target
from verification.state import State


def now_vs_before(rw: Rewrite) -> sql.Composed:
    """Rows whose value differs from the image's (a row deleted since is not judged)."""
    return sql.SQL(
        "WITH was AS (SELECT key, value FROM jsonb_each_text(CAST(:image AS jsonb)))"
        " SELECT format('%s: %s, before the deploy %s', w.key, coalesce(t.{c}::text, 'NULL'),"
        " coalesce(w.value, 'NULL'))"
        " FROM was w JOIN {t} t ON t.{k}::text = w.key"
        " WHERE t.{c}::text IS DISTINCT FROM w.value ORDER BY 1 LIMIT 5"
    ).format(c=sql.Identifier(rw.column), k=sql.Identifier(rw.key), t=sql.Identifier("public", rw.table))


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(
            rw,
            marks=[
                pytest.mark.applied(m.name, not_=True),
                pytest.mark.checklist(checklists.rewritten_item(m)),
            ],
        )
        for rw, m in rewrites(load_all()).items()
    ],
    ids=str,
)
def test_rewritten_values_are_as_before(state: State, target: Target, rewrite: Rewrite) -> None:
    """Judged where its migration is not applied but did run here (an image was kept just
    before it): a rollback; before it ever ran, the column is the application's alone."""
    taken = state.rewrite_images.get(str(rewrite))
    if taken is None or str(rewrite) not in taken.digests:
        pytest.skip(
            state.no_before or f"{rewrite}: its migration never ran here (no image of just before it)"
        )
    found = target.rows(digest_sql(rewrite.table, rewrite.key, rewrite.column, changed_rows(rewrite)))[0]
    if list(found) == taken.digests[str(rewrite)]:
        return
    values = json.dumps(taken.values(str(rewrite)))
    wrong = [row[0] for row in target.rows(now_vs_before(rewrite), image=values)]
    assert not wrong, f"every {rewrite} should be back as before the deploy; " + "; ".join(wrong)
