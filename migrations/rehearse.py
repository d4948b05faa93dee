"""`make rehearse`: the whole deployment plan on throwaway databases of the local server.

create (the application's database, realistic rows) → backup
→ upgrade → verify → downgrade → verify rolled back →
compare with before → restore the backup into a second database → compare → drop them all.
Every step runs the operator's own command; a table of steps, results and times ends it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

from migrations import record, snapshot
from migrations.changes import appdb
from migrations.cli import fail_cleanly
from migrations.dburl import (
    URL,
    DeployError,
    connect,
    dbname,
    mask,
    parse,
    run_outside_transaction,
    version_name,
)
from migrations.steps import title

ROOT = Path(__file__).resolve().parent.parent
REPORTS = Path("reports")
# A rehearsal's record and backups are its own: never the real ones in data/ (its databases'
# registries, with their before-images and history, go with the databases).
RECORD = REPORTS / "rehearsal-record.md"


def run_verification(
    url: URL | None, *args: str, plugins: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`python -m verification -q ARGS` on `url`, as the README runs it: only the plugins a
    verification needs (the dev tools, hypothesis above all, cost a second to load), and
    `plugins`. `url` None: the databases are in ARGS."""
    loaded = [arg for name in plugins for arg in ("-p", name)]
    # the URL travels in the environment, never in argv (which `ps` shows to everyone)
    target = {"DATABASE_URL": url.render_as_string(hide_password=False)} if url is not None else {}
    argv = [sys.executable, "-m", "verification", "-q", *loaded, *args]
    env = {**os.environ, **target}
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=ROOT)


class Rehearsal:
    """The plan's steps, timed, on databases made and dropped here."""

    def __init__(self, server: URL, stocks: int, backup_dir: Path) -> None:
        stamp = f"{datetime.now():%Y%m%d_%H%M%S}_{os.getpid()}"
        self.server = server
        self.stocks = stocks
        self.backup_dir = backup_dir
        self.db = server.set(database=f"azak_rehearse_{stamp}")
        self.restored = server.set(database=f"azak_rehearse_{stamp}_restored")
        self.steps: list[tuple[str, str, float]] = []
        self.backup: Path | None = None
        self.before: snapshot.Snapshot | None = None
        self.reports: list[Path] = []

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        """Run one step; record ok (with a note) or FAILED, and stop the plan on failure."""
        started = time.monotonic()
        try:
            note = action()
        except (DeployError, psycopg2.Error, subprocess.SubprocessError) as exc:
            self.steps.append((name, f"FAILED: {str(exc).strip()}", time.monotonic() - started))
            raise
        self.steps.append((name, f"ok{': ' + note if note else ''}", time.monotonic() - started))

    def admin(self, statement: sql.Composable) -> None:
        """CREATE / DROP DATABASE on the server's maintenance database."""
        run_outside_transaction(self.server, statement)

    def create(self) -> str:
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname(self.db))))
        conn = connect(self.db)
        with conn, conn.cursor() as cur:
            appdb.create(cur, self.stocks)
        version = version_name(conn.server_version)
        conn.close()
        return f"{mask(self.db)}, {self.stocks} stocks, PostgreSQL {version}"

    def command(self, *args: str, url: URL | None = None) -> str:
        """`python -m migrations ARGS` on `url` (DATABASE_URL); its last line, or DeployError."""
        env = {**os.environ, "DATABASE_URL": (url or self.db).render_as_string(hide_password=False)}
        argv = [sys.executable, "-m", "migrations", *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise DeployError((done.stderr or done.stdout).strip().splitlines()[-1])
        lines = done.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""

    def take_backup(self) -> str:
        note = self.command("backup", "--dir", str(self.backup_dir))
        self.backup = Path(note.split(": ", 1)[1].split(" (", 1)[0])
        return note.split(": ", 1)[1]

    def remember(self) -> str:
        self.before = snapshot.take(self.db)
        return f"{len(self.before.tables)} tables, {len(self.before.sequences)} sequences"

    def verify(self, expect: str) -> str:
        report = REPORTS / f"rehearsal-{expect}.html"
        done = run_verification(
            self.db,
            f"--expect={expect}",
            "--env-name=rehearsal",
            f"--html={report}",
            "--self-contained-html",
            f"--backup-dir={self.backup_dir}",
        )
        self.reports.append(report)
        said = f"{title()} verification"  # the summary line verification ends with
        summary = [ln for ln in done.stdout.splitlines() if ln.startswith(said)]
        if done.returncode != 0:
            raise DeployError(f"{summary[-1] if summary else done.stdout[-500:]} (see {report})")
        skipped = sorted(
            {ln.rsplit(": ", 2)[-2] for ln in done.stdout.splitlines() if ln.startswith("SKIPPED")}
        )
        note = summary[-1].removeprefix(f"{said} ").split(";")[0] if summary else ""
        return note + (f" ({'; '.join(skipped)})" if skipped else "")

    def compare(self, url: URL) -> str:
        assert self.before is not None
        diffs = snapshot.take(url).differences(self.before)
        if diffs:
            raise DeployError("; ".join(diffs[:5]))
        return "schema-only dump and every row identical"

    def restore(self) -> str:
        assert self.backup is not None
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname(self.restored))))
        return self.command("restore", str(self.backup), "--yes", "--other-database", url=self.restored)

    def drop_all(self) -> str:
        for url in (self.db, self.restored):
            self.admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname(url))))
        return "both throwaway databases dropped"

    def run(self) -> bool:
        """The plan, in order; always drops what it made. True when every step passed."""
        plan: list[tuple[str, Callable[[], str | None]]] = [
            ("create throwaway database", self.create),
            ("backup (pg_dump | gzip)", self.take_backup),
            ("snapshot before", self.remember),
            ("upgrade", lambda: self.command("upgrade")),
            ("verify upgraded", lambda: self.verify("upgraded")),
            ("downgrade --to base", lambda: self.command("downgrade", "--to", "base")),
            ("verify rolled back", lambda: self.verify("rolled-back")),
            ("compare with before", lambda: self.compare(self.db)),
            ("restore backup into 2nd database", self.restore),
            ("compare restored with before", lambda: self.compare(self.restored)),
        ]
        ok = True
        try:
            for name, action in plan:
                self.step(name, action)
        except (DeployError, psycopg2.Error, subprocess.SubprocessError):
            ok = False
        finally:
            with contextlib.suppress(DeployError, psycopg2.Error):  # the table says it FAILED
                self.step("drop throwaway databases", self.drop_all)
        return ok

    def table(self) -> str:
        """The steps as a table."""
        width = max(len(name) for name, _, _ in self.steps)
        lines = [f"{'step':<{width}}  {'time':>7}  result", f"{'-' * width}  {'-' * 7}  ------"]
        lines += [f"{name:<{width}}  {secs:6.2f}s  {result}" for name, result, secs in self.steps]
        return "\n".join(lines)


