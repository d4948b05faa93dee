"""Checklist: indexes (인덱스 생성 확인): name, columns in order, DESC where due."""

import pytest

from verification.catalog import Catalog
from verification.expected import NEW_TABLES, Index

pytestmark = pytest.mark.expect("upgraded")
INDEXES = [(t.name, i) for t in NEW_TABLES for i in t.indexes]
IDS = [i.name for _, i in INDEXES]


@pytest.mark.parametrize(("table", "index"), INDEXES, ids=IDS)
def test_index_columns(catalog: Catalog, table: str, index: Index) -> None:
    got = tuple(catalog.named("index", table, index.name)["column_names"])
    assert got == index.columns, f"index {index.name} should be on {index.columns}, found {got}"


@pytest.mark.parametrize(("table", "index"), INDEXES, ids=IDS)
def test_index_sort_order(catalog: Catalog, table: str, index: Index) -> None:
    sorting = catalog.named("index", table, index.name).get("column_sorting", {})
    got = tuple(col for col, flags in sorting.items() if "desc" in flags)
    assert got == index.desc, (
        f"index {index.name} should sort {index.desc or 'no column'} DESC, found {got or 'none'} DESC"
    )
