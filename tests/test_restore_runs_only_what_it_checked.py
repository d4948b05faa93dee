"""Restore runs exactly what it checked (issue 17): a backup the kit signed, read once; a file
it did not write only when the operator names it foreign, and then inside walls PostgreSQL
keeps (one call of a function owned by a role that can neither run programs nor change
roles, inside the kit's transaction). No edit of a file, however hidden, runs a program,
commits a part of itself, or makes the kit say "nothing changed" when something changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from migrations import backup, provenance, restore
from migrations.dburl import DeployError, UsageError, connect, libpq_command
from migrations.lock import LOCK_KEY
from migrations.steps import load_all
from tests.conftest import ROOT, Db, ok, one_line

MARK = b"SET row_security = off;\n"  # pg_dump's last setting: statements follow


@pytest.fixture
def app_backup(app_db: Db, tmp_path: Path) -> Path:
    """A backup of app_db, made by the kit."""
    return backup.backup(app_db.url, tmp_path / "backups")


def content(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def inserted(data: bytes, payload: bytes, after: bytes = MARK) -> bytes:
    at = data.index(after) + len(after)
    return data[:at] + payload + data[at:]


def resigned(data: bytes, body: bytes, key: bytes | None = None, database: str | None = None) -> bytes:
    """The header of `data` over a new body: digest and length made to match (and the database
    renamed), signed with `key` (None: the signature left as it was)."""
    line, _, _ = data.partition(b"\n")
    fields = json.loads(line[len(provenance.MARK) :])
    signature = fields.pop("signature")
    fields.update(sha256=hashlib.sha256(body).hexdigest(), bytes=len(body))
    if database:
        fields["identity"]["database"] = database
    fields["signature"] = provenance.sign(fields, key) if key else signature
    return provenance.MARK + provenance.canonical(fields) + b"\n" + body


# -- the kit's own backups: every edit is refused before anything runs -------------------------


EDITS = {
    "shell escape": lambda d, m: inserted(d, f"\\! touch {m}\n".encode()),
    "copy to program": lambda d, m: inserted(d, f"COPY (SELECT 1) TO PROGRAM 'touch {m}';\n".encode()),
    "after quotes": lambda d, m: inserted(
        d, f"SELECT 'it''s' AS a, $q$ \\ $q$ AS b;\\o |touch {m}\n".encode()
    ),
    "commit": lambda d, m: inserted(d, b"COMMIT;\nDROP TABLE public.stocks CASCADE;\n"),
    "truncated": lambda d, m: d[: len(d) // 2],
    "digest forged": lambda d, m: resigned(d, inserted(d, f"\\! touch {m}\n".encode()).partition(b"\n")[2]),
    "signed with another key": lambda d, m: resigned(
        d, inserted(d, f"\\! touch {m}\n".encode()).partition(b"\n")[2], key=os.urandom(32)
    ),
    "header of another database": lambda d, m: resigned(d, d.partition(b"\n")[2], database="x"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_backup_is_refused_and_nothing_runs(
    app_db: Db, app_backup: Path, tmp_path: Path, marker: Path, edit: str
) -> None:
    """Lines added as an attacker would (shell escapes, COPY ... PROGRAM, a COMMIT), a cut, a
    digest recomputed, a header re-signed or re-aimed: refused in one line, and no program ran
    (with --foreign too: the kit's backups carry COPY data, and their tables' owner here is a
    superuser, which a foreign file never runs as)."""
    bad = write(tmp_path / "azak_backup_20250101_000000.sql.gz", EDITS[edit](content(app_backup), marker))
    before = app_db.snapshot()
    refused = one_line(app_db.cli("restore", str(bad), "--yes"), 1)
    assert "refused, nothing changed" in refused
    foreign = one_line(app_db.cli("restore", str(bad), "--yes", "--foreign"), 1)
    assert "nothing changed" in foreign
    assert not marker.exists(), "the file's command ran"
    assert app_db.snapshot().differences(before) == []


def test_the_restore_runs_the_bytes_it_read_not_a_file_swapped_in_while_it_waits(
    app_db: Db, tmp_path: Path
) -> None:
    """The file is read once, before the deployment lock: another backup put in its place
    while restore waits for the lock (here a valid, signed backup of another moment) changes
    nothing of what runs."""
    first = backup.backup(app_db.url, tmp_path / "a")
    wanted = app_db.snapshot()
    app_db.execute("UPDATE stocks SET name = 'after the first backup' WHERE code = '005930'")
    second = backup.backup(app_db.url, tmp_path / "b")
    holder = connect(app_db.url)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        argv = [sys.executable, "-m", "migrations", "restore", str(first), "--yes", "--lock-wait", "120"]
        env = {**os.environ, "DATABASE_URL": app_db.text_url}
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s"
        deadline = time.monotonic() + 60  # a hang guard, not a measure
        while not app_db.value(waiting, (f"azak-db-migrations:{proc.pid}", "%pg_try_advisory_lock%")):
            assert proc.poll() is None and time.monotonic() < deadline, "restore never waited for the lock"
            time.sleep(0.05)
        first.write_bytes(second.read_bytes())  # the swap, while it waits
    finally:
        holder.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert app_db.snapshot().differences(wanted) == []


def test_a_failing_statement_is_named_by_its_line_and_nothing_changes(app_db: Db, tmp_path: Path) -> None:
    """A backup whose own SQL fails (its table's owner dropped since): the line psql stopped
    at, in the file's numbering, and a database left as it was."""
    role = f"azak_gone_{uuid.uuid4().hex[:8]}"
    app_db.execute(f"CREATE ROLE {role}; ALTER TABLE stock_overtime_price OWNER TO {role}")
    made = backup.backup(app_db.url, tmp_path)
    app_db.execute(f"ALTER TABLE stock_overtime_price OWNER TO postgres; DROP ROLE {role}")
    lines = content(made).split(b"\n")
    line = next(i for i, text in enumerate(lines, 1) if text.endswith(f"OWNER TO {role};".encode()))
    before = app_db.snapshot()
    message = one_line(app_db.cli("restore", str(made), "--yes"), 1)
    assert f"failed at line {line} of {made.name}, nothing changed" in message
    assert f'role "{role}" does not exist' in message
    assert app_db.snapshot().differences(before) == []


# -- foreign files: only when named so, and then inside PostgreSQL's walls -----------------------


def pg_dump(db: Db, *options: str) -> bytes:
    argv, env = libpq_command(db.url)
    return subprocess.run(
        ["pg_dump", *options, *argv], capture_output=True, env=env, check=True, timeout=120
    ).stdout


def test_a_file_the_kit_did_not_write_is_refused_unless_named_foreign(
    owned_db: tuple[Db, str], tmp_path: Path
) -> None:
    db, _ = owned_db
    plain = tmp_path / "plain.sql"
    plain.write_bytes(pg_dump(db, "--inserts", "--clean", "--if-exists"))
    before = db.snapshot()
    assert "was not written by this kit" in one_line(db.cli("restore", str(plain), "--yes"), 1)
    assert db.snapshot().differences(before) == []


def test_a_foreign_file_runs_as_the_tables_owner_and_restores_wholly(
    owned_db: tuple[Db, str], tmp_path: Path
) -> None:
    """pg_dump --inserts of the database, loaded with --foreign after the application changed
    it and the deployment ran: the database as dumped, as its owner."""
    db, role = owned_db
    dump = tmp_path / "foreign.sql.gz"
    dump.write_bytes(gzip.compress(pg_dump(db, "--inserts", "--clean", "--if-exists")))
    wanted = db.snapshot()
    db.execute("UPDATE stocks SET name = 'changed' WHERE code = '005930'")
    assert db.cli("upgrade").returncode == 0
    done = db.cli("restore", str(dump), "--yes", "--foreign")
    assert done.returncode == 0, done.stderr
    assert f"as role {role}" in done.stdout
    assert db.snapshot().differences(wanted) == []


def test_a_foreign_file_is_refused_when_its_role_could_run_programs(
    owned_db: tuple[Db, str], tmp_path: Path
) -> None:
    """PostgreSQL lets a superuser, a member of pg_execute_server_program (or of the server
    files' roles) and a CREATEROLE role run programs or give themselves the right: refused in
    one line before anything changes, whichever role would run it."""
    db, role = owned_db
    dump = tmp_path / "foreign.sql"
    dump.write_bytes(pg_dump(db, "--inserts", "--clean", "--if-exists"))
    before = db.snapshot()
    as_postgres = one_line(
        db.cli("restore", str(dump), "--yes", "--foreign", "--foreign-role", "postgres"), 1
    )
    assert "superuser" in as_postgres and "nothing changed" in as_postgres
    for grant in ("GRANT pg_execute_server_program TO {role}", "ALTER ROLE {role} CREATEROLE"):
        db.execute(grant.format(role=role))
        said = one_line(db.cli("restore", str(dump), "--yes", "--foreign"), 1)
        assert f"would run as {role}" in said and "nothing changed" in said
    db.execute(f"REVOKE pg_execute_server_program FROM {role}; ALTER ROLE {role} NOCREATEROLE")
    assert db.snapshot().differences(before) == []


def test_a_foreign_file_with_copy_data_is_refused_in_one_line(
    owned_db: tuple[Db, str], tmp_path: Path
) -> None:
    db, _ = owned_db
    dump = tmp_path / "foreign.sql"
    dump.write_bytes(pg_dump(db, "--clean", "--if-exists"))
    before = db.snapshot()
    said = one_line(db.cli("restore", str(dump), "--yes", "--foreign"), 1)
    assert "COPY ... FROM stdin" in said and "pg_dump --inserts" in said and "nothing changed" in said
    assert db.snapshot().differences(before) == []


def test_a_deferred_trigger_of_a_foreign_file_fires_as_its_role_not_at_the_kits_commit(
    owned_db: tuple[Db, str], tmp_path: Path, marker: Path
) -> None:
    """A constraint trigger deferred to COMMIT would run as whoever commits (the kit's session
    user, here a superuser): the kit fires them inside the call, as the file's role."""
    db, _ = owned_db
    program = f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';"
    trap = (
        "CREATE FUNCTION public.azak_trap() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN "  # noqa: S608
        + program
        + " RETURN NULL; END$f$;\n"
        "CREATE CONSTRAINT TRIGGER azak_trap AFTER INSERT ON public.stocks DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION public.azak_trap();\n"
        "INSERT INTO public.stocks (id, code, name, priority, is_active, created_at, updated_at)"
        " VALUES (999999, 'TRAP', 'x', 1, true, now(), now());\n"
    ).encode()
    dump = tmp_path / "foreign.sql"
    dump.write_bytes(pg_dump(db, "--inserts", "--clean", "--if-exists") + trap)  # pending at the end
    before = db.snapshot()
    said = one_line(db.cli("restore", str(dump), "--yes", "--foreign"), 1)
    assert "pg_execute_server_program" in said and "nothing changed" in said
    assert not marker.exists()
    assert db.snapshot().differences(before) == []


# -- the property: whatever the edit, all or nothing, and never a program ------------------------


PAYLOADS = [
    "\\! touch {m}\n",
    "SELECT 1; \\! touch {m}\n",
    "COPY (SELECT 1) TO PROGRAM 'touch {m}';\n",
    "/* a comment */ COPY (SELECT 1) TO PROGRAM 'touch {m}'; -- and another\n",
    "SELECT 'it''s' AS a, $q$ \\ $q$ AS b;\\o |touch {m}\n",
    "SET standard_conforming_strings = off;\nSELECT 'a\\';\n\\! touch {m}\n';\nSET standard_conforming_strings = on;\n",
    "SELECT $x$;$x$; COPY (SELECT 1) TO PROGRAM 'touch {m}';\n",
    "SELECT E'\\';COMMIT;--';\nCOMMIT;\n",
    "COMMIT;\nDROP TABLE public.stock_overtime_price CASCADE;\n",
    "COMMIT; BEGIN;\n",
    "ROLLBACK;\n",
    "SAVEPOINT s; RELEASE SAVEPOINT s;\n",
    "PREPARE TRANSACTION 'azak';\n",
    "END;\n",
    "RESET ROLE; COPY (SELECT 1) TO PROGRAM 'touch {m}';\n",
    "SET SESSION AUTHORIZATION postgres; COPY (SELECT 1) TO PROGRAM 'touch {m}';\n",
    "SELECT set_config('role', 'postgres', false);\n",
    "DO $$BEGIN COMMIT; END$$;\n",
    "DO $$BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {m}'''; END$$;\n",
    "SELECT lo_export(lo_from_bytea(0, 'x'), '{m}');\n",
    "SELECT nextval('public.stocks_id_seq'); SELECT setval('public.stock_prices_minute_id_seq', 99999);\n",
    "VACUUM;\n",
    "SELECT 1;\n",
    "x",
    ";",
    "'",
    "$$",
    "/*",
]
edits = st.tuples(
    st.sampled_from(["insert", "insert at a line", "hide in a comment", "hide in a string", "truncate"]),
    st.floats(min_value=0, max_value=1),
    st.sampled_from(PAYLOADS),
)
PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BEGIN_SENTINEL = b"CREATE TABLE public.azak_sentinel_begin (x integer);\n"
END_SENTINEL = b"\nCREATE TABLE public.azak_sentinel_end (x integer);\n"


def edited(data: bytes, edit: tuple[str, float, str], marker: Path) -> bytes:
    """`data` with `edit` made: `payload` inserted (at `where`, a fraction of its length) as it
    is, at a line's start, in a comment or in a string; or the file cut there (by a byte at
    least: a cut at its very end would be no edit)."""
    kind, where, payload = edit
    at = int(where * len(data))
    if kind == "truncate":
        return data[: min(at, len(data) - 1)]
    text = payload.format(m=marker)
    if kind != "insert":
        at = data.rfind(b"\n", 0, at) + 1
    if kind == "hide in a comment":
        text = f"/* {text} */\n"
    if kind == "hide in a string":
        text = f"SELECT $hide${text}$hide$;\n"
    return data[:at] + text.encode() + data[at:]


@dataclass(repr=False)
class Files:
    """The owned database, a backup of it by the kit (to reset it), and its pg_dump --inserts."""

    db: Db
    reset: Path
    foreign: bytes


@pytest.fixture
def property_files(owned_db: tuple[Db, str], tmp_path: Path) -> Files:
    db, _ = owned_db
    data = pg_dump(db, "--inserts", "--clean", "--if-exists")
    return Files(db, backup.backup(db.url, tmp_path / "reset"), inserted(data, BEGIN_SENTINEL) + END_SENTINEL)


@PROPERTY
@given(edit=edits)
def test_no_edit_of_a_backup_runs_a_program_or_changes_a_part_of_the_database(
    property_files: Files, marker: Path, tmp_path: Path, edit: tuple[str, float, str]
) -> None:
    """For every edit (an inserted statement of any kind, hidden in comment or string tricks,
    anywhere; a cut): the kit's backup so edited is refused and nothing changes; the foreign
    file so edited is refused and nothing changes, or it restores wholly (both sentinels,
    its first and last statements, are there; a cut file has no integrity to check: it runs
    whole as cut, or not). No program ever runs."""
    db, reset, foreign = property_files.db, property_files.reset, property_files.foreign
    before = db.snapshot()
    own = write(tmp_path / "own.sql.gz", edited(content(reset), edit, marker))
    with pytest.raises((DeployError, UsageError)):
        restore.restore(db.url, own)
    assert db.snapshot().differences(before) == []
    crafted = tmp_path / "foreign.sql"
    crafted.write_bytes(edited(foreign, edit, marker))
    try:
        restore.restore(db.url, crafted, foreign=True)
    except (DeployError, UsageError):
        event("foreign file refused")
        assert db.snapshot().differences(before) == [], f"refused, yet changed: {edit}"
    else:
        event("foreign file restored")
        begun = db.value("SELECT to_regclass('public.azak_sentinel_begin') IS NOT NULL")
        ended = db.value("SELECT to_regclass('public.azak_sentinel_end') IS NOT NULL")
        assert (begun and ended) or edit[0] == "truncate", f"restored only in part: {edit}"
        restore.restore(db.url, reset)  # back to the start for the next example
        db.execute("DROP TABLE IF EXISTS azak_sentinel_begin, azak_sentinel_end")
    assert not marker.exists(), f"a program ran: {edit}"


def test_a_restore_killed_while_psql_runs_takes_psql_with_it(app_db: Db, app_backup: Path) -> None:
    """psql dies with the kit: no restore goes on without the deployment lock."""
    env = {**os.environ, "DATABASE_URL": app_db.text_url, "AZAK_PAUSE_AT": "restore:after-teardown"}
    argv = [sys.executable, "-m", "migrations", "restore", str(app_backup), "--yes"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"paused at restore:after-teardown")
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    # the history row's (its action's lock), the deployment lock's and psql's
    assert app_db.value(sessions, (f"azak-db-migrations:{proc.pid}",)) == 3
    before_kill = app_db.value("SELECT count(*) FROM stocks")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60  # a hang guard, not a measure
    while app_db.value(sessions, (f"azak-db-migrations:{proc.pid}",)):
        assert time.monotonic() < deadline, "psql outlived the kit"
        time.sleep(0.05)
    assert app_db.value("SELECT count(*) FROM stocks") == before_kill
    with psycopg2.connect(app_db.text_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY)
        assert cur.fetchone() == (True,), "the deployment lock is still held"


def one_line_bomb(path: Path, size: int) -> None:
    """A small .sql.gz that inflates to a pg_dump header and ONE line of `size` bytes."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b"-- PostgreSQL database dump\n\nSELECT '")
        chunk = b"a" * (1 << 24)
        for _ in range(size // len(chunk)):
            out.write(chunk)
        out.write(b"';\n")


def test_restore_of_a_gzip_bomb_is_refused_in_bounded_memory(app_db: Db, tmp_path: Path) -> None:
    """A 2 MB backup file inflating to one 1.5 GB line is refused in one `error:` line under a
    1 GiB address-space limit: without the kit's header on its first line, read bounded; as
    `--foreign` on its size; behind a header the kit's key signed, on its digest, streamed."""
    import subprocess
    import sys

    from migrations import provenance
    from migrations.dburl import connect
    from tests.conftest import ROOT

    bomb = tmp_path / "azak_backup_20250101_000000.sql.gz"
    one_line_bomb(bomb, 3 << 29)
    assert bomb.stat().st_size < 4 << 20
    signed = tmp_path / "azak_backup_20250101_000001.sql.gz"
    conn = connect(app_db.url)
    with conn, conn.cursor() as cur:
        identity, encoding = provenance.identity_of(cur)
    conn.close()
    manifest = provenance.Manifest(identity, provenance.now_utc(), encoding, "0" * 64, 1, 0, 0)
    signed.write_bytes(gzip.compress(provenance.header(manifest)) + bomb.read_bytes())
    limit = 1 << 30
    for path, extra, says in [
        (bomb, "", "was not written by this kit"),
        (bomb, "'--foreign', ", "MiB at most"),
        (signed, "", "differs from the digest"),
    ]:
        code = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
            f"sys.argv = ['migrations', 'restore', {str(path)!r}, '--yes', {extra}'--record', 'none', "
            f"'--db-url', {app_db.text_url!r}]; "
            "runpy.run_module('migrations', run_name='__main__')"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode in (1, 2) and "Traceback" not in done.stderr, (
            f"exit {done.returncode}: {done.stderr[-800:]}"
        )
        assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr[-800:]


def test_restore_check_follows_standard_conforming_strings_as_psql_does(app_db: Db, tmp_path: Path) -> None:
    """A signed backup edited to hide a psql meta-command behind `standard_conforming_strings =
    off` (which psql follows, running the command) is refused in one line, with or without
    `--foreign`: no reader's guess decides, nothing runs, nothing changes."""
    import subprocess

    from tests.conftest import one_line

    ok(app_db.cli("backup", "--dir", str(tmp_path), "--record", "none"))
    dump = gzip.decompress(next(tmp_path.glob("azak_backup_*.sql.gz")).read_bytes())
    marker = tmp_path / "pwned"
    injected = (
        b"BEGIN;\nSET standard_conforming_strings = off;\nSELECT 'a\\'';\n"
        + f"\\! touch {marker}\n".encode()
        + b"';\nSET standard_conforming_strings = on;\n"
    )
    crafted = tmp_path / "crafted.sql"
    header, _, rest = dump.partition(b"\n")
    crafted.write_bytes(header + b"\n" + injected + rest)  # before pg_dump's own \\restrict

    # the runbook's way runs the shell command (psql stops later, on the leftover quote)
    psql_url = app_db.text_url.replace("postgresql+psycopg2", "postgresql", 1)
    subprocess.run(
        ["psql", "-X", "-q", "-d", psql_url, "-f", str(crafted)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert marker.exists(), "psql did not run the meta-command: the crafted file is not what it claims"
    marker.unlink()

    before = app_db.snapshot()
    for extra in ([], ["--foreign"]):
        assert "nothing changed" in one_line(app_db.cli("restore", str(crafted), "--yes", *extra), 1)
    assert not marker.exists(), "the kit ran the meta-command"
    assert app_db.snapshot().differences(before) == []


def test_the_owner_of_the_tables_deploys_backs_up_and_restores(
    owned_db: tuple[Db, str], tmp_path: Path
) -> None:
    """The application's owner role, no superuser, runs the runbook: upgrade, backup, rollback,
    restore of its own backup. On PostgreSQL 13 the schema public is the bootstrap superuser's:
    the backup leaves its comment and privileges alone, so the owner can restore it."""
    db, role = owned_db
    db.execute(f"GRANT CREATE ON DATABASE {db.url.database} TO {role}")  # for the kit's registry
    owner = db.at(db.url.set(username=role))
    assert owner.cli("upgrade").returncode == 0
    made = owner.cli("backup", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert owner.cli("downgrade", "--to", "base").returncode == 0
    restored = owner.cli("restore", str(next(tmp_path.glob("*.sql.gz"))), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert db.value("SELECT count(*) FROM azak_registry.ledger WHERE state = 'applied'") == len(load_all())
    db.execute(f"REVOKE CREATE ON DATABASE {db.url.database} FROM {role}")
