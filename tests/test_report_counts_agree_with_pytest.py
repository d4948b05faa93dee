"""The kit's counts are pytest's, in pytest's words, each explained; "not checked" is never
green; the kit's own options are easy to find."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from tests.conftest import ROOT, US001_HEAD, Db, run

WORDS = r"(\d+) (passed|failed|errors?|skipped|deselected)"


def counts(line: str) -> dict[str, int]:
    """The counts a line gives, by pytest's word (pytest leaves out what is 0)."""
    found = {w.rstrip("s") if w.startswith("error") else w: int(n) for n, w in re.findall(WORDS, line)}
    return {word: n for word, n in found.items() if n}


def both_lines(output: str) -> tuple[str, str]:
    """The kit's result line and pytest's last line."""
    kit = next(ln for ln in output.splitlines() if re.match(r"US-001 verification (passed|FAILED)", ln))
    last = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed).* in [\d.]+s", ln)][-1]
    return kit, last


def test_failures_and_a_missing_backup_count_the_same_and_explain_deselected(
    deployed_db: Db, tmp_path: Path
) -> None:
    deployed_db.execute("DROP INDEX idx_product_info_stock_code")
    done = deployed_db.verify(f"--backup-dir={tmp_path}")
    kit, last = both_lines(done.output)
    assert counts(kit) == counts(last), (kit, last)
    assert counts(last)["failed"] == 3 and "error" not in counts(last), last  # the backup: failed checks
    deselected = counts(last)["deselected"]  # the checks of later changes too, where the chain has them
    assert f"{deselected} deselected (not applicable at {US001_HEAD})" in kit, kit
    assert "none does" in done.output  # the missing backup, as a sentence


def test_checks_that_could_not_run_are_counted_as_pytest_counts_errors(deployed_db: Db) -> None:
    """A damaged before-image stops every check that needs the expected state in its fixture:
    pytest's errors, the kit's "could not run", and the advice is to put that right first."""
    deployed_db.execute(
        "UPDATE azak_registry.images SET catalog = '[\"garbage\"]' WHERE before_migration IS NULL"
    )
    done = deployed_db.verify()
    kit, last = both_lines(done.output)
    assert counts(kit) == counts(last), (kit, last)
    assert counts(last).get("error"), last
    assert f"{counts(last)['error']} errors (could not run)" in kit
    first = done.output.split("what to do now:\n", 1)[1].splitlines()[0]
    assert (
        "could not run, so they judged nothing" in first
        and "is damaged: its catalog is not a list of facts" in first
    )


def test_not_checked_is_never_green(deployed_db: Db, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    done = deployed_db.verify("--before=none", f"--html={report}", "--self-contained-html")
    assert done.returncode == 0, done.output[-3000:]
    page = report.read_text()
    assert "<p id='us001-result' class='us001-partial'>passed, " in page
    rows = re.findall(r"<tr class='us001-(\w+)'><th>([^<]+)</th><td class='us001-verdict'>([^<]+)", page)
    verdicts = {html.unescape(item): (state, html.unescape(text)) for state, item, text in rows}
    assert verdicts["priority"][0] == "partial", verdicts["priority"]
    assert verdicts["priority"][1].startswith("partly checked: 1 passed, 1 not checked: --before none")
    green = [(item, text) for item, (state, text) in verdicts.items() if state == "passed"]
    assert green and not [g for g in green if "not checked" in g[1]], green
    assert re.search(r"^  priority +partly checked", done.output, re.M), done.output[-3000:]


def test_the_kits_options_come_first() -> None:
    short = run([sys.executable, "-m", "verification", "--help"], timeout=60)
    assert short.returncode == 0, short.stderr
    assert len(short.stdout.splitlines()) < 70 and "--before FILE" in short.stdout
    for option in ("--db-url", "--to", "--backup-dir", "--app-url", "--record", "--html=FILE"):
        assert option in short.stdout
    full = run([sys.executable, "-m", "pytest", str(ROOT / "verification"), "--help"], timeout=60)
    lines = full.stdout.splitlines()
    kits = [
        i for i, ln in enumerate(lines) if ln.endswith(" post-deploy verification:")
    ]  # the chain's titles
    assert kits and kits[0] < 8 < lines.index("general:"), lines[:12]
