"""The report and the deployment record a DBA files as they are: the runbook's checklist and
the next step first, every value escaped, a row in the record for every verification."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from migrations import backup, record
from migrations.dburl import DeployError, mask
from migrations.steps import load_all
from tests.conftest import ROOT, US001_HEAD, Db, clone_deployed, run_verification
from verification.report import CHECKLIST, checklist_of

SECRET = "s3cret-pw"
HOSTILE = "<img src=x onerror=alert(1)>"

# -- the record, on its own -----------------------------------------------------------------


def test_record_creates_its_table_once_and_escapes_every_cell(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "deployments.md"
    hostile = record.Entry(
        action="verify `upgraded`",
        result="FAILED",
        notes="a | b\nc <script>alert(1)</script> & d \\| e",
        environment=HOSTILE,
        executor="ops",
        report="reports/x.html",
    )
    assert record.append(hostile, path) == path
    record.append(record.Entry("upgrade", "passed", "3 migrations"), path)
    lines = path.read_text().splitlines()
    assert lines[0] == "| date | environment | executor | action | result | notes | report |"
    assert len(lines) == 4 and lines.count(lines[0]) == 1
    row = lines[2]
    assert len(re.findall(r"(?<!\\)\|", row)) == 8, row  # 7 cells: no pipe of a value splits it
    assert not re.search(r"[<>`]", row), row
    assert "&lt;img src=x onerror=alert(1)&gt;" in row and "&amp; d" in row
    assert "| ops | verify &#96;upgraded&#96; | FAILED |" in row
    assert lines[3].split(" | ")[2] not in ("", "None")  # executor defaults to the OS user


def test_record_after_prose_starts_a_new_table(tmp_path: Path) -> None:
    path = tmp_path / "deployments.md"
    path.write_text("# Deployments\n\nkept by hand")
    record.append(record.Entry("backup", "passed", "data/backups/x.sql.gz"), path)
    text = path.read_text()
    assert "kept by hand\n\n| date |" in text
    assert text.endswith("| backup | passed | data/backups/x.sql.gz |  |\n")


def test_record_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DeployError) as error:
        record.append(record.Entry("upgrade", "passed", ""), tmp_path / "file" / "deployments.md")
    assert "cannot write the deployment record" in str(error.value) and "\n" not in str(error.value)


def test_record_option_none_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(record.PATH_ENV)
    assert record.resolve(None) == record.resolve("") == Path("data/deployments.md")
    assert record.resolve("none") is None
    assert record.resolve("x/y.md") == Path("x/y.md")


# -- the checklist mapping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "function", "declared", "item"),
    [
        ("verification.test_tables", "test_x", None, "tables"),
        ("verification.test_indexes", "test_x", None, "indexes"),
        ("verification.test_foreign_keys", "test_x", None, "foreign keys"),
        ("verification.test_constraints", "test_x", None, "UNIQUE"),
        ("migrations.changes.us_001.checklist.priority", "test_x", "priority", "priority"),
        ("verification.test_operations", "test_application_answers", None, "application"),
        ("verification.test_operations", "test_log_shows_no_errors", None, "logs"),
        ("verification.test_operations", "test_backup_is_recent", None, "backup"),
        ("migrations.changes.us_001.checklist.behaviour", "test_x", None, "other: behaviour"),
        ("verification.test_anything", "test_x", "indexes", "indexes"),  # the module's CHECKLIST
    ],
)
def test_checklist_item_of_a_check(module: str, function: str, declared: str | None, item: str) -> None:
    assert checklist_of(module, function, declared) == item


# -- a broken deployment, verified once for the tests below -----------------------------------


@dataclass
class BrokenRun:
    db: Db
    returncode: int
    stdout: str
    html: str
    record: str
    backup: Path


@pytest.fixture(scope="module")
def broken(deployed_template, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenRun]:
    """A deployed database missing an index, verified with a hostile --env-name, a password,
    a backup directory, an HTML report and a record."""
    tmp = tmp_path_factory.mktemp("broken")
    backups = tmp / "backups"
    backups.mkdir()
    clones = clone_deployed(deployed_template)
    db = next(clones)
    try:
        for stamp in ("20261101_090000", "20261124_175900", "20261020_120000"):  # newest by its header
            backup.backup(db.url, backups, now=datetime.strptime(stamp, "%Y%m%d_%H%M%S"))
        db.execute("DROP INDEX idx_financial_ratios_stock_stac")
        report, deployments = tmp / "report.html", tmp / "deployments.md"
        done = run_verification(
            db.url.set(password=SECRET),
            f"--to={US001_HEAD}",
            f"--env-name={HOSTILE}",
            "--executor=dba <b>",
            "--metadata",
            "ticket",
            HOSTILE,
            f"--backup-dir={backups}",
            f"--html={report}",
            "--self-contained-html",
            f"--record={deployments}",
        )
        output = done.stdout + done.stderr
        yield BrokenRun(db, done.returncode, output, report.read_text(), deployments.read_text(), backups)
    finally:
        clones.close()


def test_report_leads_with_the_checklist_and_the_next_step(broken: BrokenRun) -> None:
    assert broken.returncode == 1, broken.stdout[-3000:]
    page = broken.html
    checklist = page.index("id='us001-checklist-table'")
    next_step = page.index("id='us001-next-step'")
    assert checklist < page.index('id="results-table"') and next_step < page.index('id="results-table"')
    assert page.index("id='us001-failures'") < page.index('id="results-table"')
    rows = re.findall(r"<tr class='us001-(\w+)'><th>([^<]+)</th><td class='us001-verdict'>([^<]+)", page)
    verdicts = {html.unescape(item): (state, html.unescape(text)) for state, item, text in rows}
    assert [html.unescape(item) for _, item, _ in rows][: len(CHECKLIST)] == list(CHECKLIST)
    assert verdicts["indexes"][0] == "failed" and verdicts["tables"][0] == "passed"
    assert verdicts["application"] == ("skipped", "not checked: --app-url not given")
    assert verdicts["logs"] == ("skipped", "not checked: --app-log not given")
    assert "index financial_ratios.idx_financial_ratios_stock_stac: expected" in page


def test_next_step_names_the_exact_commands_for_this_database(broken: BrokenRun) -> None:
    url = mask(broken.db.url.set(password=SECRET))
    newest = broken.backup / "azak_backup_20261124_175900.sql.gz"
    section = broken.html.split("id='us001-next-step'", 1)[1].split("</section>", 1)[0]
    steps = html.unescape(section)
    for command in (  # the index as its migration wrote it, then the rollback of that migration
        "-c 'CREATE INDEX idx_financial_ratios_stock_stac ON financial_ratios (stock_code, stac_yymm DESC);'",
        f"-m migrations downgrade --to add_product_info_table --db-url '{url}'",
        f"-m migrations restore {newest} --yes --db-url '{url}'",
    ):
        assert command in steps, steps
        assert command in broken.stdout  # the terminal says the same
    assert steps.index("CREATE INDEX") < steps.index("downgrade") < steps.index("restore")
    assert 'README.md, section "Troubleshooting"' in steps
    assert SECRET not in broken.html + broken.stdout + broken.record


def test_terminal_ends_with_the_checklist_and_the_next_step(broken: BrokenRun) -> None:
    lines = broken.stdout.splitlines()
    todo = lines.index("what to do now:")
    assert todo > next(i for i, ln in enumerate(lines) if "short test summary info" in ln)
    assert any(ln.split() == ["indexes", "FAILED", "(1", "of", "1", "checks)"] for ln in lines[:todo]), lines
    assert all(ln.startswith(" ") for ln in lines[todo + 1 : -1])  # only pytest's count after it


def environment_table(page: str) -> dict[str, str]:
    """What pytest-html's script puts into its Environment table (through innerHTML)."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    return json.loads(html.unescape(blob.group(1)))["environment"]


