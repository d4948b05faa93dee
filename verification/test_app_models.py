"""Checklist: application models — the application's own SQLAlchemy models against the deployed
schema (`--app-models=PACKAGE.MODULE[:ATTR] [--app-path=DIR]`), judged by what breaks the
application at its first request (verification/models.py says what fails and what is noted).

Differences that break nothing are noted, one line per kind; a disagreement the database had
already before the deployment is the application's, in its own line and in the advice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from migrations import catalog
from verification.db import Target
from verification.state import State

if TYPE_CHECKING:
    from verification.models import Models

CHECKLIST = "application models"


def test_application_models_match_the_database(
    request: pytest.FixtureRequest,
    app_models: Models,
    target: Target,
    state: State,
    found: catalog.Image,
    record_property: Callable[[str, object], None],
) -> None:
    from verification import models  # SQLAlchemy only when --app-models is given

    before = state.before.catalog if state.before else None
    verdict = models.judge(
        app_models, lambda: target.session(read_only=True), found, before, state.created_tables
    )
    callspec = getattr(request.node, "callspec", None)  # a fleet: say which database
    where = f" on {callspec.params['target']}" if callspec else ""
    for line in verdict.note_lines():
        record_property("note", line.replace("application models", f"application models{where}", 1))
    if verdict.application:
        record_property(
            "note",
            f"application models{where}: {len(verdict.application)} disagreement(s) held before the"
            " deployment, the application's, not the deployment's: " + "; ".join(verdict.application),
        )
        record_property(
            "advice",
            f"The application's models disagreed with the database{where} before the deployment too"
            " (application models): that is for the application to fix; a rollback will not.",
        )
    if verdict.failures:
        raise AssertionError("\n".join(verdict.failures))
