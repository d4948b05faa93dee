"""The deployment record is the database's history, rendered: `python -m migrations record`
prints the runbook's table (date, environment, executor, action, result, migrations, the
checklist items that failed with the facts named, the reason, the report) of every action,
from whichever directory or machine it was done; every command still adds its row to the
local Markdown file too. A database remembers its environment; an executor comes from
--executor or AZAK_EXECUTOR; an action that never finished says so."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from migrations.lock import LOCK_KEY
from migrations.steps import load_all
from tests.conftest import ROOT, Db, ok
from tests.helpers import a_clone, kit, plain_env, verify

INDEX = "index product_info.idx_product_info_stock_code"


def table(text: str) -> list[list[str]]:
    """The rows of a rendered markdown table, as cells."""
    lines = [ln for ln in text.splitlines() if ln.startswith("| 20")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


def test_actions_from_two_clones_render_as_one_history(app_db: Db, tmp_path: Path) -> None:
    """Deployed from clone A by alice; a failed verification and a rollback with a reason from
    clone B by bob, who names no environment: one history, the failed fact and the reason in
    it; each clone's local record holds its own rows."""
    a, b = a_clone(tmp_path / "a"), a_clone(tmp_path / "b")
    assert kit(a, app_db, "upgrade", "--env-name", "production", "--executor", "alice").returncode == 0
    app_db.execute("DROP INDEX idx_product_info_stock_code")
    assert verify(b, b / "verification", app_db, "--executor", "bob").returncode == 1
    reason = "index missing after the deploy"
    assert (
        kit(b, app_db, "downgrade", "--to", "base", "--executor", "bob", "--reason", reason).returncode == 0
    )
    rendered = subprocess.run(
        [sys.executable, "-m", "migrations", "record", "--db-url", app_db.text_url],
        cwd=tmp_path,  # no clone: the installed kit, its chain's changes importable wherever they live
        env={**plain_env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.startswith(
        "| date | environment | executor | action | result | migrations | failed | reason | report |"
    )
    rows = table(rendered.stdout)
    assert [r[1:5] for r in rows] == [
        ["production", "alice", "upgrade", "passed"],
        ["production", "bob", "verify head", "FAILED"],
        ["production", "bob", "downgrade --to base", "passed"],
    ], rendered.stdout
    assert rows[1][6].startswith(f"indexes: {INDEX}: expected"), rows[1]
    assert rows[2][5] == "rolled back: " + ", ".join(m.name for m in reversed(load_all()))
    assert rows[2][7] == reason
    local_a, local_b = (table((c / "data" / "deployments.md").read_text()) for c in (a, b))
    assert [r[3] for r in local_a] == ["upgrade"]
    assert [(r[1], r[3]) for r in local_b] == [
        ("production", "verify head"),
        ("production", "downgrade --to base"),
    ]
    assert f"reason: {reason}" in local_b[1][5]


def test_a_killed_or_cut_off_command_leaves_a_row_saying_so(deployed_db: Db, tmp_path: Path) -> None:
    """A downgrade killed with kill -9 reads 'interrupted'; one whose database session is
    terminated (pg_terminate_backend) ends FAILED, saying so, in the history and in the local
    record."""
    record = tmp_path / "deployments.md"
    killed = deployed_db.cli(
        "downgrade", "--to", "base", env={"AZAK_FAULT_AT": "after-batch:deprecate_priority_column:1"}
    )
    assert killed.returncode == -9, killed.stderr
    env = {"AZAK_PAUSE_AT": "before:add_financial_ratios_table:down:0", "AZAK_PAUSE_S": "60"}
    argv = [sys.executable, "-m", "migrations", "downgrade", "--to", "base", "--record", str(record)]
    proc = subprocess.Popen(
        [*argv, "--db-url", deployed_db.text_url],
        cwd=ROOT,
        env={**plain_env(), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        deadline = time.monotonic() + 60
        while "paused at" not in proc.stdout.readline() and time.monotonic() < deadline:
            pass
        cut = deployed_db.value(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = %s AND objid = %s AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            LOCK_KEY,
        )
        assert cut == 1
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    lost = "the connection to the database was lost"
    assert proc.returncode == 1 and lost in err, err
    rows = table(ok(deployed_db.cli("record")))
    assert [r[3:5] for r in rows[-2:]] == [
        ["downgrade --to base", "interrupted"],
        ["downgrade --to base", "FAILED"],
    ]
    assert lost in rows[-1][6], rows[-1]
    (local,) = table(record.read_text())
    assert local[3:5] == ["downgrade --to base", "FAILED"] and lost in local[5], local


def test_a_database_remembers_its_environment_and_its_executors(app_db: Db, tmp_path: Path) -> None:
    record = tmp_path / "deployments.md"
    ok(app_db.cli("upgrade", "--env-name", "staging", "--record", str(record)))
    ok(app_db.cli("downgrade", "--to", "base", "--record", str(record), env={"AZAK_EXECUTOR": "carol"}))
    assert app_db.verify("--to=base", f"--record={record}").returncode == 0
    local = table(record.read_text())
    assert [r[1] for r in local] == ["staging", "staging", "staging"], local
    assert local[1][2] == "carol"
    rows = table(ok(app_db.cli("record")))
    assert [(r[1], r[3]) for r in rows] == [
        ("staging", "upgrade"),
        ("staging", "downgrade --to base"),
        ("staging", "verify base"),
    ]
    assert rows[1][2] == "carol"
