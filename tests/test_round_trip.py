"""Upgrade then downgrade leaves the database exactly as it was: schema, rows, priorities."""

import pytest

from migrations import ORDER
from tests.conftest import Db


def test_up_down_consistency(app_db: Db) -> None:
    before = app_db.snapshot()
    with app_db.runner() as runner:
        runner.upgrade()
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


@pytest.mark.parametrize("last", ORDER)
def test_every_prefix_round_trips(app_db: Db, last: str) -> None:
    before = app_db.snapshot()
    with app_db.runner() as runner:
        runner.upgrade(to=last)
        assert [n for n, state in runner.status() if state.startswith("applied")] == list(
            ORDER[: ORDER.index(last) + 1]
        )
        runner.downgrade("base")
    assert app_db.snapshot().differences(before) == []


def test_step_by_step_rollback_restores_each_state(app_db: Db) -> None:
    states = [app_db.snapshot()]
    with app_db.runner() as runner:
        for name in ORDER:
            runner.upgrade(to=name)
            states.append(app_db.snapshot())
        for index in range(len(ORDER) - 1, -1, -1):
            runner.downgrade(ORDER[index - 1] if index else "base")
            assert app_db.snapshot().differences(states[index]) == [], f"after rolling back {ORDER[index]}"


def test_upgrade_after_rollback_works(app_db: Db) -> None:
    with app_db.runner() as runner:
        runner.upgrade()
        first = app_db.snapshot()
        runner.downgrade("base")
        runner.upgrade()
    assert app_db.value("SELECT count(*) FROM stocks WHERE priority <> 1") == 0
    assert app_db.snapshot().schema == first.schema


def test_second_upgrade_changes_nothing(deployed_db: Db) -> None:
    before = deployed_db.snapshot()
    with deployed_db.runner() as runner:
        assert runner.upgrade() == []
    assert deployed_db.snapshot().differences(before) == []


def test_rollback_restores_every_priority(app_db: Db) -> None:
    before = app_db.execute("SELECT code, priority FROM stocks ORDER BY code")
    with app_db.runner() as runner:
        runner.upgrade()
        assert app_db.value("SELECT count(DISTINCT priority) FROM stocks") == 1
        runner.downgrade("base")
    assert app_db.execute("SELECT code, priority FROM stocks ORDER BY code") == before
