"""Secrets are never shown, and never on a command line.

Guarantee: a password, in every way libpq takes one (URL user-info, `?password=`,
`?sslpassword=`, any letter case, keyword/value strings quoted or not, malformed URLs), is
never printed, in part or whole, by a refusal or a failure (one line, exit 1 or 2, no
traceback); no process the kit starts has a secret in its argv (pg_dump gets the password in
PGPASSWORD and an sslpassword from a service file that is a named pipe, which libpq really
reads); and a password, token or key in an application log line is *** wherever verification
copies it (terminal, HTML report, JUnit XML, deployment record).

Passwords are made of marker words joined by special characters: no marker may appear, so a
part of a password shown is caught as surely as the whole.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations.dburl import UsageError, libpq_command, mask, mask_text, parse
from tests.conftest import Db, run, run_verification

MARKERS = ("QZXa1", "WVKb2", "JMRc3")  # no hex pair, no word the kit writes
SPECIALS = list("@:/?#&=%+'\"\\ !$*;,[]{}()<>|^`~") + ["\t", "\n", "ü", "한"]
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def passwords(draw: st.DrawFn, specials: list[str] = SPECIALS) -> str:
    """Every marker, each between runs of special characters."""
    glue = st.lists(st.sampled_from(specials), max_size=3).map("".join)
    return "".join(draw(glue) + marker for marker in MARKERS) + draw(glue)


NO_SPACE = [c for c in SPECIALS if not c.isspace()]


def shown(text: str) -> list[str]:
    return [marker for marker in MARKERS if marker in text]


def conninfo_quoted(pw: str) -> str:
    return "'" + pw.replace("\\", "\\\\").replace("'", "\\'") + "'"


FORMS: dict[str, Callable[[str], str]] = {
    "user-info": lambda pw: f"postgresql://u:{quote(pw, safe='')}@127.0.0.1:1/db",
    "user-info, not encoded": lambda pw: f"postgresql://u:{pw}@127.0.0.1:1/db",
    "?password=": lambda pw: f"postgresql://u@127.0.0.1:1/db?password={quote(pw, safe='')}",
    "?PASSWORD=": lambda pw: f"postgresql://u@127.0.0.1:1/db?PASSWORD={quote(pw, safe='')}",
    "?sslpassword=": lambda pw: (
        f"postgresql://u@127.0.0.1:1/db?sslmode=disable&sslpassword={quote(pw, safe='')}"
    ),
    "keyword/value, quoted": lambda pw: f"host=127.0.0.1 port=1 dbname=db password={conninfo_quoted(pw)}",
    "keyword/value": lambda pw: (
        f"host=127.0.0.1 port=1 dbname=db password={pw.split()[0] if pw.split() else pw}"
    ),
    "no colon after the scheme": lambda pw: f"postgresql//u:{pw}@127.0.0.1/db",
    "bad port": lambda pw: f"postgresql://u:{pw}@127.0.0.1:notaport/db",
}


@PROPERTY
@given(pw=passwords(), form=st.sampled_from(sorted(FORMS)))
def test_no_part_of_a_password_is_printed_in_any_form(cli, pw: str, form: str) -> None:
    url = FORMS[form](pw)
    done = cli("status", url=url)
    code, output = done.returncode, done.stdout + done.stderr
    assert code in (1, 2), output
    assert len(output.strip().splitlines()) == 1 and output.startswith("error: "), output
    assert "Traceback" not in output
    assert shown(output) == [], output


@PROPERTY
@given(pw=passwords(), form=st.sampled_from(["user-info", "?password=", "?PASSWORD=", "?sslpassword="]))
def test_no_secret_reaches_a_libpq_tools_argv(pw: str, form: str) -> None:
    try:
        url = parse(FORMS[form](pw))
        argv, env = libpq_command(url)
    except UsageError as refused:  # ?PASSWORD= (libpq knows no such key), an unusable sslpassword
        assert "\n" not in str(refused) and shown(str(refused)) == [], str(refused)
        return
    assert shown(" ".join(argv)) == [] and shown(mask(url)) == [], argv
    if form == "?sslpassword=":  # libpq reads it from the service file, a pipe: exactly it
        assert "sslpassword" not in str(argv)
        with open(env["PGSERVICEFILE"], encoding="utf-8") as served:
            assert served.read() == f"[{env['PGSERVICE']}]\nsslpassword={pw}\n"
    else:
        assert env["PGPASSWORD"] == pw


def pg_dump_spy(folder: Path) -> Path:
    """A `pg_dump` first on PATH that writes down its argv and environment, then is pg_dump."""
    real = subprocess.run(
        ["which", "pg_dump"], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    spy = folder / "pg_dump"
    spy.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{folder}/argv"\n'
        f'env | grep -v "^PGPASSWORD=" > "{folder}/environ"\n'
        f'exec {real} "$@"\n'
    )
    spy.chmod(0o755)
    return folder / "argv"


def test_pg_dump_of_a_backup_has_no_secret_on_its_command_line(app_db: Db, tmp_path: Path) -> None:
    password, sslpassword = "QZXa1-pass word", "WVKb2-ssl pass"
    url = app_db.url.set(password=password, query={"sslmode": "disable", "sslpassword": sslpassword})
    spied = pg_dump_spy(tmp_path)
    env = {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
    }
    done = run([sys.executable, "-m", "migrations", "backup", "--dir", str(tmp_path / "b")], env=env)
    assert done.returncode == 0, done.stderr
    assert spied.exists(), "the backup never ran pg_dump by its name"
    argv = spied.read_text()
    assert "--dbname=" in argv and shown(argv) == [], argv
    assert shown((tmp_path / "environ").read_text()) == [], "the sslpassword is in no variable"
    assert shown(done.stdout + done.stderr) == []


@pytest.fixture
def announces_tls() -> Iterator[int]:
    """An endpoint that answers libpq's SSLRequest with 'S' and then hangs up: far enough for
    libpq to load its client key (this server runs without SSL, so it cannot show that)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(8)
                conn.sendall(b"S")
                conn.recv(4096)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_libpq_takes_the_sslpassword_from_the_service_pipe(announces_tls: int, tmp_path: Path) -> None:
    secret = "JMRc3 key passphrase"
    key, cert = tmp_path / "client.key", tmp_path / "client.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=deploy", "-passout", f"pass:{secret}"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    key.chmod(0o600)

    def pg_dump(sslpassword: str) -> str:
        query = {"sslmode": "require", "sslcert": str(cert), "sslkey": str(key), "sslpassword": sslpassword}
        url = parse(f"postgresql://deploy@127.0.0.1:{announces_tls}/db").set(query=query)
        argv, env = libpq_command(url)
        assert shown(" ".join(argv)) == []
        done = subprocess.run(
            ["pg_dump", "--schema-only", "--no-password", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0  # the endpoint hangs up: never a dump
        return done.stderr

    assert "could not load private key file" in pg_dump("not the passphrase")
    assert "private key" not in pg_dump(secret)  # loaded: the key's passphrase came through the pipe


@PROPERTY
@given(pw=passwords(NO_SPACE), token=st.text(alphabet="abcXYZ019._~+/=-", min_size=4, max_size=12))
def test_secrets_in_log_lines_are_masked(pw: str, token: str) -> None:
    lines = [
        f"ERROR connecting to postgresql://app:{pw}@db.internal:5432/azak failed",
        f"ERROR conninfo host=db password={pw} sslmode=require",
        f"ERROR conninfo host=db password={conninfo_quoted(pw + ' x')}",
        f"ERROR DB_PASS={pw} PGPASSWORD: {pw} api_key={pw}",
        f'ERROR settings {{"password": {json.dumps(pw)}, "client_secret": {json.dumps(pw)}}}',
        "ERROR ALTER ROLE app PASSWORD '" + pw.replace("'", "''") + "'",
        f"ERROR postgresql//app:{pw}@db/azak ?sslpassword={pw}&x=1",
    ]
    for line in lines:
        assert shown(mask_text(line)) == [], (line, mask_text(line))
    bearer = f"ERROR upstream said 401 to Authorization: Bearer QZXa1{token}"
    assert "QZXa1" not in mask_text(bearer)


def test_log_secrets_reach_no_terminal_report_junit_or_record(deployed_db: Db, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(
        "2026-01-01 10:00:00 ERROR db login failed: postgresql://app:QZXa1@db/azak password=WVKb2\n"
        "2026-01-01 10:00:01 CRITICAL token=JMRc3 rejected; Authorization: Bearer QZXa1abc\n"
    )
    report, junit, rec = tmp_path / "report.html", tmp_path / "junit.xml", tmp_path / "deployments.md"
    url = deployed_db.url.set(password="WVKb2-db", query={"sslpassword": "JMRc3-ssl", "sslmode": "disable"})
    done = run_verification(
        url,
        f"--app-log={log}",
        f"--html={report}",
        "--self-contained-html",
        f"--junitxml={junit}",
        f"--record={rec}",
        "-rA",
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "test_log_shows_no_errors" in done.stdout and "password=***" in done.stdout
    texts = {"terminal": done.stdout + done.stderr, "report": report.read_text(), "junit": junit.read_text()}
    texts["record"] = rec.read_text()
    assert {where: shown(text) for where, text in texts.items()} == dict.fromkeys(texts, [])


def test_an_sslpassword_a_service_file_cannot_hold_is_refused_in_one_line(app_db: Db, tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-m", "migrations", "backup", "--dir", str(tmp_path)],
        env={"DATABASE_URL": f"{app_db.text_url}?sslpassword=%20QZXa1%20"},
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "sslpassword" in lines[0] and shown(done.stdout + done.stderr) == [], lines
    assert not list(tmp_path.glob("*.sql*")), "no backup file is left"
