"""What a verification run leaves behind: the HTML report's title and summary, and the record.

The record is the runbook's deployment table (date | environment | executor | result | notes),
one row appended per run. The database is only ever shown masked.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_metadata.plugin import metadata_key
from sqlalchemy.exc import DBAPIError

from migrations.dburl import describe, mask
from verification.db import Target
from verification.state import target_name

RECORD_HEADER = (
    "| date | environment | executor | result | notes |\n|------|-------------|----------|--------|-------|\n"
)


class DeploymentReport:
    """A pytest plugin: counts outcomes, titles the HTML report, appends the record."""

    def __init__(self, config: pytest.Config, targets: list[Target], executor: str) -> None:
        self.config = config
        self.targets = {mask(t.url): t for t in targets}
        self.facts: dict[str, str] = {
            "Environment": config.getoption("--env-name"),
            "Executor": executor,
            "Expected state": target_name(config),
            "Database": ", ".join(self.targets),
            "Started": now(),
        }
        self.failed: list[str] = []
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}
        self.html_report: Any = None

    # -- facts ----------------------------------------------------------------------------

    def learn_servers(self) -> None:
        """Server version and ledger state of each database, once connected."""
        fleet = len(self.targets) > 1
        for name, target in self.targets.items():
            prefix = f"{name}: " if fleet else ""
            version = f"{prefix}{target.value('SHOW server_version')}"
            ledger = f"{prefix}{ledger_state(target)}"
            self.facts["Server version"] = "; ".join(
                filter(None, [self.facts.get("Server version"), version])
            )
            self.facts["Ledger"] = "; ".join(filter(None, [self.facts.get("Ledger"), ledger]))
        self.config.stash[metadata_key].update(self.facts)

    def failed_databases(self) -> dict[str, int]:
        """In a fleet: failed checks per database (read from the test ids)."""
        counts = {name: sum(f"[{name}" in nodeid for nodeid in self.failed) for name in self.targets}
        return {name: n for name, n in counts.items() if n} if len(self.targets) > 1 else {}

    @property
    def result(self) -> str:
        """passed / FAILED, as the record and title say it."""
        return "FAILED" if self.failed else "passed"

    # -- hooks ----------------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        return [f"US-001 verification: {self.facts['Database']} (expect {self.facts['Expected state']})"]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.append(report.nodeid)
            self.counts["failed"] += 1
        elif report.skipped:
            self.counts["skipped"] += 1
        elif report.when == "call":
            self.counts["passed"] += 1

    def pytest_html_report_title(self, report: Any) -> None:
        self.html_report = report
        report.title = f"US-001 verification ({self.facts['Environment']}): running"

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        self.facts["Finished"] = now()
        self.note_failed_databases()
        if self.html_report is not None:
            self.html_report.title = f"US-001 verification ({self.facts['Environment']}): {self.result}" + (
                f", {len(self.failed)} failed" if self.failed else ""
            )
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in self.facts.items()
        )
        prefix.append(f"<table id='us001-summary'>{rows}</table>")

    def note_failed_databases(self) -> None:
        failed = self.failed_databases()
        if failed:
            self.facts["Failed databases"] = ", ".join(f"{name} ({n} checks)" for name, n in failed.items())

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.facts.setdefault("Finished", now())
        self.note_failed_databases()
        record = self.config.getoption("--record")
        if record and not hasattr(self.config, "workerinput"):  # xdist: the controller records
            append_record(Path(record), self.record_row())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        record = self.config.getoption("--record")
        terminalreporter.write_line(
            f"US-001 verification {self.result}: {self.counts['passed']} passed, "
            f"{self.counts['failed']} failed, {self.counts['skipped']} skipped"
            + (f"; recorded in {record}" if record else "")
        )
        for name, n in self.failed_databases().items():
            terminalreporter.write_line(f"  FAILED on {name}: {n} checks")

    def record_row(self) -> list[str]:
        """The runbook's row for this run."""
        html_path = self.config.getoption("htmlpath", default=None)
        notes = [
            f"report {html_path}" if html_path else "no HTML report",
            f"{len(self.failed)} failed checks",
            f"expect {self.facts['Expected state']}",
            self.facts.get("Failed databases") or self.facts["Database"],
        ]
        return [
            self.facts["Started"][:16],
            self.facts["Environment"],
            self.facts["Executor"],
            "✅ passed" if not self.failed else "❌ failed",
            "; ".join(notes),
        ]


def now() -> str:
    """Local time, to the second, with its offset."""
    return datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")


def ledger_state(target: Target) -> str:
    """One line on the ledger: which US-001 migrations it records, in which state."""
    if not target.value("SELECT to_regclass('public.schema_migrations') IS NOT NULL"):
        return "no ledger table"
    try:
        rows = target.rows("SELECT name, state FROM schema_migrations ORDER BY name")
    except DBAPIError as exc:
        return f"unreadable ({describe(exc.orig)})"
    return ", ".join(f"{name} ({state})" for name, state in rows) or "empty"


def append_record(path: Path, cells: list[str]) -> None:
    """Append one markdown table row, creating the table with its header if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists() or path.stat().st_size == 0
    line = "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |\n"
    with path.open("a", encoding="utf-8") as out:
        if fresh:
            out.write(RECORD_HEADER)
        out.write(line)