def test_html_in_a_value_is_shown_as_text(broken: BrokenRun) -> None:
    assert "<img src=x" not in broken.html and "<b>" not in broken.html
    assert html.escape(HOSTILE) in broken.html
    environment = environment_table(broken.html)
    assert environment["ticket"] == html.escape(HOSTILE)  # innerHTML shows it as text
    assert not [v for v in environment.values() if "<" in str(v)], environment


def test_html_in_a_value_is_text_in_a_browser(broken: BrokenRun, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium here")
    page = tmp_path / "report.html"
    page.write_text(broken.html)
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout
    assert "us001-next-step" in dom and "ticket" in dom  # rendered, the script ran
    assert '<img src="x"' not in dom and 'onerror="' not in dom


def test_environment_table_has_no_clutter_and_no_repetition(broken: BrokenRun) -> None:
    environment = environment_table(broken.html)
    assert not {"Python", "Platform", "Packages", "Plugins", "Environment", "Database"} & set(environment)
    assert broken.html.count("<th>Environment</th>") == 1  # the summary: the one place for facts


def test_failed_verification_adds_a_row_naming_the_failed_and_unchecked(broken: BrokenRun) -> None:
    row = broken.record.splitlines()[-1]
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
    assert cells[1] == html.escape(HOSTILE) and cells[2] == "dba &lt;b&gt;"
    assert cells[3:5] == [f"verify {US001_HEAD}", "FAILED"]
    assert "failed: indexes: index financial_ratios.idx_financial_ratios_stock_stac: expected" in cells[5]
    assert "not checked: application (--app-url not given), logs (--app-log not given)" in cells[5]
    assert cells[6].endswith("report.html")


# -- runs of their own ----------------------------------------------------------------------


def verification_in(cwd: Path, db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    """`pytest <repo>/verification ARGS` from another directory (where data/ is made)."""
    argv = [sys.executable, "-m", "pytest", str(ROOT / "verification"), "-q", "-p", "no:cacheprovider"]
    pinned = [f"--to={db.to}"] if db.to else []  # what it was deployed to
    argv += ["-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin", *pinned, *args]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "DATABASE_URL": db.text_url}
    env.pop(record.PATH_ENV, None)  # the record's own default, data/deployments.md under cwd
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120)


