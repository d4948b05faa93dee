"""A rollback keeps the application's writes made during it.

Guarantee: while `downgrade` rolls back deprecate_priority_column, a priority the application
writes (or a stock it creates) stands: no restoring batch overwrites it, and verification
`--to base` expects it (the runner notes it in the image of just before the migration). The
rule for what a write means:
- committed before the rollback's first phase (the deprecation's trigger pinned it to 1): the
  deprecated 1, which the rollback undoes (the original comes back);
- committed during the rollback: the application's new value, kept;
- a write of the value the row already holds (1 on a row not yet restored) is no new value;
- a write that waits for the rollback's last phase (its short ACCESS EXCLUSIVE lock) lands
  after the rollback: kept too, and like any later write verification names it as changed.

A writer (its own connection) runs while the runner is paused at each hook point of each
phase of the rollback; one blocked by a lock the runner holds finishes after it.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import pytest

from migrations import deprecate_priority_column
from migrations.dburl import libpq_params
from migrations.steps import Ddl
from tests.conftest import US001_HEAD, Db, ledger
from tests.helpers import BATCH, paused

NAME = "deprecate_priority_column"
WAIT_S = 60  # a hang guard only: each writer either commits or waits for a lock at once


def rollback_points() -> list[str]:
    """Every hook point of every phase of the rollback, batches 1 and 3 of the data phase."""
    points: list[str] = []
    for index, phase in enumerate(deprecate_priority_column.DOWNGRADE):
        points.append(f"before:{NAME}:down:{index}")
        if isinstance(phase, Ddl):
            points.append(f"inside:{NAME}:down:{index}")
        else:
            points += [f"inside-batch:{NAME}:{n}" for n in (1, 3)] + [f"after-batch:{NAME}:1"]
    return points


LAST_PHASE = f"inside:{NAME}:down:{len(deprecate_priority_column.DOWNGRADE) - 1}"


@dataclass
class Write:
    """One write of the application, on its own connection, in a thread."""

    db: Db
    statement: str
    params: tuple[Any, ...]
    committed: Any = None  # the value the committed write left (RETURNING priority)
    error: BaseException | None = None
    pid: int = 0
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.conn = psycopg2.connect(**libpq_params(self.db.url, statement_timeout=f"{WAIT_S}s"))
        self.conn.autocommit = True
        self.pid = self.conn.get_backend_pid()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.statement, self.params)
                self.committed = cur.fetchone()[0]
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc
        finally:
            self.conn.close()

    def done(self) -> Any:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), f"the write {self.params} never ended"
        assert self.error is None, f"the application's write failed: {self.error}"
        return self.committed


def settle(db: Db, writes: list[Write]) -> None:
    """Until every write has committed or waits for a lock (one the paused runner holds)."""
    for _ in range(WAIT_S * 50):
        waiting = {
            pid for (pid,) in db.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        }
        if all(not w.thread.is_alive() or w.pid in waiting for w in writes):
            return
        threading.Event().wait(0.02)
    raise AssertionError("a write neither ended nor waited for a lock")


def update(db: Db, code: str, value: int) -> Write:
    return Write(db, "UPDATE stocks SET priority = %s WHERE code = %s RETURNING priority", (value, code))


def insert(db: Db, code: str, value: int) -> Write:
    return Write(
        db,
        "INSERT INTO stocks (code, name, priority, is_active, created_at, updated_at)"
        " VALUES (%s, 'listed during the rollback', %s, true, now(), now()) RETURNING priority",
        (code, value),
    )


@contextmanager
def rollback_paused(db: Db, point: str) -> Iterator[None]:
    """`downgrade --to base` paused at `point` (the block's writes run then), then finished."""
    with paused(db, "downgrade", "--to", "base", *BATCH, at=point) as run:
        yield
    assert run.returncode == 0, "the rollback failed"


def originals(db: Db) -> dict[str, int]:
    """Each saved stock's priority before the deploy."""
    return dict(db.execute("SELECT code, priority FROM stocks_priority_backup ORDER BY code"))


@pytest.mark.parametrize("point", rollback_points())
def test_writes_during_each_phase_of_the_rollback_survive(deployed_db: Db, point: str) -> None:
    saved = originals(deployed_db)
    codes = sorted(saved)  # 64 a batch: the first in batch 1, the 150th in batch 3, the last in 4
    never_saved = deployed_db.value("SELECT min(code) FROM stocks WHERE code <> ALL(%s)", (codes,))
    targets = {codes[0]: 7, codes[149]: 8, codes[-1]: 9, never_saved: 6}
    before = {**saved, never_saved: 1}
    with rollback_paused(deployed_db, point):
        writes = {code: update(deployed_db, code, value) for code, value in targets.items()}
        writes["NEW001"] = insert(deployed_db, "NEW001", 4)
        settle(deployed_db, list(writes.values()))
    expected = {}
    for code, write in writes.items():
        left = write.done()
        # pinned to 1 by the deprecation (before the rollback began): the original comes back
        expected[code] = before.get(code, 1) if left == 1 else left
    after = dict(
        deployed_db.execute("SELECT code, priority FROM stocks WHERE code = ANY(%s)", (list(writes),))
    )
    assert after == expected
    assert ledger(deployed_db) == {}
    result = deployed_db.verify("--to", "base")
    if point != LAST_PHASE:
        assert result.returncode == 0, result.output
        return
    # the writes waited for the last phase's lock: after the rollback, named as changed since
    assert result.failed == {"test_rewrites::test_rewritten_values_are_as_before[stocks.priority]"}
    named = set(re.findall(r"(\w+): \d+, before the deploy", result.output))
    assert named == set(targets), result.output


def test_a_write_of_1_is_a_new_value_only_once_the_row_is_restored(deployed_db: Db) -> None:
    saved = originals(deployed_db)
    restored, pending = sorted(saved)[0], sorted(saved)[-1]  # in batch 1, and in the last batch
    with rollback_paused(deployed_db, f"after-batch:{NAME}:1"):
        writes = [update(deployed_db, restored, 1), update(deployed_db, pending, 1)]
        settle(deployed_db, writes)
    assert [w.done() for w in writes] == [1, 1]
    after = dict(
        deployed_db.execute("SELECT code, priority FROM stocks WHERE code IN %s", ((restored, pending),))
    )
    assert after == {restored: 1, pending: saved[pending]}
    assert deployed_db.verify("--to", "base").returncode == 0


def test_a_rollback_killed_after_writes_finishes_and_keeps_them(deployed_db: Db) -> None:
    saved = originals(deployed_db)
    first, last = sorted(saved)[0], sorted(saved)[-1]
    with paused(deployed_db, "downgrade", "--to", "base", *BATCH, at=f"after-batch:{NAME}:1") as run:
        update(deployed_db, first, 7).done()
        run.send_signal(signal.SIGKILL)
        run.wait(60)
    update(deployed_db, last, 9).done()  # between the kill and the next run: still the rollback's
    assert ledger(deployed_db)[NAME] == "reverting"
    assert deployed_db.cli("downgrade", "--to", "base", *BATCH).returncode == 0
    after = dict(deployed_db.execute("SELECT code, priority FROM stocks WHERE code IN %s", ((first, last),)))
    assert after == {first: 7, last: 9}
    assert deployed_db.verify("--to", "base").returncode == 0


def test_an_upgrade_after_a_killed_rollback_saves_the_applications_values(deployed_db: Db) -> None:
    """The application's value written during the stopped rollback becomes the original that
    the deprecation saves: pinned to 1 again, and given back by the next rollback."""
    saved = originals(deployed_db)
    first, last = sorted(saved)[0], sorted(saved)[-1]
    with paused(deployed_db, "downgrade", "--to", "base", *BATCH, at=f"after-batch:{NAME}:1") as run:
        update(deployed_db, first, 7).done()
        update(deployed_db, last, 9).done()
        run.send_signal(signal.SIGKILL)
        run.wait(60)
    assert deployed_db.cli("upgrade", "--to", US001_HEAD, *BATCH).returncode == 0
    assert deployed_db.value("SELECT count(*) FROM stocks WHERE priority <> 1") == 0
    assert originals(deployed_db)[first] == 7 and originals(deployed_db)[last] == 9
    assert deployed_db.cli("downgrade", "--to", "base", *BATCH).returncode == 0
    after = dict(deployed_db.execute("SELECT code, priority FROM stocks WHERE code IN %s", ((first, last),)))
    assert after == {first: 7, last: 9}


def test_a_write_under_way_when_a_batch_reaches_its_row_is_kept(deployed_db: Db) -> None:
    """The batch waits for the write's row lock, then reads the originals as the write left
    them: the write's value stands (no batch restores an original read before it committed)."""
    saved = originals(deployed_db)
    first = sorted(saved)[0]
    app = psycopg2.connect(**libpq_params(deployed_db.url))
    try:
        with paused(deployed_db, "downgrade", "--to", "base", *BATCH, at=f"before:{NAME}:down:1") as run:
            with app.cursor() as cur:  # the application's transaction, open on the batch's first row
                cur.execute("UPDATE stocks SET priority = 7 WHERE code = %s", (first,))
            assert run.stdin is not None
            run.stdin.write("go\n")
            run.stdin.flush()
            runner = f"azak-db-migrations:{run.pid}"
            for _ in range(WAIT_S * 50):  # until the batch waits for the application's row lock
                if deployed_db.value(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (runner,),
                ):
                    break
                threading.Event().wait(0.02)
            else:
                raise AssertionError("the batch never waited for the application's row")
            app.commit()
    finally:
        app.close()
    assert run.returncode == 0
    assert deployed_db.value("SELECT priority FROM stocks WHERE code = %s", (first,)) == 7
    assert deployed_db.verify("--to", "base").returncode == 0
