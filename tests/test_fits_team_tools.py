"""The kit in the team's tools: a fleet verified in parallel, CI examples that name the real
commands, and the SQL the upgrade runs clean under squawk."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from migrations.dburl import mask
from tests.conftest import ROOT, US001_HEAD, Db, clone_deployed, run, run_verification


@pytest.fixture
def fleet(deployed_template) -> Iterator[list[Db]]:
    """Four deployed throwaway databases (staging, production, two shards)."""
    clones = [clone_deployed(deployed_template) for _ in range(4)]
    try:
        yield [next(c) for c in clones]
    finally:
        for c in clones:
            c.close()


def test_fleet_is_verified_in_parallel_and_the_broken_database_is_named(
    fleet: list[Db], tmp_path: Path
) -> None:
    broken = fleet[2]
    broken.execute("DROP INDEX idx_financial_ratios_stock_stac")
    listing = tmp_path / "fleet.txt"
    listing.write_text("# shards\n" + "\n".join(db.text_url for db in fleet[2:]) + "\n")
    report = tmp_path / "fleet.html"
    done = run_verification(
        None,
        "-n",
        "2",
        f"--to={US001_HEAD}",
        f"--db-url={fleet[0].text_url}",
        f"--db-url={fleet[1].text_url}",
        f"--db-urls-file={listing}",
        f"--html={report}",
        "--self-contained-html",
        plugins=("xdist.plugin",),
    )
    assert done.returncode == 1, done.stdout[-2000:]
    name = mask(broken.url)
    failed = [ln for ln in done.stdout.splitlines() if ln.startswith("FAILED ")]
    assert failed and all(f"[{name}" in ln for ln in failed), failed
    assert f"FAILED on {name}: 1 checks" in done.stdout
    html = report.read_text()
    assert f"{name} (1 checks)" in html
    assert "index financial_ratios.idx_financial_ratios_stock_stac: expected" in html
    for db in fleet:
        assert f"test_every_priority_is_1[{mask(db.url)}]" in html


def test_sql_of_the_upgrade_passes_squawk() -> None:
    plan = run([sys.executable, "-m", "migrations", "plan", "--all"])
    assert plan.returncode == 0, plan.stderr
    assert "CREATE TABLE product_info" in plan.stdout
    squawk = Path(sys.executable).parent / "squawk"
    done = subprocess.run(
        [str(squawk), "--config", str(ROOT / ".squawk.toml"), "--stdin-filepath", "plan.sql"],
        input=plan.stdout,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_example_workflows_are_valid_and_name_the_real_commands(name: str) -> None:
    text = (ROOT / ".github" / "workflows" / name).read_text()
    workflow = yaml.safe_load(text)
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    commands = " ".join(s.get("run", "") for s in steps)
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "reports/"
    if name == "ci.yml":
        assert "make test" in commands and "--junitxml=reports/junit.xml" in commands
        assert workflow["jobs"]["test"]["services"]["postgres"]["image"] == "postgres:13"
    else:
        assert "python -m migrations upgrade" in commands
        assert "pytest verification" in commands and "--junitxml=" in commands


def test_deploy_pipeline_keeps_its_backup() -> None:
    """The deploy workflow keeps its backups as an artifact (data/backups): the backup to restore
    outlives the throwaway runner that made it."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    kept = " ".join(
        s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert "data/backups" in kept, f"artifacts kept: {kept}"
