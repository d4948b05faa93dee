"""The post-deploy checklist's plumbing: pytest's hooks and the checks' fixtures. The options are
declared and checked in `options.py`, the databases connected and their yardstick found in
`targets.py`, the report written by `report.py`.

python -m verification --db-url=postgresql://user@host/db [--to head|base|NAME]
    [--env-name=production --executor=NAME --html=reports/x.html --self-contained-html
     --record=reports/deployments.md --app-url=URL --app-log=F --since=T --backup-dir=D
     --app-models=backend.db.models:Base --app-path=../app]

(`pytest verification ...` runs the same checks with every installed plugin loaded.) Bad
options are refused before any connection or check, in one line (exit 4, pytest's code for
usage errors), and leave no row in the record.

A fleet: `--db-url` more than once, or `--db-urls-file FILE`; every database check then runs
once per database, its test id naming the database (password masked); `-n auto` runs them
in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

import psycopg2
import pytest

from migrations import catalog, ledger
from migrations.dburl import describe, mask_text
from migrations.steps import load_all
from verification import behaviour
from verification.advice import DIFFERENCES
from verification.db import Probe, Target
from verification.options import HTML_INI, chosen, declare, validate
from verification.repairs import Difference
from verification.report import DEFERRED, DeploymentReport, note
from verification.state import Judge, State, check
from verification.targets import APP_MODELS, TARGETS, connect, expected, start_history

if TYPE_CHECKING:  # SQLAlchemy is imported only when --app-models is given
    from verification.models import Models


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """The verification's options; pytest.ini's pytest-html setting known when pytest-html is not
    loaded (`python -m verification` loads it only for --html), so that it warns of nothing."""
    declare(parser)
    if not any(pluginmanager.has_plugin(name) for name in ("html", "pytest_html.plugin")):
        parser.addini(HTML_INI, "pytest-html's: secrets kept from the report", type="linelist")


def pytest_configure(config: pytest.Config) -> None:
    """Check the options, then connect once, before any check: bad input or an unreachable
    database is one line."""
    config.addinivalue_line("markers", "needs(key, ...): the check tries objects the state must have")
    config.addinivalue_line(
        "markers", "applied(name, not_=False): the check holds while NAME is (not) applied"
    )
    config.addinivalue_line("markers", "checklist(item): the check's checklist item, if not its module's")
    config.addinivalue_line(
        "markers", "rollback_source: the check judges what a rollback gives back (failed: restore first)"
    )
    if config.option.help or config.option.version:
        return  # --help lists the options without a database
    validate(config)
    if config.option.collectonly or config.option.markers:
        return  # nothing to connect to
    targets = connect(config)
    executor = ledger.who(config.getoption("--executor"))
    actions = start_history(config, targets, executor)
    report = DeploymentReport(config, list(targets.values()), executor, chosen(config))
    report.actions = actions
    config.pluginmanager.register(report, "azak-report")
    report.learn_servers()


# Checks that read nothing of schema public: they run whatever the role may see there.
SCHEMA_FREE = ("test_access.py", "test_operations.py")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A role that may not use schema public: its database's checks are not run, each saying
    why (test_access fails naming the privilege), and the report and record are written."""
    if item.path.name in SCHEMA_FREE:
        return
    targets = item.config.stash.get(TARGETS, {})
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("target") if callspec is not None else None
    target = targets.get(name) if name else next(iter(targets.values()), None)
    if target is not None and target.blind:
        pytest.skip(f"{target.blind}: not checked")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A fleet: every check that reads a database runs once per database, named by it."""
    targets = metafunc.config.stash.get(TARGETS, {})
    if "target" in metafunc.fixturenames and len(targets) > 1:
        metafunc.parametrize("target", list(targets), indirect=True, scope="session")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the sessions."""
    for target in config.stash.get(TARGETS, {}).values():
        target.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed check reads as its sentence (expected vs found), not as a traceback; with
    an explicit --tb, pytest's own report stays."""
    report = yield
    if report.failed and call.excinfo is not None and item.config.getoption("tbstyle") == "auto":
        report.longrepr = failure_sentence(call.excinfo.value)
    return report


