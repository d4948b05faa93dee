"""Throwaway databases for the project's own tests, made by pytest-postgresql from templates.

Three templates are built once per run and worker on the server (pytest-postgresql's noproc
factory), named for the run so that leftovers of a killed run never collide: `app` (the
application's database before US-001), `deployed` (the same upgraded to US-001's head, whatever
the chain's head: US-001's own tests pin their target) and `head` (upgraded to the chain's head,
for the kit's generic tests).
Each test gets its own clone, dropped afterwards. The server is pytest-postgresql's default,
127.0.0.1:5432 as user postgres; point elsewhere with PGHOST/PGPORT/PGUSER/PGPASSWORD, or
--postgresql-host/--postgresql-port/--postgresql-user/--postgresql-password.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from migrations import image, provenance, record, snapshot
from migrations.__main__ import main as migrations_main
from migrations.changes import appdb
from migrations.dburl import URL, describe, fetch, version_name
from migrations.runner import Runner, Settings

ROOT = Path(__file__).resolve().parent.parent
# US-001's last migration: US-001's own tests deploy to it and verify it (`--to`), whatever
# change follows it on the chain (tests.changes.next_change in `make test`'s PostgreSQL 13 leg).
US001_HEAD = "deprecate_priority_column"
# How long one `pytest verification` run may take before a test says it hangs.
VERIFY_TIMEOUT_S = 300
TEST_STOCKS = 300
# Fast settings for tests: small batches cross batch boundaries even on 300 stocks.
FAST = Settings(lock_timeout_ms=500, retries=2, backoff_s=0.1, lock_wait_s=2.0, batch_size=64)


def server_url(user: str, password: str | None, host: str, port: Any, dbname: str) -> URL:
    """A SQLAlchemy URL for the test server."""
    return URL.create(
        "postgresql+psycopg2",
        username=user,
        password=password or None,
        host=host,
        port=int(port),
        database=dbname,
    )


def load_app(host: str, port: Any, user: str, dbname: str, password: str | None, **_: Any) -> None:
    """Template loader: the application's tables and rows, before US-001."""
    conn = psycopg2.connect(host=host, port=port, user=user, dbname=dbname, password=password)
    with conn, conn.cursor() as cur:
        appdb.create(cur, TEST_STOCKS)
    conn.close()


def load_deployed(to: str | None, **kw: Any) -> None:
    """Template loader: the application's database upgraded by the runner to `to` (None: head)."""
    load_app(**kw)
    url = server_url(kw["user"], kw["password"], kw["host"], kw["port"], kw["dbname"])
    with Runner(url, FAST, out=io.StringIO()) as runner:
        runner.upgrade(to)


def load_us001(**kw: Any) -> None:
    """Template loader: the application's database with US-001 deployed, and nothing after."""
    load_deployed(US001_HEAD, **kw)


def load_head(**kw: Any) -> None:
    """Template loader: the application's database with the whole chain deployed."""
    load_deployed(None, **kw)


# A run's own template names: a run killed before its teardown leaves its templates behind,
# and the next run (or one running beside it on the same server) must not trip over them.
RUN = uuid.uuid4().hex[:8]
# Image files (`python -m migrations image`, an earlier kit's) of this run, never in the repo's
# data/; subprocesses (the CLI, pytest verification) inherit it. The kit keeps its own images in
# each database's registry. Removed when the session ends.
IMAGES = Path(os.environ.get("TMPDIR", "/tmp")) / f"azak_images_{RUN}"
os.environ[image.DIR_ENV] = str(IMAGES)
# Likewise the deployment record that every command and verification writes.
RECORD = Path(os.environ.get("TMPDIR", "/tmp")) / f"azak_record_{RUN}.md"
os.environ[record.PATH_ENV] = str(RECORD)
# The key that signs backups (a backup made by one worker is that worker's). Removed at the end.
BACKUP_KEY = Path(os.environ.get("TMPDIR", "/tmp")) / f"azak_backup_key_{RUN}"
os.environ[provenance.KEY_ENV] = str(BACKUP_KEY)
SERVER = {
    "host": os.environ.get("PGHOST"),
    "port": os.environ.get("PGPORT"),
    "user": os.environ.get("PGUSER"),
    "password": os.environ.get("PGPASSWORD"),
}
# The slowest tests (5-10 s each, measured) start first, so that none is left running alone at
# the end of an xdist run; the rest keep their order.
SLOWEST_FIRST = (
    "test_crash_between_or_inside_batches_resumes_losslessly",
    "test_every_check_is_broken_by_some_case",
    "test_kill_while_the_before_image_is_written_leaves_no_half_image_behind",
    "test_restore_of_a_gzip_bomb_is_refused_in_bounded_memory",
    "test_priority_rollback_is_lossless",
    "test_a_server_older_than_13_is_refused_in_one_line_by_every_command",
    "test_hung_server_answers_within_the_connect_timeout",
    "test_restore_killed_at_any_moment_is_all_or_nothing",
    "test_fleet_is_verified_in_parallel_and_the_broken_database_is_named",
    "test_upgrade_killed_anywhere_resumes_and_rolls_back_losslessly",
    "test_downgrade_killed_anywhere_finishes_losslessly",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest first (a stable sort: every xdist worker collects the same order)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(getattr(item, "originalname", item.name), len(rank)))


