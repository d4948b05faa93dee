"""The checklist a verification run fills: the runbook's items in its order, the item of each
check, and each item's verdict over its checks (passed, FAILED, partly or not checked, and why)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from verification import checklists

# The runbook's checklist, in its order: always shown, "not checked" when no check ran; the
# changes' own items (their checklists' ITEMS) after UNIQUE.
RUNBOOK = (
    "tables",
    "indexes",
    "foreign keys",
    "UNIQUE",
    *checklists.items(),
    "application",
    "logs",
    "backup",
)
CHECKLIST = (*RUNBOOK, "application models")  # and the application's own models (--app-models)
# A check's item when its module does not say (CHECKLIST = "..." in the test module).
BY_MODULE = {
    "test_tables": "tables",
    "test_indexes": "indexes",
    "test_foreign_keys": "foreign keys",
    "test_constraints": "UNIQUE",
    "test_app_models": "application models",
}
BY_FUNCTION = {"test_application_": "application", "test_log_": "logs", "test_backup_": "backup"}


def checklist_of(module_name: str, function_name: str, declared: object = None) -> str:
    """The checklist item of a check: its module's CHECKLIST, else by file or function name;
    anything else is "other: <module without test_>"."""
    if isinstance(declared, str) and declared:
        return declared
    module = module_name.rpartition(".")[2]
    if module in BY_MODULE:
        return BY_MODULE[module]
    for prefix, name in BY_FUNCTION.items():
        if function_name.startswith(prefix):
            return name
    return "other: " + module.removeprefix("test_")


def item_checklist(item: pytest.Item) -> str:
    """checklist_of for a collected item (a `checklist` marker names its own), by the module
    that defines the check (a change's checklist, collected in test_changes, names its own)."""
    marked = item.get_closest_marker("checklist")
    if marked is not None:
        return str(marked.args[0])
    defined = getattr(getattr(item, "function", None), "__module__", None)
    module = sys.modules.get(defined or "", getattr(item, "module", None))
    function = getattr(getattr(item, "function", None), "__name__", item.name)
    return checklist_of(
        getattr(module, "__name__", item.nodeid.split("::")[0].removesuffix(".py").replace("/", ".")),
        function,
        getattr(module, "CHECKLIST", None),
    )


@dataclass
class Check:
    """One check's outcome over its phases."""

    nodeid: str
    item: str
    database: str | None = None  # in a fleet: the (masked) database it judged
    outcome: str = "passed"  # passed / failed / error (could not run) / skipped
    message: str = ""  # failed: expected vs found; skipped: why
    facts: dict[str, Any] | None = None  # failed: what it judged (verification.advice)

    @property
    def name(self) -> str:
        """The check's short name: test_file::test[param], without the directory."""
        return self.nodeid.rpartition("/")[2].replace(".py::", "::")


@dataclass
class Verdict:
    """One checklist line."""

    item: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        """Failed, or could not run: either way not passed."""
        return [c for c in self.checks if c.outcome in ("failed", "error")]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "skipped"]

    @property
    def state(self) -> str:
        """passed / failed / skipped / partial (some checks not run: never green)."""
        if self.failed:
            return "failed"
        if len(self.skipped) == len(self.checks):
            return "skipped"
        return "partial" if self.skipped else "passed"

    @property
    def reason(self) -> str:
        """Why (some of) it was not checked."""
        if not self.checks:
            return "no check of it in this run"
        return "; ".join(dict.fromkeys(c.message for c in self.skipped))

    def text(self) -> str:
        """The verdict in words."""
        if self.state == "failed":
            errors = sum(c.outcome == "error" for c in self.checks)
            more = f"; {errors} could not run" if errors else ""
            return f"FAILED ({len(self.failed)} of {len(self.checks)} checks{more})"
        if self.state == "skipped":
            return f"not checked: {self.reason}"
        done = len(self.checks) - len(self.skipped)
        if self.skipped:
            return f"partly checked: {done} passed, {len(self.skipped)} not checked: {self.reason}"
        return f"passed ({done} check{'s' if done != 1 else ''})"


def failure_message(report: pytest.TestReport) -> str:
    """What a failed check said (expected vs found), in a few lines at most."""
    longrepr = report.longrepr
    if isinstance(longrepr, str):
        return longrepr.strip()
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).strip()
    return report.longreprtext.strip().splitlines()[-1] if report.longreprtext.strip() else "failed"


def skip_reason(report: pytest.TestReport) -> str:
    """Why a check was skipped."""
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ").removesuffix(": not checked")
    return "skipped"


def one_line(text: str, limit: int = 200) -> str:
    """The first line of a message, shortened."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