def test_named_environment_is_recorded_by_default_with_what_was_not_checked(
    deployed_db: Db, tmp_path: Path
) -> None:
    done = verification_in(tmp_path, deployed_db, "--env-name=staging")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "recorded in data/deployments.md" in done.stdout
    row = (tmp_path / "data" / "deployments.md").read_text().splitlines()[-1]
    assert "| staging |" in row and "| passed, 4 not checked |" in row
    assert "not checked: application (--app-url not given), logs" in row and "backup" in row
    assert "application models (--app-models not given)" in row


def test_record_none_writes_nothing(deployed_db: Db, tmp_path: Path) -> None:
    done = verification_in(tmp_path, deployed_db, "--env-name=staging", "--record=none")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "not recorded" in done.stdout and not (tmp_path / "data").exists()
    assert "not recorded locally (--record=none), only in the database's history" in done.stdout


def test_database_that_is_not_the_applications_is_one_line(empty_db: Db) -> None:
    done = run_verification(empty_db.url.set(password=SECRET))
    assert done.returncode == 4, done.stdout[-2000:]
    out = (done.stdout + done.stderr).strip().splitlines()
    expected = f"{mask(empty_db.url.set(password=SECRET))} has no table public.stocks"
    assert len(out) == 1 and expected in out[0] and "application's database" in out[0], out


def test_help_needs_no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere")
    done = run_verification(None, "--help")
    assert done.returncode == 0, done.stderr
    for option in (
        "--db-url",
        "--expect",
        "--env-name",
        "--backup-dir",
        "--app-url",
        "--record",
        "--app-models",
    ):
        assert option in done.stdout


