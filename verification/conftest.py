"""The post-deploy checklist's plumbing: options, the target database, probes, the report.

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

import math
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import pytest

from migrations import application, catalog, history, image, ledger, registry
from migrations.dburl import URL, DeployError, UsageError, describe, mask, mask_text, resolve, scrub
from migrations.steps import load_all, rewrites, title
from verification import behaviour, operations
from verification.advice import DIFFERENCES
from verification.db import LOCK_TIMEOUT_MS, MAX_ROW_LOSS, SCAN_ROWS, STATEMENT_TIMEOUT_MS, Probe, Target
from verification.repairs import Difference
from verification.report import DEFERRED, DeploymentReport, note
from verification.state import ALIASES, Judge, State, check, target_name

if TYPE_CHECKING:  # SQLAlchemy is imported only when --app-models is given
    from verification.models import Models

TARGETS = pytest.StashKey[dict[str, Target]]()  # by masked URL, in the order given
LEDGER_HEAD = pytest.StashKey[str]()  # --to ledger: the state the ledger records
BEFORE = pytest.StashKey[image.BeforeImage]()  # --before FILE, read once
APP_MODELS = pytest.StashKey[Any]()  # --app-models, imported once (verification.models.Models)
# Numeric options: (type, lowest, highest), checked before anything runs.
NUMBERS: dict[str, tuple[type[int] | type[float], float, float]] = {
    "--lock-timeout": (int, 1, 600_000),
    "--statement-timeout": (int, 1, 3_600_000),
    "--app-timeout": (float, 0.1, 600),
    "--backup-max-age": (float, 0, 100_000),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """The verification options."""
    # first in --help, right after the positional arguments
    try:
        named = title()
    except (UsageError, ImportError, AttributeError):  # said in one line once the options are read
        named = "the chain's"
    group = parser.getgroup("azak", f"{named} post-deploy verification", after="_anonymous")
    group.addoption(
        "--db-url",
        action="append",
        default=[],
        help="database to verify, repeatable for a fleet (else DATABASE_URL, else POSTGRES_*)",
    )
    group.addoption("--db-urls-file", default=None, help="a file of database URLs, one per line")
    group.addoption(
        "--to",
        default=None,
        metavar="head|base|ledger|NAME",
        help="the state to verify: after migration NAME, 'head' (every migration; the default), "
        "'base' (before the first: a complete rollback) or 'ledger' (what the ledger records)",
    )
    group.addoption(
        "--expect",
        default=None,
        metavar="upgraded|rolled-back",
        help="the same as --to: upgraded = head, rolled-back = base",
    )
    group.addoption(
        "--before",
        default=None,
        metavar="FILE",
        help="a before-image file of this database, for one the kit did not deploy (default: the image of"
        " the deployment its registry records; 'none': judge only what the migrations declare)",
    )
    group.addoption(
        "--allow",
        action="append",
        default=[],
        metavar="OBJECT",
        help="a difference to allow, by the object it names (e.g. 'index stocks.ix_extra'; "
        "* and ? match); shown as allowed, repeatable",
    )
    group.addoption(
        "--env-name",
        default=None,
        help="environment name for the report and record (default: the one the database was last named)",
    )
    group.addoption(
        "--executor", default=None, help="who runs the verification (default: $AZAK_EXECUTOR, else OS user)"
    )
    group.addoption("--app-url", default=None, help="application health URL that must answer 2xx")
    group.addoption("--app-timeout", default=5.0, metavar="S", help="seconds the health URL may take (5)")
    # Not --log-file: that is pytest's own option, and pytest would overwrite the file with its log.
    group.addoption("--app-log", default=None, help="application log file to scan for errors")
    group.addoption(
        "--since", default=None, help="scan the log from this time on (ISO time, or 30m / 2h ago)"
    )
    group.addoption(
        "--app-models",
        default=None,
        metavar="PACKAGE.MODULE[:ATTR]",
        help="the application's SQLAlchemy declarative base or MetaData, compared with the database"
        " (e.g. backend.db.models:Base)",
    )
    group.addoption(
        "--app-path", default=None, metavar="DIR", help="put first on sys.path to import --app-models from"
    )
    group.addoption("--backup-dir", default=None, help="directory of the pre-deploy backup")
    group.addoption(
        "--backup-max-age", default=24.0, metavar="H", help="hours the backup may be old (default 24)"
    )
    group.addoption(
        "--lock-timeout",
        default=LOCK_TIMEOUT_MS,
        metavar="MS",
        help=f"lock_timeout of every check's session (default {LOCK_TIMEOUT_MS})",
    )
    group.addoption(
        "--statement-timeout",
        default=STATEMENT_TIMEOUT_MS,
        metavar="MS",
        help=f"statement_timeout of every check's session (default {STATEMENT_TIMEOUT_MS})",
    )
    # -- the data checks (test_data.py) --
    group.addoption(
        "--max-row-loss",
        type=fraction,
        default=MAX_ROW_LOSS,
        metavar="F",
        help=f"the share of a table's rows (0..1) it may lose since the before-image: the application"
        f" deletes rows; more is a loss (default {MAX_ROW_LOSS}; 1: never judged)",
    )
    group.addoption(
        "--scan-rows",
        type=int,
        default=SCAN_ROWS,
        metavar="N",
        help=f"rows per table the data checks try against the catalog's word (default {SCAN_ROWS:,};"
        " 0: every row)",
    )
    group.addoption(
        "--record",
        default=None,
        metavar="FILE|none",
        help="deployment record to append this run's row to (default $AZAK_RECORD, else "
        "data/deployments.md; 'none': no record)",
    )


def fraction(text: str) -> float:
    """--max-row-loss: a share of rows, 0..1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


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
    targets: dict[str, Target] = {}
    try:
        given = config.getoption("--before")
        if given and given != "none":  # a bad file is the operator's input: one line, no checks run
            config.stash[BEFORE] = image.load(Path(given))
        for text in given_urls(config):
            target = Target(
                resolve(text), config.getoption("--lock-timeout"), config.getoption("--statement-timeout")
            )
            if mask(target.url) in targets:
                continue
            targets[mask(target.url)] = target
            target.connect()
            target.blind = target.blind_spot()  # one check fails naming it; the others say why not
            admissible(target, config.stash.get(BEFORE, None))
        load_app_models(config, [t.url for t in targets.values()])
    except (UsageError, DeployError, OSError) as exc:
        for target in targets.values():
            target.close()
        raise pytest.UsageError(str(exc)) from None
    config.stash[TARGETS] = targets
    if target_name(config) == "ledger":
        config.stash[LEDGER_HEAD] = ledger_head(list(targets.values()))
    executor = ledger.who(config.getoption("--executor"))
    actions = start_history(config, targets, executor)
    report = DeploymentReport(config, list(targets.values()), executor, chosen(config))
    report.actions = actions
    config.pluginmanager.register(report, "azak-report")
    report.learn_servers()


