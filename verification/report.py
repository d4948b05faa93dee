"""The pytest plugin that reports a verification run: the terminal's last lines, the HTML
report (its head: `verification.page`), the record and the history (`verification.recorded`).

Both the report and the terminal lead with the runbook's checklist (`verification.verdicts`:
passed, FAILED, partly or not checked, and why), then each failure as expected vs found, then
what to do now (`verification.advice`): the steps that follow from what failed and which
migration owns it, each with its commands, and where the troubleshooting queries are. The
counts are pytest's, in its words. The database is only ever shown masked, and every value
that reaches the HTML report is escaped (pytest-html fills its Environment table through
innerHTML).
"""

from __future__ import annotations

import html
import shlex
import shutil
import sys
from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg2
import pytest
from pytest_metadata.plugin import metadata_key

from migrations import record
from migrations.dburl import URL, DeployError, describe, mask
from migrations.steps import load_all, title
from verification import operations, page, recorded
from verification.advice import Advisor, Database, Kit, Step, facts_of, failure
from verification.db import Target
from verification.state import target_name
from verification.verdicts import (
    CHECKLIST,
    Check,
    Verdict,
    checklist_of,
    failure_message,
    item_checklist,
    one_line,
    skip_reason,
)

__all__ = ["CHECKLIST", "DeploymentReport", "Step", "checklist_of", "kit_python"]

TROUBLESHOOTING = 'README.md, section "Troubleshooting"'
# The options of a run that change its verdict: kept in the verification commands it advises.
JUDGING = ("--before", "--backup-dir", "--allow", "--env-name", "--record")
# A check's user property: a difference it passes but shows ("allowed: ...", "noted: ...").
NOTE = "azak-note"
# A check's user property: a fact it left to the probes that decide it ([kind, table, name,
# expected, found, probe, ...]): a failed probe's advice repairs that fact first.
DEFERRED = "azak-deferred"
NOTES_SHOWN = 20  # in the terminal; the HTML report shows every one


