"""Properties of the priority step: whatever the priorities, codes, batch size and number of
sessions sharing the batches, the rollback gives every stock its own priority back, also
after a crash between batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migrations import faults
from migrations.changes import appdb
from migrations.runner import Settings
from tests.conftest import FAST, Db

# Codes of varied length and alphabet, so keyset order by `code` is really exercised.
codes = st.text(alphabet="0123456789AZaz-", min_size=0, max_size=10)  # "" included
stocks = st.lists(
    st.tuples(codes, st.integers(min_value=-3, max_value=9)), max_size=120, unique_by=lambda row: row[0]
)
batch_sizes = st.integers(min_value=1, max_value=40)
workers = st.integers(min_value=1, max_value=4)  # sessions sharing the batches of a table large enough
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Crash(Exception):
    """Stands for kill -9 at a fault point: the open transaction is lost with the connection."""


@pytest.fixture
def stocks_db(empty_db: Db) -> Iterator[Db]:
    """A database with the application's empty tables; each example fills `stocks` anew."""
    empty_db.execute(appdb.SCHEMA)
    yield empty_db


def fill(db: Db, rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
    db.execute("TRUNCATE stocks CASCADE")
    for index, (code, priority) in enumerate(rows, start=1):
        db.execute(
            "INSERT INTO stocks (id, code, name, priority, is_active, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, true, now(), now())",
            (index, code, f"s{index}", priority),
        )
    return db.execute("SELECT code, priority FROM stocks ORDER BY id")


def settings_for(batch_size: int, sessions: int = FAST.workers) -> Settings:
    return Settings(**{**FAST.__dict__, "batch_size": batch_size, "workers": sessions})


@PROPERTY
@given(rows=stocks, batch_size=batch_sizes, sessions=workers)
@example(rows=[(f"{i:04d}", i % 5) for i in range(120)], batch_size=3, sessions=3)  # 3 sessions surely
def test_priority_rollback_is_lossless(
    stocks_db: Db, rows: list[tuple[str, int]], batch_size: int, sessions: int
) -> None:
    before = fill(stocks_db, rows)
    with stocks_db.runner(settings_for(batch_size, sessions)) as r:
        r.upgrade()
        said = r.out.getvalue()  # type: ignore[attr-defined]
        shared = min(sessions, len(rows) // batch_size // 10)
        assert f"({max(shared, 1)} session" in said, said
        assert stocks_db.value("SELECT count(*) FROM stocks WHERE priority IS DISTINCT FROM 1") == 0
        saved = stocks_db.value("SELECT count(*) FROM stocks_priority_backup")
        assert saved == sum(1 for _, p in rows if p != 1)
        r.downgrade("base")
    assert stocks_db.execute("SELECT code, priority FROM stocks ORDER BY id") == before


@PROPERTY
@given(
    rows=stocks,
    batch_size=batch_sizes,
    crash_at=st.integers(min_value=1, max_value=8),
    direction=st.sampled_from(["upgrade", "downgrade"]),
    moment=st.sampled_from(["inside-batch", "after-batch"]),
)
def test_crash_between_or_inside_batches_resumes_losslessly(
    stocks_db: Db,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[str, int]],
    batch_size: int,
    crash_at: int,
    direction: str,
    moment: str,
) -> None:
    before = fill(stocks_db, rows)
    tuned = settings_for(batch_size)
    point = f"{moment}:deprecate_priority_column:{crash_at}"

    seen: list[str] = []

    def crash(where: str) -> None:
        seen.append(where)
        if where == point:
            raise Crash(where)

    if direction == "downgrade":
        with stocks_db.runner(tuned) as r:
            r.upgrade()
    monkeypatch.setattr(faults, "fault", crash)
    r = stocks_db.runner(tuned)
    try:
        r.upgrade() if direction == "upgrade" else r.downgrade("base")
    except Crash:
        pass
    finally:
        r.close()  # the connection dies with the process: its open transaction is rolled back
    monkeypatch.undo()
    # the hook is really there: a batch fault point of this kind was met, and the run died at
    # ours unless it had fewer batches than crash_at
    reached = [int(p.rsplit(":", 1)[1]) for p in seen if p.startswith(f"{moment}:deprecate_priority_column:")]
    assert reached, f"no {moment} fault point was met: {seen}"
    assert (point in seen) == (crash_at <= max(reached)), seen
    with stocks_db.runner(tuned) as r:
        if direction == "upgrade":
            r.upgrade()  # resumes
            assert stocks_db.value("SELECT count(*) FROM stocks WHERE priority IS DISTINCT FROM 1") == 0
        r.downgrade("base")
    assert stocks_db.execute("SELECT code, priority FROM stocks ORDER BY id") == before
    assert stocks_db.value("SELECT to_regclass('stocks_priority_backup') IS NULL")
