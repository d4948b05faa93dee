"""A migration's name is its identity (the ledger keys by it, the runbook's form imports it):
a chain in which two changes share one, or one takes the name of a kit module, is refused in
one line by every entry point, before anything connects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from migrations.dburl import UsageError
from migrations.steps import EXTRA_ENV, load_all
from tests.conftest import run

SOURCE = Path(__file__).parent / "changes" / "next_change"


def change(root: Path, name: str) -> str:
    """A change package under `root` holding one migration called `name` (the next change's
    new table, renamed): its dotted name."""
    package = root / f"named_{name}"
    (package / "contracts").mkdir(parents=True)
    (package / "__init__.py").write_text(f'AFTER = "deprecate_priority_column"\nMIGRATIONS = ("{name}",)\n')
    (package / "contracts" / "__init__.py").write_text("")
    (package / f"{name}.py").write_text((SOURCE / "add_stock_news_table.py").read_text())
    (package / "contracts" / f"{name}.py").write_text(
        (SOURCE / "contracts" / "add_stock_news_table.py").read_text()
    )
    return package.name


@pytest.mark.parametrize(
    ("name", "taken_by"),
    [("add_product_info_table", "another migration of the chain"), ("plan", "a module of the kit")],
)
def test_a_name_taken_is_refused_by_every_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, taken_by: str
) -> None:
    package = change(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(EXTRA_ENV, package)
    with pytest.raises(UsageError, match=f"the name {name} is taken by {taken_by}; rename it"):
        load_all()
    env = {
        EXTRA_ENV: package,
        "PYTHONPATH": str(tmp_path),
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    for argv in (["-m", "migrations", "status"], ["-m", "verification"]):
        done = run([sys.executable, *argv], env=env, timeout=60)
        said = (done.stdout + done.stderr).strip().splitlines()
        assert done.returncode in (2, 4) and len(said) == 1, said
        assert f"the name {name} is taken by {taken_by}" in said[0], said
