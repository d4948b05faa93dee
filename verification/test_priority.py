"""Checklist: every stocks.priority is 1 (priority 값이 모두 1인지 확인), and stays 1."""

import pytest

from verification.catalog import Catalog
from verification.db import Target
from verification.expected import PRIORITY_COMMENT_PREFIX_AFTER, PRIORITY_DEFAULT_AFTER

pytestmark = pytest.mark.expect("upgraded")

DISTRIBUTION = "SELECT priority, count(*) FROM stocks GROUP BY priority ORDER BY priority NULLS FIRST"


def distribution(target: Target) -> str:
    """The runbook's `SELECT DISTINCT priority` as priority → count (a full scan: failures only)."""
    return ", ".join(f"{p} → {n}" for p, n in target.rows(DISTRIBUTION))


def test_every_priority_is_1(target: Target) -> None:
    # EXISTS stops at the first offender: cheap on a large table when the deploy is right.
    offender = target.value("SELECT EXISTS (SELECT 1 FROM stocks WHERE priority IS DISTINCT FROM 1)")
    assert not offender, f"every stocks.priority should be 1; found {distribution(target)}"


def test_priority_default_is_1(catalog: Catalog) -> None:
    got = catalog.columns("stocks")["priority"]["default"]
    assert got == PRIORITY_DEFAULT_AFTER, f"stocks.priority should default to 1, found {got or 'nothing'}"


def test_priority_comment_says_deprecated(catalog: Catalog) -> None:
    got = catalog.columns("stocks")["priority"]["comment"] or ""
    assert got.startswith(PRIORITY_COMMENT_PREFIX_AFTER), (
        f"the comment on stocks.priority should start with {PRIORITY_COMMENT_PREFIX_AFTER}, found {got!r}"
    )


def test_priority_column_is_kept(catalog: Catalog) -> None:
    assert "priority" in catalog.columns("stocks"), "stocks.priority should still exist (API compatibility)"