def pytest_report_header(config: pytest.Config) -> str:
    """The server this run tests on, at the top of its output (`make test` runs one per version)."""
    host, port, user, password = (
        SERVER[key] or config.getoption(f"postgresql_{key}") or config.getini(f"postgresql_{key}")
        for key in ("host", "port", "user", "password")
    )
    port = port or 5432
    try:
        conn = psycopg2.connect(
            host=host, port=port, user=user, password=password, dbname="postgres", connect_timeout=5
        )
    except psycopg2.Error as exc:
        return f"server: {host}:{port} does not answer ({describe(exc)})"
    version = version_name(conn.server_version)
    conn.close()
    return f"server: PostgreSQL {version} at {host}:{port}"


app_template = factories.postgresql_noproc(**SERVER, dbname=f"azak_app_{RUN}", load=[load_app])
deployed_template = factories.postgresql_noproc(**SERVER, dbname=f"azak_deployed_{RUN}", load=[load_us001])
head_template = factories.postgresql_noproc(**SERVER, dbname=f"azak_head_{RUN}", load=[load_head])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """This process's before-images and record go with it: a test run leaves no files behind
    (each xdist worker, and the controller, has its own)."""
    shutil.rmtree(IMAGES, ignore_errors=True)
    RECORD.unlink(missing_ok=True)
    BACKUP_KEY.unlink(missing_ok=True)


@dataclass
class VerifyRun:
    """The outcome of one `pytest verification` run."""

    returncode: int
    output: str
    failed: set[str] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)


@dataclass
class Db:
    """One throwaway database, and the ways the tests drive it. `to`: the migration it was
    deployed to, which verify() verifies unless told `--to` (None: the chain's head)."""

    url: URL
    to: str | None = None

    @property
    def text_url(self) -> str:
        """The URL as a string, password included (for subprocess arguments)."""
        return self.url.render_as_string(hide_password=False)

    def at(self, url: URL) -> Db:
        """The same deployment reached another way (another role, password or database name)."""
        return Db(url, self.to)

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL in its own committed transaction; rows if any."""
        return fetch(self.url, statement, params)

    def value(self, statement: str, params: Any = None) -> Any:
        """The single value of a query."""
        return self.execute(statement, params)[0][0]

    def runner(self, settings: Settings = FAST) -> Runner:
        """An in-process runner with test settings (quiet)."""
        return Runner(self.url, settings, out=io.StringIO())

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        module: str = "migrations",
        url: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m migrations ARGS --db-url URL` as an operator runs it."""
        argv = [sys.executable, "-m", module, *args]
        if url:
            argv += ["--db-url", self.text_url]
        return run(argv, env=env, timeout=timeout)

    def verify(self, *args: str, tmp: Path | None = None, timeout: float = VERIFY_TIMEOUT_S) -> VerifyRun:
        """`python -m verification ARGS` on this database (its URL in DATABASE_URL, as the
        README runs it), `--to` what it was deployed to unless ARGS say; with the failed and
        passed check ids. A run longer than `timeout` fails the test (subprocess raises)."""
        junit = (tmp or Path(os.environ.get("TMPDIR", "/tmp"))) / f"junit-{uuid.uuid4().hex}.xml"
        pinned = () if self.to is None or any(a.startswith("--to") for a in args) else (f"--to={self.to}",)
        done = run_verification(self.url, f"--junitxml={junit}", *pinned, *args, timeout=timeout)
        result = VerifyRun(done.returncode, done.stdout + done.stderr)
        if junit.exists():
            for case in ET.parse(junit).iter("testcase"):
                name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
                bad = case.find("failure") is not None or case.find("error") is not None
                skipped = case.find("skipped") is not None
                if bad:
                    result.failed.add(name)
                elif not skipped:
                    result.passed.add(name)
            junit.unlink()
        return result

    def snapshot(self) -> snapshot.Snapshot:
        """Schema dump and data fingerprint."""
        return snapshot.take(self.url)


@contextmanager
def throwaway_role(db: Db, prefix: str, setup: str = "", teardown: str = "") -> Iterator[str]:
    """A login role for one test (roles belong to the server, not to a database), set up with
    `setup` and dropped afterwards; `{role}` in either SQL stands for its name."""
    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN; " + setup.format(role=role))
    try:
        yield role
    finally:
        db.execute(teardown.format(role=role) + f" DROP OWNED BY {role}; DROP ROLE {role};")


