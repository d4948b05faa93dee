"""How a rewriting migration's batches may be shared among sessions: its key range, cut where
batches end, so that each session walks its own part (the runner's `--workers`).

A data phase of a migration that declares one rewrite (`rewrites=` in its contract, with the
value it writes) walks that column's table by its key, keyset by `%(after)s` (as US-001's
`deprecate_priority_column` does). The cuts are the last keys of whole batches, so that the
parts meet without overlap; a part ends at the first batch reaching its cut (the database
compares, in the column's own order). Once every part is done, one query proves no row is
left unwritten; else one more walk over everything finishes it.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from migrations.contract import Rewrite

MIN_BATCHES_PER_WORKER = 10  # below that, one session is as fast: small tables are walked whole


def splittable(rewrites: tuple[Rewrite, ...]) -> Rewrite | None:
    """The rewrite whose key the batches walk, if the phase may be shared (one rewrite, of a
    known value)."""
    return rewrites[0] if len(rewrites) == 1 and rewrites[0].writes is not None else None


def ranges(cur: Cursor, rw: Rewrite, batch_size: int, workers: int) -> list[tuple[Any, Any]]:
    """(after, stop) of each part: None, None for the whole table; else cuts at batch ends."""
    table, key = sql.Identifier("public", rw.table), sql.Identifier(rw.key)
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
    rows = int((cur.fetchone() or (0,))[0])
    batches = rows // batch_size
    parts = min(workers, batches // MIN_BATCHES_PER_WORKER)
    if parts < 2:
        return [(None, None)]
    cuts = []
    for i in range(1, parts):
        offset = round(batches * i / parts) * batch_size - 1  # the last key of a batch
        cur.execute(
            sql.SQL("SELECT {k} FROM {t} ORDER BY {k} OFFSET %s LIMIT 1").format(k=key, t=table), (offset,)
        )
        row = cur.fetchone()
        if row is not None and row[0] not in cuts:
            cuts.append(row[0])
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def past(rw: Rewrite) -> sql.Composed:
    """Whether a batch that ended at %(last)s reached the part's cut %(stop)s (in the key's order)."""
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} WHERE {k} = %(last)s AND {k} >= %(stop)s)").format(
        t=sql.Identifier("public", rw.table), k=sql.Identifier(rw.key)
    )


def any_left(cur: Cursor, rw: Rewrite) -> bool:
    """Whether a row is left that the batches did not write."""
    cur.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} WHERE {c}::text IS DISTINCT FROM {v})").format(
            t=sql.Identifier("public", rw.table), c=sql.Identifier(rw.column), v=sql.Literal(rw.writes)
        )
    )
    return bool((cur.fetchone() or (False,))[0])