def load_app_models(config: pytest.Config, urls: list[URL]) -> None:
    """--app-models: the application's models, imported before any check (a module that cannot
    be imported, or holds no models, is one usage line, without the passwords the application's
    own error may quote); SQLAlchemy only then."""
    spec, path = config.getoption("--app-models"), config.getoption("--app-path")
    if path and not spec:
        raise UsageError("--app-path is where --app-models is imported from: give --app-models too")
    if spec:
        from verification import models

        try:
            config.stash[APP_MODELS] = models.load(spec, path)
        except UsageError as exc:
            line = str(exc)
            for secret in [*urls, os.environ.get("DATABASE_URL")]:
                line = scrub(line, secret)
            raise UsageError(line) from None


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


def validate(config: pytest.Config) -> None:
    """The options an operator gives, each a usage error in one line when wrong."""
    for name, (kind, low, high) in NUMBERS.items():
        text = config.getoption(name)
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{name}={text}: not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise pytest.UsageError(f"{name}={text}: must be between {low!r} and {high!r}")
        setattr(config.option, name.lstrip("-").replace("-", "_"), value)
    expect = config.getoption("--expect")
    if expect and expect not in ALIASES:
        raise pytest.UsageError(f"--expect={expect}: one of {', '.join(ALIASES)} (or --to head|base|NAME)")
    since = config.getoption("--since")
    try:
        operations.parse_since(since) if since else None
    except ValueError:
        raise pytest.UsageError(f"--since={since}: neither an ISO time nor 30m / 2h / 1d") from None
    try:
        load_all()  # the chain itself: a change that cannot load is one line
    except (UsageError, ImportError, AttributeError) as error:
        raise pytest.UsageError(f"the chain of changes does not load: {error}") from None
    chosen(config)  # --to: a known migration, head, base or ledger