@pytest.fixture
def owned_db(app_db: Db) -> Iterator[tuple[Db, str]]:
    """app_db whose objects belong to a role that is no superuser (as production's tables
    belong to the application's owner role), allowed to create in public; what it made is dropped with it."""
    objects = ("stocks", "stock_prices_minute", "stock_overtime_price")
    sequences = ("stocks_id_seq", "stock_prices_minute_id_seq", "stock_overtime_price_id_seq")
    setup = "GRANT CREATE ON SCHEMA public TO {role};" + "".join(
        f"ALTER TABLE {name} OWNER TO {{role}};" for name in objects + sequences
    )
    back = "".join(f"ALTER TABLE IF EXISTS {name} OWNER TO postgres;" for name in objects + sequences)
    with throwaway_role(
        app_db,
        "azak_owner",
        setup,
        back + " REVOKE CREATE ON SCHEMA public FROM {role}; DROP OWNED BY {role} CASCADE;",
    ) as role:
        yield app_db, role


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (exit `code`, no traceback)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stdout + done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture
def marker(tmp_path_factory: pytest.TempPathFactory, app_template: NoopExecutor) -> Iterator[Path]:
    """A file path that a program run by the server (as its OS user) or by the kit could
    create; proven able to appear, so that its absence means nothing ran."""
    where = Path(tempfile.mkdtemp(prefix="azm"))  # short: a database name may carry it
    where.chmod(0o777)
    path = where / "ran"
    url = server_url(
        app_template.user, app_template.password, app_template.host, app_template.port, "postgres"
    )
    fetch(url, f"COPY (SELECT 1) TO PROGRAM 'cat > {path}'")  # as the superuser: it works
    assert path.exists(), "the server could not create the marker: its absence would prove nothing"
    path.unlink()
    yield path
    shutil.rmtree(where, ignore_errors=True)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """A command that must succeed: its output, or the test fails showing why."""
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ledger(db: Db) -> dict[str, str]:
    """The ledger's rows (in the kit's registry), migration → state (none without a ledger)."""
    if not db.value("SELECT to_regclass('azak_registry.ledger') IS NOT NULL"):
        return {}
    return dict(db.execute("SELECT name, state FROM azak_registry.ledger"))


def run(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, capturing its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_verification(
    url: URL | None, *args: str, plugins: tuple[str, ...] = (), timeout: float = VERIFY_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """`python -m verification -q ARGS` on `url` as the README runs it (the URL in DATABASE_URL,
    never in argv), with `plugins` loaded; `url` None: the databases are in ARGS. A run longer
    than `timeout` fails the test (subprocess raises)."""
    loaded = [arg for name in plugins for arg in ("-p", name)]
    target = {"DATABASE_URL": url.render_as_string(hide_password=False)} if url is not None else {}
    return run([sys.executable, "-m", "verification", "-q", *loaded, *args], env=target, timeout=timeout)


def clone(template: NoopExecutor, to: str | None = None) -> Iterator[Db]:
    """A fresh database from a pytest-postgresql template, dropped afterwards."""
    name = f"azak_t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=template.user,
        host=template.host,
        port=template.port,
        password=template.password,
        dbname=name,
        template_dbname=template.template_dbname,
    )
    with janitor:
        yield Db(server_url(template.user, template.password, template.host, template.port, name), to)


@pytest.fixture
def app_db(app_template: NoopExecutor) -> Iterator[Db]:
    """The application's database before US-001 (300 stocks, priorities 1..5)."""
    yield from clone(app_template)


def clone_deployed(template: NoopExecutor) -> Iterator[Db]:
    """A clone of the deployed template (US-001's head): its registry (ledger, before-images,
    history) comes along, as with any CREATE DATABASE ... TEMPLATE."""
    yield from clone(template, US001_HEAD)


@pytest.fixture
def deployed_db(deployed_template: NoopExecutor) -> Iterator[Db]:
    """The application's database with US-001 deployed by the runner (and nothing after, its
    verification pinned there), and its before-images."""
    yield from clone_deployed(deployed_template)


@pytest.fixture
def head_db(head_template: NoopExecutor) -> Iterator[Db]:
    """The application's database with the whole chain deployed by the runner (verified at head)."""
    yield from clone(head_template)


@pytest.fixture
def empty_db(app_template: NoopExecutor) -> Iterator[Db]:
    """A database on the same server without the application's tables."""
    janitor_name = f"azak_e_{uuid.uuid4().hex[:12]}"
    t = app_template
    with DatabaseJanitor(user=t.user, host=t.host, port=t.port, password=t.password, dbname=janitor_name):
        yield Db(server_url(t.user, t.password, t.host, t.port, janitor_name))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """`python -m migrations ARGS --db-url URL` in this process (fast, for big matrices of
    inputs): an exception that escaped would fail the test with its traceback, as it would show one."""

    def call(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.setattr(sys, "argv", ["python -m migrations", *args, "--db-url", url])
        monkeypatch.setenv("DATABASE_URL", "")
        code = 0
        try:
            migrations_main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return call
