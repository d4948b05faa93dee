"""The throwaway next change's own check (collected by `pytest verification` at its head, as
any change's checklist): a headline without a stock is refused. `BREAKS` says how to make it
fail; the kit's tests apply it at the chain's head (tests/test_catches_broken_deployments.py)."""

import pytest

from migrations.catalog import Key
from verification.checklists import Break
from verification.db import Probe, sqlstate

CHECKLIST = "stock news"
NEWS = Key("table", "stock_news")
NOT_NULL = "23502"
INSERT_NEWS = (
    "INSERT INTO stock_news (id, stock_code, headline, published_at) VALUES (:id, NULL, 'probe', now())"
)


@pytest.mark.needs(NEWS)
def test_news_without_a_stock_is_refused(probe: Probe) -> None:
    error = probe.error_of(INSERT_NEWS, id=probe.new_id())
    assert error is not None and sqlstate(error) == NOT_NULL, (
        f"a headline without a stock should be refused (NOT NULL); it was {'taken' if error is None else error}"
    )


BREAKS = [
    Break(
        "stock_news takes a headline without a stock",
        "ALTER TABLE stock_news ALTER COLUMN stock_code DROP NOT NULL;",
        ("test_changes::test_news_without_a_stock_is_refused",),
        "a headline without a stock should be refused (NOT NULL); it was taken",
    )
]
