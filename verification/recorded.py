"""What a verification run leaves in the deployment's story: its row in the runbook's record
(migrations.record, default data/deployments.md) and in each database's history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from migrations import record
from verification.verdicts import one_line

if TYPE_CHECKING:
    from verification.report import DeploymentReport


def record_path(config: pytest.Config) -> Path | None:
    """Where this run is recorded: --record FILE, none (--record=none), or by default
    data/deployments.md (AZAK_RECORD): every verification is part of the deployment's story."""
    return record.resolve(config.getoption("--record"))


def facts_failed(report: DeploymentReport, database: str | None = None) -> str:
    """The checklist items that failed with the facts they name (of one database of a fleet)."""
    failed = [c for c in report.failed if database is None or c.database in (None, database)]
    shown = [f"{c.item}: {one_line(c.message, 300)}" for c in failed[:10]]
    return "; ".join(shown) + (f"; and {len(failed) - 10} more" if len(failed) > 10 else "")


def history_row(report: DeploymentReport, database: str) -> tuple[str, str, str, str]:
    """(result, migrations, failed facts, notes) of this run on one database, for its history."""
    failed = facts_failed(report, database)
    result = "FAILED" if failed else report.result
    notes = [f"not checked: {v.item} ({v.reason})" for v in report.unchecked()]
    return (
        result,
        f"ledger: {', '.join(report.ledgers.get(database) or {}) or 'base'}",
        failed,
        "; ".join(notes),
    )


def entry(report: DeploymentReport) -> record.Entry:
    """This run's row in the deployment record."""
    notes = []
    if report.failed:
        notes.append(f"failed: {facts_failed(report)}")
    unchecked = report.unchecked()
    if unchecked:
        notes.append("not checked: " + ", ".join(f"{v.item} ({v.reason})" for v in unchecked))
    if report.notes:
        first = one_line(next(iter(report.notes)), 120)
        notes.append(f"noted {len(report.notes)} (first: {first})")
    notes.append(report.facts.get("Failed databases") or report.facts["Database"])
    return record.Entry(
        action=f"verify {report.facts['Expected state']}",
        result=report.result,
        notes="; ".join(notes),
        environment=report.facts["Environment"],
        executor=report.facts["Executor"],
        report=report.html_path,
    )