def test_deploy_workflow_never_pastes_inputs_into_a_shell() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    job = workflow["jobs"]["deploy"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs and not [r for r in runs if "${{" in r]
    assert job["env"]["ENVIRONMENT"] == "${{ inputs.environment }}"
    assert job["env"]["ACTOR"] == "${{ github.actor }}"


def test_rolled_back_run_counts_only_what_it_skipped(app_db: Db, tmp_path: Path) -> None:
    with app_db.runner() as runner:  # the kit deployed it (its before-image kept) and rolled it back
        runner.upgrade()
        runner.downgrade("base")
    deployments = tmp_path / "deployments.md"
    done = run_verification(
        app_db.url, "--expect=rolled-back", "--env-name=staging", f"--record={deployments}"
    )
    assert done.returncode == 0, done.stdout[-2000:]
    row = deployments.read_text().splitlines()[-1]
    assert "| verify base | passed, 4 not checked |" in row, row


# -- every action in one record; commands that speak in sentences ------------------------------


def record_rows(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("| 20")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


def test_every_action_adds_a_row_to_one_record(app_db: Db, tmp_path: Path) -> None:
    rec, backups = tmp_path / "deployments.md", tmp_path / "backups"
    where = ("--record", str(rec), "--env-name", "staging")
    for args in (("backup", "--dir", str(backups)), ("upgrade",)):
        assert app_db.cli(*args, *where).returncode == 0
    app_db.execute("DROP INDEX idx_product_info_stock_code")
    assert app_db.verify(f"--record={rec}", "--env-name=staging").returncode == 1
    assert app_db.cli("upgrade", *where).returncode == 1  # refused: the index differs
    assert app_db.cli("downgrade", "--to", "base", *where).returncode == 0
    (dump,) = backups.glob("*.sql.gz")
    assert app_db.cli("restore", str(dump), "--yes", *where).returncode == 0
    rows = record_rows(rec)
    assert [(r[1], r[3], r[4]) for r in rows] == [
        ("staging", "backup", "passed"),
        ("staging", "upgrade", "passed"),
        ("staging", "verify head", "FAILED"),
        ("staging", "upgrade", "FAILED"),
        ("staging", "downgrade --to base", "passed"),
        ("staging", f"restore {dump}", "passed"),
    ]
    assert "indexes: index product_info.idx_product_info_stock_code: expected" in rows[2][5]
    assert "index product_info.idx_product_info_stock_code" in rows[3][5]


def test_status_and_plan_speak_in_sentences(head_db: Db) -> None:
    every = len(load_all())
    status = head_db.cli("status").stdout
    assert status.startswith(f"Database {mask(head_db.url)}: {every} of {every} migrations applied")
    assert f"(head: {load_all()[-1].name})." in status
    plan = head_db.cli("plan").stdout
    assert plan == f"-- Nothing to plan: every migration is applied on {mask(head_db.url)}.\n"


@pytest.mark.parametrize(
    "command",
    [
        "upgrade",
        "downgrade",
        "status",
        "plan",
        "backup",
        "restore",
        "record",
        "adopt",
        "image",
        "forget-registry",
    ],
)
def test_every_command_describes_itself_and_only_its_options(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "migrations", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    description = done.stdout.split("\n\n")[1]
    assert description[0].isupper() and "." in description, description
    if command in ("status", "plan", "record", "image"):  # they change nothing: no record of them
        assert "--retries" not in done.stdout and "--record" not in done.stdout
    if command == "restore":
        assert "a backup written by `backup`" in done.stdout


def test_an_unwritable_record_stops_a_command_before_it_changes_anything(app_db: Db, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = app_db.cli("upgrade", "--record", str(blocker / "deployments.md"))
    assert done.returncode == 1 and done.stderr.startswith("error: cannot write the deployment record"), (
        done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1
    assert app_db.value("SELECT to_regclass('azak_registry.ledger') IS NULL"), "nothing may change"
    assert app_db.value("SELECT to_regclass('public.product_info') IS NULL"), "nothing may change"


def test_verification_of_an_interrupted_ledger_state_is_refused_in_one_line(deployed_db: Db) -> None:
    deployed_db.execute(
        "UPDATE azak_registry.ledger SET state = 'reverting' WHERE name = 'deprecate_priority_column'"
    )
    done = run_verification(deployed_db.url, "--to=ledger")
    assert done.returncode == 4, done.stdout[-2000:]
    assert "deprecate_priority_column (reverting): finish it first" in done.stdout + done.stderr
