"""Backups, restores and URLs never lose data and never touch the wrong database (issue 11).

Each test names the promise it proves; the numbers in the comments are the issue's items.
"""

from __future__ import annotations

import base64
import gzip
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest
from pytest_postgresql.executors.noop import NoopExecutor

from migrations import backup, provenance, record, restore, snapshot
from migrations.changes import appdb
from migrations.dburl import connect, libpq_command, mask, parse
from migrations.lock import LOCK_KEY
from migrations.steps import load_all
from tests.conftest import ROOT, TEST_STOCKS, Db, clone, one_line, run, run_verification
from verification import operations

SECRET = "Qu3ry-pa55-never-shown"
# The kill-9 test's size and number of kills; by hand: AZAK_RESTORE_STOCKS=300000 AZAK_RESTORE_KILLS=40
BIG_STOCKS = int(os.environ.get("AZAK_RESTORE_STOCKS", "50000"))
KILLS = int(os.environ.get("AZAK_RESTORE_KILLS", "5"))
# Kills land at a random moment up to this many seconds into the restore's transaction.
WINDOW_S = float(os.environ.get("AZAK_RESTORE_WINDOW", "0.5"))


def kit(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    """`python -m migrations ARGS` with no DATABASE_URL but what `env` gives."""
    return run([sys.executable, "-m", "migrations", *args], env={"DATABASE_URL": "", **(env or {})})


@pytest.fixture
def other_app_db(app_template: NoopExecutor) -> Iterator[Db]:
    """A second application database on the same server."""
    yield from clone(app_template)


@pytest.fixture
def app_backup(app_db: Db, tmp_path: Path) -> Path:
    """A backup of app_db, made by the kit."""
    return backup.backup(app_db.url, tmp_path / "backups")


def pg_dump_lines(db: Db) -> Counter[str]:
    """The multiset of lines of a full pg_dump (without the lines that vary between dumps), but
    for the kit's registry: it keeps its history across a restore, by design."""
    argv, env = libpq_command(db.url)
    dump = ["pg_dump", "--exclude-schema=azak_registry", *argv]
    out = subprocess.run(dump, capture_output=True, text=True, env=env, check=True, timeout=120).stdout
    return Counter(ln for ln in out.splitlines() if not ln.startswith(snapshot.VOLATILE))


# -- 1. the --db-url given is the target, wherever it stands ------------------------------------


def test_db_url_before_the_command_is_the_target_not_database_url(app_db: Db, other_app_db: Db) -> None:
    untouched = app_db.snapshot()
    done = kit("--db-url", other_app_db.text_url, "upgrade", env={"DATABASE_URL": app_db.text_url})
    assert done.returncode == 0, done.stderr
    assert app_db.snapshot().differences(untouched) == []
    assert other_app_db.value("SELECT count(*) FROM azak_registry.ledger") == len(load_all())
    twice = kit("--db-url", app_db.text_url, "status", "--db-url", other_app_db.text_url)
    assert "--db-url given twice" in one_line(twice, 2)


# -- 2. backup and restore go where status goes: the URL's query parameters count ---------------


def test_backup_and_restore_honour_the_url_query_parameters_as_status_does(
    app_db: Db, other_app_db: Db, tmp_path: Path
) -> None:
    other_app_db.execute("UPDATE stocks SET name = 'only in the other database' WHERE code = '005930'")
    # libpq: a query parameter overrides the URL's main part; the database is the other one
    url = f"{app_db.text_url}?dbname={other_app_db.url.database}&host=127.0.0.1"
    status = kit("status", "--db-url", url)
    assert f"dbname={other_app_db.url.database}" in status.stdout, status.stdout + status.stderr
    done = kit("backup", "--dir", str(tmp_path), "--db-url", url)
    assert done.returncode == 0, done.stderr
    (made,) = tmp_path.glob("azak_backup_*.sql.gz")
    assert b"only in the other database" in gzip.decompress(made.read_bytes())
    # sslmode=require on a server without SSL: every command refuses alike, the backup too
    ssl = kit("backup", "--dir", str(tmp_path / "ssl"), "--db-url", f"{app_db.text_url}?sslmode=require")
    assert "cannot connect" in one_line(ssl, 1)
    assert not (tmp_path / "ssl").exists() or not list((tmp_path / "ssl").iterdir())
    before = app_db.snapshot()
    restored = kit("restore", str(made), "--yes", "--db-url", f"{app_db.text_url}?sslmode=require")
    assert "cannot connect" in one_line(restored, 1)
    assert app_db.snapshot().differences(before) == []


# -- 3. a restore is all or nothing, killed at any moment ---------------------------------------


@pytest.fixture(scope="module")
def big_backup(app_template: NoopExecutor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A backup of an application database with BIG_STOCKS more stocks, and its snapshot."""
    for db in clone(app_template):
        conn = connect(db.url)
        with conn, conn.cursor() as cur:
            appdb.add_stocks(cur, BIG_STOCKS, first=TEST_STOCKS + 1)
        conn.close()
        yield backup.backup(db.url, tmp_path_factory.mktemp("big")), db.snapshot()


def session_of(db: Db, pid: int) -> list[tuple]:
    """The restore's database session (application_name names its OS pid): (xact_start,)."""
    return db.execute(
        "SELECT xact_start FROM pg_stat_activity WHERE application_name = %s",
        (f"azak-db-migrations:{pid}",),
    )


def killed_restore(db: Db, path: Path, rng: random.Random, fault_at: str | None) -> float:
    """Start a restore; kill -9 it at a random moment while it streams (or at `fault_at`);
    return once its database session is gone, with the kill's moment (s into the transaction)."""
    env = {**os.environ, "DATABASE_URL": db.text_url}
    if fault_at:
        env["AZAK_FAULT_AT"] = fault_at  # "complete": no fault point, no kill
    argv = [sys.executable, "-m", "migrations", "restore", str(path), "--yes", "--other-database"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    moment = -1.0
    try:
        if not fault_at:
            while proc.poll() is None and not any(x for (x,) in session_of(db, proc.pid)):
                time.sleep(0.005)  # until it is inside its transaction
            moment = rng.uniform(0, WINDOW_S)
            time.sleep(moment)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    deadline = time.monotonic() + 120  # a hang guard, not a measure
    while session_of(db, proc.pid):  # the server rolls back once it sees the connection gone
        assert time.monotonic() < deadline, "the killed restore's session never ended"
        time.sleep(0.01)
    return moment


def test_restore_killed_at_any_moment_is_all_or_nothing(
    app_db: Db, app_backup: Path, big_backup: tuple
) -> None:
    path, restored = big_backup
    before = app_db.snapshot()
    rng = random.Random(os.environ.get("AZAK_RESTORE_SEED", "11"))
    # two fault points, one run left to complete (it must restore: the kills then prove something)
    moments = ["restore:after-teardown", "restore:before-commit", "complete"] + [None] * KILLS
    outcomes, moments_s = [], []
    for fault_at in moments:
        moments_s.append(killed_restore(app_db, path, rng, fault_at))
        now = app_db.snapshot()
        if not now.differences(before):
            outcomes.append("before")
        elif not now.differences(restored):
            outcomes.append("restored")
            restore.restore(app_db.url, app_backup)  # back to before, for the next kill
        else:
            outcomes.append(f"MIXED: {now.differences(before)[:3]}")
        if fault_at == "complete":
            assert outcomes[-1] == "restored", f"an uninterrupted restore left {outcomes[-1]}"
        elif fault_at:
            assert outcomes[-1] == "before", f"killed before COMMIT ({fault_at}), found {outcomes[-1]}"
    assert all(o in ("before", "restored") for o in outcomes), outcomes
    print(f"restore of {BIG_STOCKS} stocks killed {len(moments)} times: {Counter(outcomes)}")
    print("kill moments (s into the transaction, -1: fault point) and outcomes:")
    print(", ".join(f"{m:.2f}:{o}" for m, o in zip(moments_s, outcomes, strict=True)))


# -- 4. a restore runs only a backup the kit wrote, as it wrote it --------------------------------


def with_lines(good: Path, tmp: Path, after: str, inserted: str) -> Path:
    """A copy of a good backup with `inserted` after the first line starting with `after`."""
    lines = gzip.decompress(good.read_bytes()).decode().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith(after)) + 1
    lines[at:at] = [inserted]
    bad = tmp / f"crafted_{uuid.uuid4().hex[:6]}.sql.gz"
    bad.write_bytes(gzip.compress("".join(lines).encode()))
    return bad


@pytest.mark.parametrize(
    ("after", "inserted"),
    [
        ("SET row_security", "\\! touch {marker}\n"),
        ("SET row_security", "SELECT 1; \\! touch {marker}\n"),
        ("SET row_security", "SELECT 'it''s quoted' AS a, $q$ \\ $q$ AS b;\\o |touch {marker}\n"),
        ("SET row_security", "COPY public.stocks (code) FROM PROGRAM 'touch {marker}';\n"),
        ("SET row_security", "COMMIT;\n"),
    ],
    ids=[
        "shell escape line",
        "shell escape after a statement",
        "after quotes",
        "copy from program",
        "commit",
    ],
)
def test_restore_refuses_what_the_kit_did_not_write_changing_nothing(
    app_db: Db, app_backup: Path, tmp_path: Path, marker: Path, after: str, inserted: str
) -> None:
    """A line added to the kit's backup: its bytes no longer match the digest its signed header
    records; refused before anything runs (the line it was added at no longer matters)."""
    bad = with_lines(app_backup, tmp_path, after, inserted.format(marker=marker))
    before = app_db.snapshot()
    done = kit("restore", str(bad), "--yes", "--db-url", app_db.text_url)
    message = one_line(done, 1)
    assert "differs from the digest its header records" in message and "nothing changed" in message
    assert not marker.exists(), "the file's command ran"
    assert app_db.snapshot().differences(before) == []


def test_restore_refuses_a_dump_of_another_database(empty_db: Db, app_db: Db, tmp_path: Path) -> None:
    empty_db.execute("CREATE TABLE other (id integer)")
    argv, env = libpq_command(empty_db.url)
    dump = subprocess.run(["pg_dump", *argv], capture_output=True, env=env, check=True, timeout=120).stdout
    (tmp_path / "other.sql").write_bytes(dump)
    before = app_db.snapshot()
    done = kit("restore", str(tmp_path / "other.sql"), "--yes", "--db-url", app_db.text_url)
    assert "was not written by this kit" in one_line(done, 1)
    assert app_db.snapshot().differences(before) == []


# -- 5. passwords masked wherever a URL carries them -------------------------------------------


def test_password_in_a_url_query_parameter_is_masked_everywhere(
    app_db: Db, deployed_db: Db, tmp_path: Path
) -> None:
    assert SECRET not in mask(parse(f"{app_db.text_url}?password={SECRET}"))
    url = f"{app_db.text_url}?password={SECRET}"
    outputs = [
        kit("status", "--db-url", url),
        kit("backup", "--dir", str(tmp_path), "--db-url", url),
        kit("status", "--db-url", f"postgresql://postgres@127.0.0.1:1/x?password={SECRET}"),
        kit("status", "--db-url", f"postgresql://postgres@127.0.0.1/x?password={SECRET}&bogus=1"),
    ]
    assert [o.returncode for o in outputs] == [0, 0, 1, 2], [o.stderr for o in outputs]
    assert "password=***" in outputs[0].stdout
    fleet = run_verification(
        None,
        f"--db-url={url}",
        f"--db-url={deployed_db.text_url}?password={SECRET}",
        f"--junitxml={tmp_path / 'junit.xml'}",
        "-rA",
    )
    texts = [o.stdout + o.stderr for o in [*outputs, fleet]] + [(tmp_path / "junit.xml").read_text()]
    assert "password=***" in texts[-1]  # the test ids name the databases, masked
    leaks = [i for i, text in enumerate(texts) if SECRET in text]
    assert leaks == [], f"the password leaked into outputs #{leaks}"


class Guarded(BaseHTTPRequestHandler):
    """200 with the right Basic credentials, 401 without them."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        good = "Basic " + base64.b64encode(f"app:{SECRET}".encode()).decode()
        self.send_response(200 if self.headers.get("Authorization") == good else 401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def guarded_app() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Guarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://app:{SECRET}@127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()


def test_app_url_credentials_are_sent_as_a_header_and_shown_masked(guarded_app: str) -> None:
    status, _, reason = operations.health(guarded_app, 5)
    assert status == 200
    assert SECRET not in operations.shown(guarded_app) and "app:***@127.0.0.1" in operations.shown(
        guarded_app
    )
    status, _, reason = operations.health(guarded_app.replace("127.0.0.1", "256.0.0.1"), 2)
    assert status is None and SECRET not in reason


def test_app_url_credentials_appear_in_no_verification_output(app_db: Db, guarded_app: str) -> None:
    result = app_db.verify("--expect=rolled-back", f"--app-url=http://app:{SECRET}@127.0.0.1:1/down")
    assert "no answer" in result.output
    assert SECRET not in result.output


# -- 6. backups are private and never overwritten ----------------------------------------------


def test_backups_are_private_and_never_overwrite_each_other(app_db: Db, tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    now = datetime(2025, 11, 17, 9, 30, 0)
    made: list[Path] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            made.append(backup.backup(app_db.url, directory, now=now))
        except BaseException as exc:  # noqa: BLE001 (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(p.name for p in made) and len(set(names)) == 4, names
    assert all(re.fullmatch(r"azak_backup_20251117_093000(_\d+)?\.sql\.gz", n) for n in names), names
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in made:
        assert path.stat().st_mode & 0o777 == 0o600
        with path.open("rb") as raw:
            assert provenance.verify(raw, path.name).identity.database == app_db.url.database


# -- 7. every session pins search_path: a schema named after the role changes nothing ------------


def test_schema_named_after_the_role_does_not_catch_the_new_tables(app_db: Db) -> None:
    app_db.execute("CREATE SCHEMA postgres")  # default search_path is "$user", public
    before = app_db.snapshot()
    assert app_db.cli("upgrade").returncode == 0
    assert app_db.value("SELECT count(*) FROM pg_tables WHERE schemaname = 'postgres'") == 0
    assert app_db.value("SELECT to_regclass('public.product_info') IS NOT NULL")
    status = app_db.cli("status")
    every = len(load_all())
    assert f"{every} of {every} migrations applied" in status.stdout, status.stdout
    assert app_db.value("SELECT count(*) FROM stocks WHERE priority <> 1") == 0
    assert app_db.cli("downgrade", "--to", "base").returncode == 0
    assert app_db.snapshot().differences(before) == []


# -- 8. the runbook's Option 2, typed as written, on an upgraded database ------------------------


@pytest.mark.parametrize("on_error_stop", [True, False], ids=["ON_ERROR_STOP", "no ON_ERROR_STOP"])
def test_runbook_gunzip_and_psql_f_on_an_upgraded_database_gives_back_the_dump_line_for_line(
    app_db: Db, app_backup: Path, tmp_path: Path, on_error_stop: bool
) -> None:
    before_lines, before = pg_dump_lines(app_db), app_db.snapshot()
    assert app_db.cli("upgrade").returncode == 0
    copy = tmp_path / app_backup.name
    shutil.copy(app_backup, copy)
    subprocess.run(["gunzip", str(copy)], check=True, timeout=120)
    sql = copy.with_suffix("")  # azak_backup_X.sql
    url = app_db.url
    stop = ["-v", "ON_ERROR_STOP=1"] if on_error_stop else []
    argv = ["psql", "-h", str(url.host), "-U", str(url.username), "-d", str(url.database), *stop]
    done = subprocess.run([*argv, "-f", str(sql)], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    assert pg_dump_lines(app_db) == before_lines
    assert app_db.snapshot().differences(before) == []
    # and the kit's own restore takes the gunzip'd .sql as well
    assert app_db.cli("upgrade").returncode == 0
    assert app_db.cli("restore", str(sql), "--yes").returncode == 0
    assert app_db.snapshot().differences(before) == []


# -- 9. failures are one line, never a traceback ----------------------------------------------


def test_backup_dir_naming_a_file_is_one_line(app_db: Db, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in one_line(app_db.cli("backup", "--dir", str(tmp_path / "file")), 2)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only); unmounted afterwards."""
    done: list[Path] = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mnt{len(done)}"
        where.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            check=False,
            timeout=120,
        ).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        done.append(where)
        return where

    yield mount
    for where in done:
        subprocess.run(["umount", str(where)], check=False, timeout=120)


@pytest.mark.parametrize(
    ("options", "says"),
    [("size=4k", "No space left on device"), ("ro,size=64k", "Read-only file system")],
    ids=["full disk", "read-only directory"],
)
def test_backup_into_a_full_or_read_only_disk_is_one_line_and_leaves_no_file(
    app_db: Db, mounted: Callable[[str], Path], options: str, says: str
) -> None:
    where = mounted(options)
    message = one_line(app_db.cli("backup", "--dir", str(where)), 1)
    assert says in message
    assert list(where.iterdir()) == []


def test_output_into_a_closed_pipe_ends_quietly(app_db: Db) -> None:
    argv = [sys.executable, "-m", "migrations", "status", "--db-url", app_db.text_url]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -1` that has already gone
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == ""


# -- 10. edges: bounds, and the restore's locks --------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ("--batch-size", str(2**63)),
        ("--batch-size", "0"),
        ("--lock-wait", "nan"),
        ("--lock-wait", "inf"),
        ("--lock-wait", "0"),
        ("--lock-timeout", "0"),
        ("--retries", "0"),
        ("--retries", "1e9"),
    ],
    ids=" ".join,
)
def test_out_of_bounds_tuning_is_a_usage_error_before_anything_changes(app_db: Db, option: tuple) -> None:
    before = app_db.snapshot()
    assert option[0] in one_line(app_db.cli("upgrade", *option), 2)
    assert app_db.snapshot().differences(before) == []


def test_restore_waits_for_a_running_deployment_a_bounded_time(app_db: Db, app_backup: Path) -> None:
    app_db.execute("UPDATE stocks SET name = 'changed after the backup' WHERE code = '005930'")
    before = app_db.snapshot()
    holder = connect(app_db.url)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        done = app_db.cli("restore", str(app_backup), "--yes", "--lock-wait", "0.3")
        assert "another deployment is running" in one_line(done, 1)
        assert app_db.snapshot().differences(before) == []
    finally:
        holder.close()


def test_restore_gives_up_on_a_held_table_lock_naming_the_holder(app_db: Db, app_backup: Path) -> None:
    before = app_db.snapshot()
    reader = psycopg2.connect(app_db.text_url.replace("+psycopg2", ""))
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM stocks")  # a reader's transaction, left open
            pid = reader.get_backend_pid()
        done = app_db.cli("restore", str(app_backup), "--yes", "--lock-timeout", "200")
        message = one_line(done, 1)
        assert "no lock within 200 ms" in message and f"by pid {pid}" in message
    finally:
        reader.close()
    assert app_db.snapshot().differences(before) == []


# -- 11. make clean never touches the backups nor the deployment record --------------------------


def test_make_clean_keeps_backups_and_the_deployment_record(tmp_path: Path) -> None:
    """`make clean` removes tools and caches, never a backup, an image, the deployment record
    (where the kit writes it by default) nor a verification report."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    kept = [
        tmp_path / "data/backups/azak_backup_20251117_093000.sql.gz",
        tmp_path / "data/images/azak_image_app_20251117_093000_000000.json.gz",
        tmp_path / record.DEFAULT_PATH,
        tmp_path / "reports/verification.html",
    ]
    for path in [*kept, tmp_path / ".venv/bin/python", tmp_path / ".mypy_cache/x"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    subprocess.run(["make", "-C", str(tmp_path), "clean"], capture_output=True, check=True, timeout=60)
    assert [p for p in kept if not p.exists()] == []
    assert not (tmp_path / ".venv").exists() and not (tmp_path / ".mypy_cache").exists()


def test_backup_restores_into_an_empty_database_when_told_it_is_another(
    app_db: Db, empty_db: Db, tmp_path: Path
) -> None:
    """Disaster recovery and testing a backup: a new, empty database takes the dump whole, but
    only when the operator says the target is another database."""
    assert app_db.cli("backup", "--dir", str(tmp_path)).returncode == 0
    (dump,) = tmp_path.glob("azak_backup_*.sql.gz")
    refused = empty_db.cli("restore", str(dump), "--yes")
    assert refused.returncode == 2 and "add --other-database" in refused.stderr, refused.stderr
    done = empty_db.cli("restore", str(dump), "--yes", "--other-database")
    assert done.returncode == 0, done.stderr
    assert empty_db.snapshot().differences(app_db.snapshot()) == []