def failure_sentence(error: BaseException) -> str:
    """What a failed check says: its message, or the database's first line."""
    if isinstance(error, psycopg2.Error):
        return f"database error: {describe(error)}"
    if isinstance(error, AssertionError | pytest.fail.Exception):
        return mask_text(str(error).split("\nassert ", 1)[0])
    return mask_text(f"{type(error).__name__}: {error}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the checks that apply at the verified state (known from the chain, no database)."""
    plan = State.at(load_all(), chosen(config), None)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        needed = [key for mark in item.iter_markers("needs") for key in mark.args]
        applied = [
            (name, mark.kwargs.get("not_", False))
            for mark in item.iter_markers("applied")
            for name in mark.args
        ]
        fits = all(plan.expects(k) for k in needed) and all(plan.is_applied(n) != no for n, no in applied)
        (keep if fits else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The database under verification (read-only session with timeouts)."""
    targets = request.config.stash[TARGETS]
    return targets[getattr(request, "param", None) or next(iter(targets))]


@pytest.fixture
def probe(target: Target) -> Iterator[Probe]:
    """A transaction for behaviour probes; always rolled back, so nothing is ever committed."""
    with target.probe() as p:
        yield p


@pytest.fixture(scope="session")
def found(target: Target) -> catalog.Image:
    """The database's catalog, read once (verification changes nothing)."""
    conn = target.conn
    try:
        with conn.cursor() as cur:
            return catalog.read(cur)
    finally:
        conn.rollback()


@pytest.fixture(scope="session")
def state(request: pytest.FixtureRequest, target: Target) -> State:
    """The state the database should be in: before-image + the contracts up to the target. The
    image is the one of the deployment the registry records (or --before FILE's)."""
    return expected(request.config, target)


@pytest.fixture(scope="session")
def app_models(request: pytest.FixtureRequest) -> Models:
    """The application's models (--app-models); the check is skipped without the option."""
    if APP_MODELS not in request.config.stash:
        pytest.skip("--app-models not given: not checked")
    models: Models = request.config.stash[APP_MODELS]
    return models


@pytest.fixture(scope="session")
def categories(target: Target) -> dict[str, str]:
    """pg_settings' category of every setting the server knows (lower-case names)."""
    return dict(target.rows("SELECT lower(name), category FROM pg_catalog.pg_settings"))


@pytest.fixture
def judge(
    request: pytest.FixtureRequest,
    state: State,
    found: catalog.Image,
    target: Target,
    categories: dict[str, str],
) -> Judge:
    """`judge(group)`: the group's facts are as expected, or the check fails listing every
    difference; allowed and harmless ones are noted (terminal, report, record)."""
    allowed = list(request.config.getoption("--allow"))

    def by_behaviour(key: catalog.Key, want: str, have: str) -> tuple[bool, str]:
        same, shown = behaviour.judge(target, found, key, want, have)
        probes = behaviour.deciders(key) if same else ()
        if probes:  # left to its probes: a failed one repairs it with its migration's statement
            request.node.user_properties.append((DEFERRED, [*key, want, have, *probes]))
        return same, shown

    def judged(group: str, troubleshoot: Callable[[], list[str]] | None = None) -> None:
        notes: list[str] = []
        try:
            check(state, found, group, allowed, notes, troubleshoot, categories, by_behaviour)
        except AssertionError:  # what differs, for the advice
            request.node.stash[DIFFERENCES] = differences(state, found, group, allowed, categories)
            raise
        finally:
            note(request, notes)

    return judged


def differences(
    state: State, found: catalog.Image, group: str, allowed: list[str], categories: dict[str, str]
) -> list[Difference]:
    """The facts of a group that fail (not allowed, not noted), with what each should be and is."""
    judgement = state.judge(found, group, categories).allow(allowed)
    keys = [k for k in (*state.expected, *found)]
    subjects = {line.split(": ", 1)[0] for line in judgement.lines}
    subjects |= {str(d.key) for d, _ in judgement.behaviour}
    return [
        Difference(k, state.expected.get(k), found.get(k)) for k in dict.fromkeys(keys) if str(k) in subjects
    ]
