"""Bad targets and options are refused before any connection or check: one line, the usage
exit code, no "passed", no row in the deployment record."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrations.steps import load_all
from tests.conftest import ROOT, Db, run_verification

# Nothing listens there: a refusal that names it would have tried to connect first.
NOWHERE = "--db-url=postgresql://nobody@127.0.0.1:1/nowhere"
BAD = {
    "--to=bogus": "--to bogus: unknown migration; known: head, base, add_product_info_table,",
    "--expect=upgradedd": "--expect=upgradedd: one of upgraded, rolled-back",
    "--lock-timeout=abc": "--lock-timeout=abc: not a number",
    "--statement-timeout=0": "--statement-timeout=0: must be between 1 and 3600000",
    "--app-timeout=nan": "--app-timeout=nan: must be between 0.1 and 600",
    "--backup-max-age=-1": "--backup-max-age=-1: must be between 0 and 100000",
    "--since=yesterday": "--since=yesterday: neither an ISO time nor 30m / 2h / 1d",
}


@pytest.mark.parametrize(("option", "says"), BAD.items(), ids=BAD.keys())
def test_bad_verification_option_is_one_line_before_any_check(option: str, says: str, tmp_path: Path) -> None:
    deployments = tmp_path / "deployments.md"
    done = run_verification(None, NOWHERE, option, f"--record={deployments}")
    out = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 4, out
    assert out == [f"ERROR: {says}"] or (len(out) == 1 and out[0].startswith(f"ERROR: {says}")), out
    assert "passed" not in done.stdout and not deployments.exists()


def test_unknown_target_on_a_real_database_leaves_no_record_row(deployed_db: Db, tmp_path: Path) -> None:
    deployments = tmp_path / "deployments.md"
    done = run_verification(deployed_db.url, "--to", "bogus", f"--record={deployments}")
    assert done.returncode == 4 and "unknown migration" in done.stderr, done.stdout[-2000:]
    assert "US-001 verification" not in done.stdout and "Nothing to do" not in done.stdout
    assert not deployments.exists()


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_unknown_target_of_a_migration_command_changes_and_records_nothing(
    app_db: Db, tmp_path: Path, command: str
) -> None:
    deployments = tmp_path / "deployments.md"
    done = app_db.cli(command, "--to", "bogus", "--record", str(deployments))
    assert done.returncode == 2, done.stderr
    known = ", ".join(["base", *(m.name for m in load_all())])
    assert done.stderr.strip().splitlines() == [f"error: unknown migration 'bogus'; known: {known}"]
    assert not deployments.exists() or "bogus" not in deployments.read_text()
    assert app_db.value("SELECT to_regclass('azak_registry.ledger') IS NULL")


def test_a_before_file_that_is_not_an_image_is_one_usage_line_not_eleven_failed_checks(
    deployed_db: Db, tmp_path: Path
) -> None:
    """A `--before` file that is no image is one usage line (exit 4) before any check: no
    check is failed on the operator's typo and no record row is written."""
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"this is not a before-image\n" * 10)
    run = deployed_db.verify("--before", str(bad), "--record", "none", tmp=tmp_path)
    assert not run.failed, f"the bad file was blamed on {len(run.failed)} checks: {sorted(run.failed)}"
    assert run.returncode == 4, run.output
    assert run.output.count("is not a before-image file") == 1, run.output


def test_a_before_file_with_one_huge_line_is_refused_in_bounded_memory(
    deployed_db: Db, tmp_path: Path
) -> None:
    """A `--before` file inflating to one 600 MiB line is refused in one usage line naming it,
    read in bounded memory (a 1 GiB address-space limit, no MemoryError)."""
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
