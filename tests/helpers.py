"""Helpers several test files share: the chain's fault points and a runner paused at one,
another session holding locks, the kit as another clone has it, the bad-input matrix of
commands, the catalog as the kit reads it, a refused upgrade, a failed verification shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from migrations import catalog, image, record
from migrations.dburl import connect
from migrations.steps import Ddl, load_all
from tests.conftest import ROOT, Db, VerifyRun

# How long a paused runner may take to reach its hook point, or a clone's command to end.
WAIT_S = 300

# 300 stocks: five priority batches
BATCH = ("--batch-size", "64")


def fault_points(direction: str) -> list[str]:
    """Every hook point of every migration of the chain, in the order a run meets them:
    before each phase, inside each schema phase (before its commit), inside and after the
    second batch of a data phase. A new migration is attacked by being in the chain."""
    chain = load_all() if direction == "up" else load_all()[::-1]
    points = []
    for m in chain:
        for index, phase in enumerate(m.upgrade if direction == "up" else m.downgrade):
            where = f"{m.name}:{direction}:{index}"
            points.append(f"before:{where}")
            batch = [f"inside-batch:{m.name}:1", f"after-batch:{m.name}:1"]  # met by every data phase
            points += [f"inside:{where}"] if isinstance(phase, Ddl) else batch
    return points


@contextmanager
def paused(db: Db, *args: str, at: str) -> Iterator[subprocess.Popen[str]]:
    """A runner process paused (holding its locks) at a hook point until it finishes."""
    argv = [sys.executable, "-m", "migrations", *args, "--db-url", db.text_url]
    env = {**os.environ, "AZAK_PAUSE_AT": at}
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(WAIT_S, proc.kill)  # a hook never reached ends the wait
    watchdog.start()
    try:
        for line in proc.stdout:  # deterministic: wait for the hook to say it is there
            if line.startswith("paused at"):
                break
        else:
            raise AssertionError(f"never paused at {at}: {proc.communicate(timeout=WAIT_S)}")
    finally:
        watchdog.cancel()
    try:
        yield proc
    finally:
        proc.communicate("go\n", timeout=WAIT_S)  # release it


@contextmanager
def holding(db: Db, statement: str) -> Iterator[int]:
    """Another session holding `statement`'s locks in an open transaction; yields its pid."""
    conn = psycopg2.connect(
        host=db.url.host,
        port=db.url.port,
        user=db.url.username,
        password=db.url.password,
        dbname=db.url.database,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute(statement)
        yield pid
    finally:
        conn.rollback()
        conn.close()


def a_clone(where: Path) -> Path:
    """The kit as another clone has it: its own code (the tests' changes too: the chain may
    name one), its own data/ (nothing of this one's)."""
    skip = shutil.ignore_patterns("__pycache__")
    for name in ("migrations", "verification", "tests/changes"):
        shutil.copytree(ROOT / name, where / name, ignore=skip)
    for name in ("conftest.py", "pytest.ini", "tests/__init__.py"):
        shutil.copy(ROOT / name, where / name)
    return where


def plain_env() -> dict[str, str]:
    """An operator's environment: no test defaults for the record or image folders."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for name in (record.PATH_ENV, image.DIR_ENV, "DATABASE_URL"):
        env.pop(name, None)
    return env


def kit(cwd: Path, db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m migrations ARGS --db-url URL`, run in `cwd` (a clone of the kit)."""
    argv = [sys.executable, "-m", "migrations", *args, "--db-url", db.text_url]
    return subprocess.run(argv, cwd=cwd, env=plain_env(), capture_output=True, text=True, timeout=WAIT_S)


def verify(cwd: Path, suite: Path, db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    """`pytest SUITE --db-url URL ARGS` from `cwd`: the URL is all it is told."""
    argv = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"]
    argv += ["-p", "pytest_metadata.plugin", "-p", "pytest_html.plugin", "--db-url", db.text_url, *args]
    return subprocess.run(argv, cwd=cwd, env=plain_env(), capture_output=True, text=True, timeout=WAIT_S)


# A password the bad-input tests give, which no output, report or record may show.
SECRET = "Pa55-w0rd-never-shown"


# Every command of `python -m migrations`, with arguments it needs.
COMMANDS = {
    "upgrade": ["upgrade"],
    "downgrade": ["downgrade", "--to", "base"],
    "status": ["status"],
    "plan": ["plan"],
    "backup": ["backup", "--dir", "{tmp}"],
    "restore": ["restore", "{backup}", "--yes"],
    "record": ["record"],
    "adopt": ["adopt"],
    "image": ["image", "--dir", "{tmp}"],
    "forget-registry": ["forget-registry", "--yes"],
}


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, starts: str) -> None:
    """A refusal: exit `code`, one stderr line starting `starts`, no traceback, no password."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert SECRET not in done.stdout + done.stderr


def fill(args: list[str], tmp: Path, backup: Path) -> list[str]:
    """A command of COMMANDS with its folder and backup file filled in."""
    return [a.format(tmp=tmp, backup=backup) for a in args]


def catalog_image(db: Db) -> catalog.Image:
    """The database's catalog as the kit reads it (the facts contracts speak of)."""
    conn = connect(db.url)
    try:
        with conn, conn.cursor() as cur:
            return catalog.read(cur)
    finally:
        conn.close()


def shown(result: VerifyRun) -> str:
    """The failed checks and the failure lines of a verification run."""
    lines = [ln.strip() for ln in result.output.splitlines() if "::test_" in ln and ": " in ln]
    return f"failed: {sorted(result.failed)}\n" + "\n".join(lines)[:2000] + "\n" + result.output[-600:]


def refused(db: Db, *args: str) -> str:
    """`upgrade ARGS` refused (exit 1, no traceback) with nothing changed: its stderr."""
    before = db.snapshot()
    done = db.cli("upgrade", *args)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert db.snapshot().differences(before) == [], "a refused upgrade must change nothing"
    return done.stderr
