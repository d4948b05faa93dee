"""Attacks of a third hostile review, each now a guarantee: a `--before` file that is no image
or a gzip bomb is one usage line in bounded memory; a kill while the before-image is written
leaves no half image; a rollback names tables it did not make and leaves them. A test's
docstring tells the attack as it was found."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, Db


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- --before FILE with a hostile file ----------------------------------------------------------


def test_a_before_file_that_is_not_an_image_is_one_usage_line_not_eleven_failed_checks(
    deployed_db: Db, tmp_path: Path
) -> None:
    """`pytest verification --before notes.txt` (a wrong file: not gzip) on a correct
    deployment: every check that needs the state errors at setup, the same UsageError eleven
    times, the run ends `FAILED: 1 passed, 11 failed` and the deployment record gets a FAILED
    row, blaming the database for the operator's typo. Bad input should be one line, before
    any check, like an unknown `--to` or a database without `stocks` (exit 4)."""
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"this is not a before-image\n" * 10)
    run = deployed_db.verify("--before", str(bad), "--record", "none", tmp=tmp_path)
    assert not run.failed, f"the bad file was blamed on {len(run.failed)} checks: {sorted(run.failed)}"
    assert run.returncode == 4, run.output
    assert run.output.count("is not a before-image file") == 1, run.output


def test_a_before_file_with_one_huge_line_is_refused_in_bounded_memory(
    deployed_db: Db, tmp_path: Path
) -> None:
    """A 600 MiB single line gzip'd to well under a megabyte, passed as `--before`:
    `image.load` reads the whole first line into memory and hands it to json.loads (a 300 KB
    file took the verification to 675 MB RSS by hand). The restore refuses a gzip bomb; the
    before-image reader does not. Under a 1 GiB address-space limit the run should still end
    with one line naming the file, not a MemoryError (or worse, the OOM killer)."""
    bomb = tmp_path / "azak_image_bomb.json.gz"
    chunk = b"x" * (1 << 20)
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(b'{"database": "')
        for _ in range(600):
            out.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    limit = 1 << 30
    code = (
        "import resource, sys, pytest;"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}));"
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "verification", "-q", "-p", "no:cacheprovider"]
    argv += ["-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin"]  # as run_verification
    argv += ["--before", str(bomb), "--record", "none"]
    env = {**os.environ, "DATABASE_URL": deployed_db.text_url, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert "MemoryError" not in output, output[-3000:]
    lines = output.strip().splitlines()
    assert done.returncode == 4 and len(lines) == 1, output[-3000:]  # a usage error, before any check
    assert lines[0].startswith(f"ERROR: {bomb} is not a before-image file"), lines


# -- kill -9 while the before-image is written ----------------------------------------------------


def test_kill_while_the_before_image_is_written_leaves_no_half_image_behind(app_db: Db) -> None:
    """`kill -9` of `upgrade` while it keeps the before-image used to leave a half-written
    `.image-XXXX.partial` file for good. The image is now kept in the registry, in one
    transaction: a kill leaves no image and no deployment; the rerun keeps a whole one,
    verifies and rolls back."""
    killed = app_db.cli("upgrade", env={"AZAK_FAULT_AT": "inside:before-image"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    left = app_db.value(
        "SELECT (SELECT count(*) FROM azak_registry.images) + (SELECT count(*) FROM azak_registry.deployments)"
        " + (SELECT count(*) FROM azak_registry.rewrite_values)"
    )
    assert left == 0, f"{left} rows of a half-kept image left in the registry"
    ok(app_db.cli("upgrade"))
    assert app_db.value("SELECT count(*) FROM azak_registry.images") == 2  # at base; before the rewrite
    assert app_db.verify().returncode == 0
    ok(app_db.cli("downgrade", "--to", "base"))
    assert app_db.verify("--to=base").returncode == 0


# -- a database the kit never deployed ------------------------------------------------------------


def test_downgrade_to_base_with_product_info_made_by_hand_does_not_say_done_at_base(app_db: Db) -> None:
    """Someone followed the manual runbook partway: product_info exists (made by hand, not as
    the migration makes it), no ledger. `downgrade --to base` prints `Downgrade done ...:
    nothing to roll back` (exit 0) and `status` says `at base`, while US-001's table is still
    there: the operator is told the rollback is complete. (`upgrade` refuses the same database,
    naming the difference; `pytest verification --to base` fails on it.) Rolling back should
    at least name product_info as left in place, and status should not call it base."""
    app_db.execute("CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(10), note text)")
    down = ok(app_db.cli("downgrade", "--to", "base"))
    assert "left in place, not recorded in the ledger (made by hand?): product_info\n" in down, down
    assert app_db.value("SELECT to_regclass('public.product_info') IS NOT NULL")  # kept: not the kit's
    status = ok(app_db.cli("status"))
    assert re.search(r"add_product_info_table +pending, but product_info exist\(s\) without it", status), (
        status
    )
