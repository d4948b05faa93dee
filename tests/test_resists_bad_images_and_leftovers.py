"""Attacks of a third hostile review, each now a guarantee: a `--before` file that is no image
or a gzip bomb is one usage line in bounded memory; a kill while the before-image is written
leaves no half file once the kit runs again; a rollback names tables it did not make and
leaves them. A test's docstring tells the attack as it was found."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from migrations import appdb, image
from migrations.dburl import dbname, libpq_params
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
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert "MemoryError" not in output, output[-3000:]
    assert "azak_image_bomb.json.gz" in output, output[-3000:]
    assert done.returncode in (1, 2, 4), output[-3000:]


# -- kill -9 while the before-image is written ----------------------------------------------------


def test_kill_while_the_before_image_is_written_leaves_no_partial_file_behind(
    app_db: Db, tmp_path: Path
) -> None:
    """`kill -9` of `upgrade` while it streams the before-image (200,000 stocks: the file is
    being written for a few hundred ms) leaves `.image-XXXX.partial` in the images directory:
    a half copy of every stock's priority that no later upgrade, backup or verification ever
    removes (the rerun itself is fine: it keeps a fresh image, verifies, rolls back). The
    `finally: unlink` cannot run on SIGKILL; the next run should clear its leftovers."""
    conn = psycopg2.connect(**libpq_params(app_db.url))
    with conn, conn.cursor() as cur:
        appdb.add_stocks(cur, 199_700, first=301)
    conn.close()
    images = tmp_path / "images"
    env = {image.DIR_ENV: str(images)}
    argv = [sys.executable, "-m", "migrations", "upgrade", "--db-url", app_db.text_url]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not list(images.glob(".image-*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    assert list(images.glob(".image-*.partial")), "the kill did not land while the image was written"
    ok(app_db.cli("upgrade", env=env))
    ok(app_db.cli("downgrade", "--to", "base", env=env))
    leftovers = sorted(p.name for p in images.glob(".image-*.partial"))
    assert not leftovers, f"half-written before-images of {dbname(app_db.url)} left for good: {leftovers}"


# -- a database the kit never deployed ------------------------------------------------------------


def test_downgrade_to_base_with_product_info_made_by_hand_does_not_say_done_at_base(app_db: Db) -> None:
    """Someone followed the manual runbook partway: product_info exists (made by hand, not as
    the migration makes it), no ledger. `downgrade --to base` prints `Downgrade done ...:
    nothing to roll back` (exit 0) and `status` says `at base`, while US-001's table is still
    there: the operator is told the rollback is complete. (`upgrade` refuses the same database,
    naming the difference; `pytest verification --to base` fails on it.) Rolling back should
    at least name product_info as left in place, and status should not call it base."""
    app_db.execute("CREATE TABLE product_info (id serial PRIMARY KEY, stock_code varchar(10), note text)")
    down = app_db.cli("downgrade", "--to", "base")
    status = ok(app_db.cli("status"))
    said = down.stdout + down.stderr + status
    assert app_db.value("SELECT to_regclass('public.product_info') IS NOT NULL")  # kept: not the kit's
    assert re.search(r"\bproduct_info\b", said), said  # the table, not add_product_info_table
