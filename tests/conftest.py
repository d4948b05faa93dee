"""Throwaway databases for the project's own tests, made by pytest-postgresql from templates.

Two templates are built once per run and worker on the server (pytest-postgresql's noproc
factory), named for the run so that leftovers of a killed run never collide:
`app` (the application's database before US-001) and `deployed` (the same after `upgrade`).
Each test gets its own clone, dropped afterwards. The server is pytest-postgresql's default,
127.0.0.1:5432 as user postgres; point elsewhere with PGHOST/PGPORT/PGUSER/PGPASSWORD, or
--postgresql-host/--postgresql-port/--postgresql-user/--postgresql-password.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
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

from migrations import appdb, image, record, snapshot
from migrations.dburl import URL, fetch
from migrations.rehearse import run_verification
from migrations.runner import Runner, Settings

ROOT = Path(__file__).resolve().parent.parent
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


def load_deployed(**kw: Any) -> None:
    """Template loader: the application's database with US-001 deployed by the runner."""
    load_app(**kw)
    url = server_url(kw["user"], kw["password"], kw["host"], kw["port"], kw["dbname"])
    with Runner(url, FAST, out=io.StringIO()) as runner:
        runner.upgrade()


# A run's own template names: a run killed before its teardown leaves its templates behind,
# and the next run (or one running beside it on the same server) must not trip over them.
RUN = uuid.uuid4().hex[:8]
# Image files (`python -m migrations image`, an earlier kit's) of this run, never in the repo's
# data/; subprocesses (the CLI, pytest verification) inherit it. The kit keeps its own images in
# each database's registry.
os.environ[image.DIR_ENV] = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"azak_images_{RUN}")
# Likewise the deployment record that every command and verification writes.
os.environ[record.PATH_ENV] = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"azak_record_{RUN}.md")
SERVER = {
    "host": os.environ.get("PGHOST"),
    "port": os.environ.get("PGPORT"),
    "user": os.environ.get("PGUSER"),
    "password": os.environ.get("PGPASSWORD"),
}
app_template = factories.postgresql_noproc(**SERVER, dbname=f"azak_app_{RUN}", load=[load_app])
deployed_template = factories.postgresql_noproc(**SERVER, dbname=f"azak_deployed_{RUN}", load=[load_deployed])


@dataclass
class VerifyRun:
    """The outcome of one `pytest verification` run."""

    returncode: int
    output: str
    failed: set[str] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)


@dataclass
class Db:
    """One throwaway database, and the ways the tests drive it."""

    url: URL

    @property
    def text_url(self) -> str:
        """The URL as a string, password included (for subprocess arguments)."""
        return self.url.render_as_string(hide_password=False)

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

    def verify(self, *args: str, tmp: Path | None = None) -> VerifyRun:
        """`pytest verification --db-url URL ARGS`, with the failed and passed check ids."""
        junit = (tmp or Path(os.environ.get("TMPDIR", "/tmp"))) / f"junit-{uuid.uuid4().hex}.xml"
        done = run_verification(self.url, f"--junitxml={junit}", *args)
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


def clone(template: NoopExecutor) -> Iterator[Db]:
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
        yield Db(server_url(template.user, template.password, template.host, template.port, name))


@pytest.fixture
def app_db(app_template: NoopExecutor) -> Iterator[Db]:
    """The application's database before US-001 (300 stocks, priorities 1..5)."""
    yield from clone(app_template)


def clone_deployed(template: NoopExecutor) -> Iterator[Db]:
    """A clone of the deployed template: its registry (ledger, before-images, history) comes
    along, as with any CREATE DATABASE ... TEMPLATE."""
    yield from clone(template)


@pytest.fixture
def deployed_db(deployed_template: NoopExecutor) -> Iterator[Db]:
    """The application's database with US-001 deployed by the runner, and its before-image."""
    yield from clone_deployed(deployed_template)


@pytest.fixture
def empty_db(app_template: NoopExecutor) -> Iterator[Db]:
    """A database on the same server without the application's tables."""
    janitor_name = f"azak_e_{uuid.uuid4().hex[:12]}"
    t = app_template
    with DatabaseJanitor(user=t.user, host=t.host, port=t.port, password=t.password, dbname=janitor_name):
        yield Db(server_url(t.user, t.password, t.host, t.port, janitor_name))