def note(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Differences a check passes but shows (allowed, harmless, not checked): carried by the
    check's report (xdist too) to the terminal, the HTML report and the record."""
    request.node.user_properties.extend((NOTE, line) for line in lines)


class DeploymentReport:
    """A pytest plugin: the checklist, the HTML report's content, the terminal's end, the record."""

    def __init__(self, config: pytest.Config, targets: list[Target], executor: str, chosen: str) -> None:
        self.config = config
        self.chosen = chosen  # the migration the verified state ends with, or base
        self.title = f"{title(chosen)} verification"  # "US-001 verification", by the changes up to it
        self.targets = {mask(t.url): t for t in targets}
        self.urls: dict[str, URL] = {mask(t.url): t.url for t in targets}
        self.ledgers: dict[str, dict[str, str] | None] = {}  # migration → state; None: no table
        self.unreadable: dict[str, str] = {}  # databases whose ledger this role may not read
        self.deselected = 0
        self.facts: dict[str, str] = {
            "Environment": config.getoption("--env-name"),
            "Executor": executor,
            "Expected state": target_name(config),
            "Database": ", ".join(self.targets),
            "Started": now(),
        }
        self.checks: dict[str, Check] = {}
        self.said: dict[str, list[str]] = {"note": [], "advice": []}  # checks' record_property lines
        self.actions: dict[str, Any] = {}  # this run's row in each database's history (history.Action)
        self.notes: dict[str, None] = {}  # noted and allowed differences, in order, once each
        self.deferred: dict[str, list[list[Any]]] = {}  # a probe's name → the facts it decides
        self.html_report: Any = None
        self.record_path = recorded.record_path(config)
        self.record_error = ""
        if self.record_path is not None:
            self.facts["Record"] = str(self.record_path)
        html_path = config.getoption("htmlpath", default=None)
        self.html_path = str(html_path) if html_path else ""

    # -- facts ----------------------------------------------------------------------------

    def learn_servers(self) -> None:
        """Server version and ledger state of each database, once connected."""
        fleet = len(self.targets) > 1
        for name, target in self.targets.items():
            prefix = f"{name}: " if fleet else ""
            version = f"{prefix}{target.value('SHOW server_version')}"
            state, self.ledgers[name] = read_ledger(target)
            if state.startswith("unreadable"):
                self.unreadable[name] = state
            self.facts["Server version"] = "; ".join(
                filter(None, [self.facts.get("Server version"), version])
            )
            self.facts["Ledger"] = "; ".join(filter(None, [self.facts.get("Ledger"), f"{prefix}{state}"]))

    def decided(self, check: Check) -> dict[str, Any] | None:
        """A failed check's facts; a probe's with the facts it decided (a function spelled
        differently, left to it): that function, as its migration wrote it, comes first."""
        decided = self.deferred.get(f"{check.database}::{check.nodeid.split('::')[-1]}")
        if not decided or check.facts is None:
            return check.facts
        return {**check.facts, "differences": [*check.facts.get("differences", []), *decided]}

    @property
    def failed(self) -> list[Check]:
        """Failed, or could not run (pytest's errors)."""
        return [c for c in self.checks.values() if c.outcome in ("failed", "error")]

    def counts(self) -> dict[str, int]:
        outcomes = [c.outcome for c in self.checks.values()]
        return {k: outcomes.count(k) for k in ("passed", "failed", "error", "skipped")}

    def count_line(self) -> str:
        """The counts in pytest's words, each explained: they add up to pytest's own line."""
        n = self.counts()
        parts = [f"{n['passed']} passed", f"{n['failed']} failed"]
        parts += [f"{n['error']} error{'s' if n['error'] != 1 else ''} (could not run)"] if n["error"] else []
        parts += [f"{n['skipped']} skipped (not checked)"] if n["skipped"] else []
        if self.deselected:
            parts.append(f"{self.deselected} deselected (not applicable at {self.facts['Expected state']})")
        return ", ".join(parts)

    def failed_databases(self) -> dict[str, int]:
        """In a fleet: failed checks per database."""
        counts = {name: sum(c.database == name for c in self.failed) for name in self.targets}
        return {name: n for name, n in counts.items() if n} if len(self.targets) > 1 else {}

    def verdicts(self) -> list[Verdict]:
        """The eight checklist items in the runbook's order, then any other groups."""
        verdicts = {item: Verdict(item) for item in CHECKLIST}
        for check in self.checks.values():
            verdicts.setdefault(check.item, Verdict(check.item)).checks.append(check)
        return list(verdicts.values())

    def unchecked(self) -> list[Verdict]:
        """Runbook items (partly) not checked: skipped, or without a check in an upgraded
        run (a rolled-back run checks what is gone in its own group)."""
        upgraded = target_name(self.config) != "base"
        return [v for v in self.verdicts()[: len(CHECKLIST)] if v.skipped or (upgraded and not v.checks)]

    @property
    def result(self) -> str:
        """The record's result: passed, passed with N items (partly) not checked, or FAILED."""
        if self.failed:
            return "FAILED"
        unchecked = self.unchecked()
        return f"passed, {len(unchecked)} not checked" if unchecked else "passed"

    # -- what to do now -------------------------------------------------------------------

    def next_steps(self) -> list[Step]:
        """What the operator does next, then what the checks advise (record_property "advice")."""
        return self.deployment_steps() + [Step(text) for text in self.said["advice"]]

    def deployment_steps(self) -> list[Step]:
        """What the operator does next, with the commands for these databases."""
        kit = self.kit()
        if not self.failed:
            state = "rolled back" if self.chosen == "base" else f"at {target_name(self.config)}"
            steps = [Step(f"Nothing to do: the database is as the migrations require ({state}).")]
            if self.chosen != "base":
                steps.append(
                    Step(
                        "Should the application misbehave later, roll every migration back:",
                        [kit.migrations(name, "downgrade --to base") for name in self.targets],
                    )
                )
            return steps
        failed_dbs = list(self.failed_databases()) or list(self.targets)
        steps = []
        for name in failed_dbs:
            where = f"On {name}: " if len(failed_dbs) > 1 else ""
            failures = [
                failure(c.name, c.item, self.decided(c), c.outcome == "failed", c.message)
                for c in self.failed
                if c.database in (name, None) or len(self.targets) == 1
            ]
            for step in Advisor(self.database(name), load_all(), self.chosen, kit).steps(failures):
                steps.append(Step(where + step.text, step.commands))
        masked = any(t.url.password for t in self.targets.values())
        secret = " *** stands for the password: put it back, or set DATABASE_URL and drop --db-url."
        steps.append(Step(f"To find out why: the queries in {TROUBLESHOOTING}." + (secret if masked else "")))
        return steps

    def kit(self) -> Kit:
        """The kit's commands as they run here, with this run's options that judge."""
        options = []
        for name in JUDGING:
            value = self.config.getoption(name)
            given = value if isinstance(value, list) else [value] if value else []
            if name == "--env-name" and value == "unspecified":
                continue
            options += [f"{name}={v}" for v in given]
        return Kit(kit_python(), options)

    def database(self, name: str) -> Database:
        """What the advice needs of one database: ledger, newest backup."""
        directory = Path(self.config.getoption("--backup-dir") or "data/backups")
        target = self.targets.get(name)
        found = None
        if self.config.getoption("--backup-dir") and target is not None:
            found = operations.newest_backup(directory, target.identity())
        return Database(name, self.ledgers.get(name), self.unreadable.get(name, ""), found, directory)

    # -- hooks ----------------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        return [f"{self.title}: {self.facts['Database']} (expect {self.facts['Expected state']})"]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Every report carries its checklist item (xdist carries it to the controller)."""
        report = yield
        report.checklist = item_checklist(item)  # type: ignore[attr-defined]
        callspec = getattr(item, "callspec", None)  # a fleet's check: which database it judged
        report.database = callspec.params.get("target") if callspec else None  # type: ignore[attr-defined]
        if report.failed:
            report.facts = facts_of(item)  # type: ignore[attr-defined]
        return report

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        item = getattr(report, "checklist", None) or checklist_of(
            report.nodeid.split("::")[0].removesuffix(".py"), report.nodeid.split("::")[-1]
        )
        database = getattr(report, "database", None)
        prefix = f"{database}: " if database and len(self.targets) > 1 else ""
        self.notes.update((prefix + str(v), None) for k, v in report.user_properties if k == NOTE)
        for fact in (cast(list[str], v) for k, v in report.user_properties if k == DEFERRED):
            for probe in fact[5:]:
                self.deferred.setdefault(f"{database}::{probe}", []).append(list(fact[:5]))
        check = self.checks.setdefault(report.nodeid, Check(report.nodeid, item, database))
        for kind, text in report.user_properties:
            if kind in self.said and text not in self.said[kind]:
                self.said[kind].append(str(text))
        if report.failed and check.outcome not in ("failed", "error"):
            check.outcome = "failed" if report.when == "call" else "error"
            check.message = failure_message(report)
            check.facts = getattr(report, "facts", None)
        elif report.skipped and check.outcome == "passed":
            check.outcome, check.message = "skipped", skip_reason(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """pytest-html shows metadata as HTML: escape it, and drop what is not about the
        deployment (the facts are in the summary, once)."""
        metadata = self.config.stash.get(metadata_key, None)
        if metadata is None:
            return
        for key in ("Python", "Platform", "Packages", "Plugins", "JAVA_HOME", *self.facts):
            metadata.pop(key, None)
        cleaned = {html.escape(str(k)): page.escape_tree(v) for k, v in metadata.items()}
        metadata.clear()
        metadata.update(cleaned)

    @pytest.hookimpl(optionalhook=True)  # pytest-html may not be loaded
    def pytest_html_report_title(self, report: Any) -> None:
        self.html_report = report
        report.title = f"{self.title} ({self.facts['Environment']}): running"

    @pytest.hookimpl(optionalhook=True)  # pytest-html may not be loaded
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="col-checklist">Checklist item</th>')

    @pytest.hookimpl(optionalhook=True)  # pytest-html may not be loaded
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        item = getattr(report, "checklist", "") or ""
        cells.insert(1, f'<td class="col-checklist">{html.escape(item)}</td>')

    @pytest.hookimpl(optionalhook=True)  # pytest-html may not be loaded
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        self.facts["Finished"] = now()
        self.note_failed_databases()
        if self.html_report is not None:
            self.html_report.title = f"{self.title} ({self.facts['Environment']}): {self.result}" + (
                f", {len(self.failed)} failed" if self.failed else ""
            )
        empty_metadata = not self.config.stash.get(metadata_key, {})
        prefix.append(page.head(self, hide_environment=empty_metadata))

    def note_failed_databases(self) -> None:
        failed = self.failed_databases()
        if failed:
            self.facts["Failed databases"] = ", ".join(f"{name} ({n} checks)" for name, n in failed.items())

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.facts.setdefault("Finished", now())
        self.note_failed_databases()
        for name, action in self.actions.items():
            action.finish(*recorded.history_row(self, name), report=self.html_path)
        if self.record_path is None or hasattr(self.config, "workerinput"):  # xdist: the controller
            return
        try:
            record.append(recorded.entry(self), self.record_path)
        except DeployError as exc:
            self.record_error = str(exc)
            if session.exitstatus == 0:
                session.exitstatus = 1

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None, None, None]:
        """The last lines: the result, the checklist, what to do now (after pytest's summary)."""
        yield
        write = terminalreporter.write_line
        if self.record_error:
            where = f"; error: {self.record_error}"
        elif self.record_path is not None:
            where = f"; recorded in {self.record_path}"
        else:
            where = "; not recorded locally (--record=none)"
        kept = [a for a in self.actions.values() if a.id is not None]
        if kept and len(kept) == len(self.actions):
            where += (
                " and in the database's history" if self.record_path else ", only in the database's history"
            )
        for action in self.actions.values():
            if action.skipped:
                write(f"{mask(action.url)}: {action.skipped}")
        write(f"{self.title} {self.result}: {self.count_line()}{where}")
        for name, n in self.failed_databases().items():
            write(f"  FAILED on {name}: {n} checks")
        for verdict in self.verdicts():
            write(f"  {verdict.item:<18} {verdict.text()}")
            for check in verdict.failed[:5]:
                write(f"      {check.name}: {one_line(check.message)}")
            if len(verdict.failed) > 5:
                write(f"      ... and {len(verdict.failed) - 5} more")
        for note in self.said["note"]:
            write(f"  {note}")
        self.write_notes(write)
        write("what to do now:")
        for number, step in enumerate(self.next_steps(), 1):
            write(f"  {number}. {step.text}")
            for command in step.commands:
                for line in command.splitlines():
                    write(f"       {line}")

    def write_notes(self, write: Any) -> None:
        """Allowed and noted differences: passed, never silently."""
        notes = list(self.notes)
        if notes:
            write(f"noted, not failing ({len(notes)}): what changes nothing the application does")
        for line in notes[:NOTES_SHOWN]:
            write(f"  {line}")
        if len(notes) > NOTES_SHOWN:
            write(f"  ... and {len(notes) - NOTES_SHOWN} more (the HTML report lists every one)")


def now() -> str:
    """Local time, to the second, with its offset."""
    return datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")


def read_ledger(target: Target) -> tuple[str, dict[str, str] | None]:
    """One line on the ledger (its migrations and their states), and its rows (None: no ledger
    table, or one this role may not read)."""
    try:
        rows = target.ledger()
    except psycopg2.Error as exc:
        return f"unreadable ({describe(exc)})", None
    if rows is None:
        return "no ledger table", None
    return ", ".join(f"{name} ({state})" for name, state in rows.items()) or "empty", rows


def kit_python() -> str:
    """How to start this Python from here: `python` when that is it, else its path (relative
    under the current directory: `.venv/bin/python`)."""
    executable = Path(sys.executable).absolute()
    on_path = shutil.which("python")
    if on_path and Path(on_path).absolute() == executable:
        return "python"
    try:
        relative = str(executable.relative_to(Path.cwd().absolute()))
    except ValueError:
        return shlex.quote(str(executable))
    return relative if "/" in relative else f"./{relative}"