def default_server(env: Mapping[str, str]) -> str:
    """The server to rehearse on: REHEARSE_SERVER_URL, else the one PGHOST, PGPORT and PGUSER
    name (127.0.0.1, 5432, postgres), as for the tests; its maintenance database."""
    if env.get("REHEARSE_SERVER_URL"):
        return env["REHEARSE_SERVER_URL"]
    user = quote(env.get("PGUSER") or "postgres", safe="")
    host, port = env.get("PGHOST") or "127.0.0.1", quote(env.get("PGPORT") or "5432")
    if host.startswith("/"):  # a socket directory: libpq takes it as a query parameter
        return f"postgresql://{user}@/postgres?host={quote(host)}&port={port}"
    return f"postgresql://{user}@{f'[{host}]' if ':' in host else host}:{port}/postgres"


def main() -> None:
    """Entry point of `make rehearse`."""
    parser = argparse.ArgumentParser(prog="python -m migrations.rehearse", description=__doc__)
    parser.add_argument(
        "--server-url",
        default=default_server(os.environ),
        help="a database on the server to rehearse on (default: REHEARSE_SERVER_URL, else "
        "postgresql://$PGUSER@$PGHOST:$PGPORT/postgres, else postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--stocks", type=int, default=3000, help="stocks rows (default 3000)")
    parser.add_argument("--backup-dir", type=Path, default=REPORTS / "rehearsal-backups")
    args = parser.parse_args()
    os.environ[record.PATH_ENV] = str(RECORD)  # every command and verification below inherits it
    with fail_cleanly():  # an unreachable server, or one older than 13: one line, nothing made
        server = parse(args.server_url)
        connect(server).close()
    rehearsal = Rehearsal(server, args.stocks, args.backup_dir)
    print(f"Rehearsing {title()} on {mask(server.set(database=rehearsal.db.database))}\n")
    ok = rehearsal.run()
    print(rehearsal.table())
    print("\nreports: " + ", ".join(str(p) for p in rehearsal.reports if p.exists()))
    print(f"record:  {RECORD}")
    print("\nrehearsal " + ("PASSED" if ok else "FAILED"))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