def admissible(target: Target, before: image.BeforeImage | None) -> None:
    """The application's database (unless the role cannot see public: one check fails naming
    it), its ledger in the kit's registry, and a --before file of it (never of another
    database); else one line."""
    if not target.blind and not target.value(application.EXISTS_SQL):
        raise application.not_application(target.url)
    if target.legacy_ledger():
        raise UsageError(
            f"{mask(target.url)} keeps the ledger of an earlier kit (public.schema_migrations): run"
            " `python -m migrations adopt` once where that kit ran upgrade (its before-image comes along),"
            " then verify"
        )
    if before is not None:
        identity = target.identity()
        if (before.identity or before.database) not in (identity, identity.split(" on server ")[0]):
            raise UsageError(
                f"--before {before.path} is an image of {before.identity or before.database},"
                f" not of {identity}: it cannot be this database's yardstick"
            )


def start_history(
    config: pytest.Config, targets: dict[str, Target], executor: str
) -> dict[str, history.Action]:
    """This run's row in each database's history (where the registry is and the role may write
    it); the environment the databases remember, when --env-name is not given."""
    given = config.getoption("--env-name")
    if hasattr(config, "workerinput"):  # xdist: the controller keeps the history and the record
        config.option.env_name = given or history.UNSPECIFIED
        return {}
    actions = {}
    for name, target in targets.items():
        actions[name] = history.Action(target.url, "verify", target_name(config), given, executor)
        actions[name].start(create=False)  # verification never makes the registry
    remembered = [a.environment for a in actions.values() if a.environment != history.UNSPECIFIED]
    config.option.env_name = given or (remembered[0] if remembered else history.UNSPECIFIED)
    return actions


def given_urls(config: pytest.Config) -> list[str | None]:
    """The URLs of --db-url and --db-urls-file; [None] (the environment's) when none is given."""
    urls: list[str | None] = list(config.getoption("--db-url") or [])
    listing = config.getoption("--db-urls-file")
    if listing:
        lines = Path(listing).read_text().splitlines()
        urls += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return urls or [None]


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


def ledger_head(targets: list[Target]) -> str:
    """`--to ledger`: the state the ledger records, the same on every database given; an
    interrupted migration (applying / reverting) is not a state to verify."""
    names, heads = [m.name for m in load_all()], set()
    for target in targets:
        if target.blind:  # its checks are not run: test_access names why
            continue
        rows = target.ledger() or {}
        unfinished = [f"{n} ({s})" for n, s in rows.items() if s != "applied"]
        if unfinished:
            raise pytest.UsageError(
                f"--to ledger: {mask(target.url)} has {', '.join(unfinished)}: finish it first"
            )
        applied = [n for n in names if n in rows]
        heads.add(applied[-1] if applied else "base")
    if len(heads) > 1:
        raise pytest.UsageError(f"--to ledger: the databases' ledgers differ ({', '.join(sorted(heads))})")
    return heads.pop() if heads else "base"


def chosen(config: pytest.Config) -> str:
    """The migration the verified state ends with, or 'base'; a usage error if unknown."""
    names = [m.name for m in load_all()]
    name = target_name(config)
    if name == "ledger":  # resolved once connected (--collect-only: as head)
        name = config.stash.get(LEDGER_HEAD, "head")
    name = names[-1] if name == "head" else name
    if name not in (*names, "base"):
        raise pytest.UsageError(f"--to {name}: unknown migration; known: head, base, {', '.join(names)}")
    return name


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
    chain, name = load_all(), chosen(request.config)
    explicit = request.config.getoption("--before")
    if explicit == "none":
        return State.at(
            chain, name, None, "--before none: only what the migrations declare is judged", waived=True
        )
    owners = {str(rw): m.name for rw, m in rewrites(chain).items()}
    if explicit:
        before: image.BeforeImage | None = request.config.stash[BEFORE]
        return State.at(chain, name, before, "", dict.fromkeys(owners, before))
    try:
        with target.conn.cursor() as cur:
            before, kept, why = registry.yardstick(cur)
    except psycopg2.Error as exc:
        before, kept = None, {}
        why = (
            f"this role may not read the kit's registry ({describe(exc)}): grant it USAGE on schema"
            f" {registry.SCHEMA} and SELECT on its tables"
        )
    finally:
        target.conn.rollback()
    if why:
        why += (
            "; pass --before FILE (`python -m migrations image` writes one before a deployment the kit does"
            " not make), or --before none to judge only what the migrations declare"
        )
    return State.at(chain, name, before, why, {rw: kept.get(owner) for rw, owner in owners.items()})


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
