"""`python -m migrations COMMAND`: upgrade, downgrade, status, plan, backup, restore."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

from migrations import backup as backups
from migrations import plan, record, restore
from migrations.cli import fail_cleanly, open_runner
from migrations.dburl import URL, DeployError, UsageError, mask, resolve
from migrations.runner import Runner, Settings
from migrations.steps import load_all

# Rows per batch: far above any useful size, far below what a bigint LIMIT or memory takes.
MAX_BATCH = 10_000_000


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (`error: ...`, exit 2), as every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def bounded(kind: type[int] | type[float], low: float, high: float, low_open: bool = False) -> Any:
    """An argparse type: a finite number of `kind` in [low, high] (or (low, high])."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            where = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {where}")
        return value

    convert.__name__ = kind.__name__
    return convert


def parser() -> argparse.ArgumentParser:
    """The command line."""
    url_help = "PostgreSQL URL (else DATABASE_URL, else POSTGRES_*); before or after COMMAND"
    waiting = Parser(add_help=False)
    waiting.add_argument(
        "--lock-wait",
        type=bounded(float, 0, 3600, low_open=True),
        default=10.0,
        metavar="S",
        help="seconds to wait for another deployment to finish (default 10; at most 3600)",
    )
    waiting.add_argument(
        "--lock-timeout",
        type=bounded(int, 1, 600_000),
        default=2000,
        metavar="MS",
        help="lock_timeout of each transaction (default 2000; 1..600000)",
    )
    sizing = Parser(add_help=False)
    sizing.add_argument(
        "--batch-size",
        type=bounded(int, 1, MAX_BATCH),
        default=5000,
        help=f"stocks rows per priority batch (default 5000; 1..{MAX_BATCH:,})",
    )
    tuning = Parser(add_help=False, parents=[waiting, sizing])
    tuning.add_argument(
        "--retries",
        type=bounded(int, 1, 100),
        default=5,
        help="tries per transaction on a lock timeout (default 5; 1..100)",
    )
    # The URL after the command lands in db_url, before it in top_db_url: neither resets the other.
    common = Parser(add_help=False)
    common.add_argument("--db-url", default=None, help=url_help)
    recorded = Parser(add_help=False)
    recorded.add_argument(
        "--record",
        default=None,
        metavar="FILE|none",
        help=f"deployment record to add this action's row to (default {record.default_path()}; 'none': none)",
    )
    recorded.add_argument("--env-name", default="unspecified", help="environment, for the record")
    recorded.add_argument("--executor", default=None, help="who runs it, for the record (default: OS user)")
    changing = [common, recorded]

    top = Parser(
        prog="python -m migrations",
        description="Deploy, roll back and inspect the migrations (US-001 and after) on one database.",
        epilog="`python -m migrations COMMAND --help` describes each command.",
    )
    top.add_argument("--db-url", dest="top_db_url", default=None, metavar="DB_URL", help=url_help)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, summary: str, details: str, parents: list[Parser]) -> Parser:
        return sub.add_parser(name, parents=parents, help=summary, description=f"{summary}. {details}")

    up = command(
        "upgrade",
        "Apply the pending migrations, in order",
        "Keeps a before-image of the database first (data/images), then runs each migration in short "
        "transactions under the deployment lock; an interrupted one is resumed.",
        [*changing, tuning],
    )
    up.add_argument("--to", metavar="NAME", help="stop after this migration (default: all)")
    down = command(
        "downgrade",
        "Roll migrations back, newest first",
        "Every value a migration rewrote is put back (stocks.priority).",
        [*changing, tuning],
    )
    down.add_argument(
        "--to",
        metavar="base|NAME",
        required=True,
        help="roll back everything after NAME ('base': everything)",
    )
    command(
        "status",
        "Say which migrations are applied, pending, interrupted or changed since applied",
        "Changes nothing.",
        [common],
    )
    plan_cmd = command(
        "plan",
        "Print the SQL that upgrade would run now, as a script",
        "Changes nothing; `--all` prints every migration without connecting (for review and squawk).",
        [common, waiting, sizing],
    )
    plan_cmd.add_argument(
        "--all", action="store_true", help="every migration, as on a fresh database (no connection)"
    )
    bk = command(
        "backup",
        "Dump the database to DIR/azak_backup_YYYYMMDD_HHMMSS.sql.gz (private, checked)",
        "The file is one transaction that first clears what the migrations create, so the runbook's "
        "`gunzip` + `psql -f` of it brings back this database exactly; at base it also keeps a before-image.",
        changing,
    )
    bk.add_argument(
        "--dir", type=Path, default=backups.DEFAULT_DIR, help="backup directory (default data/backups)"
    )
    rs = command(
        "restore",
        "Load a backup into the database, all or nothing",
        "Reads the file once and runs exactly what it checked: a backup the kit signed, of this database, "
        "whole (a file it did not write only with --foreign); one transaction under the deployment lock. "
        "Without --yes it only checks.",
        [*changing, waiting],
    )
    rs.add_argument(
        "file", type=Path, metavar="FILE", help="a backup written by `backup` (.sql.gz, or gunzipped .sql)"
    )
    rs.add_argument(
        "--yes", action="store_true", help="confirm: replace the database's objects with the backup's"
    )
    rs.add_argument(
        "--other-database",
        action="store_true",
        help="load a backup of another database (or server) into this one, e.g. to test it",
    )
    rs.add_argument(
        "--foreign",
        action="store_true",
        help="load a file the kit did not write: its SQL (no COPY data, at most 128 MiB) runs inside one "
        "call as a role that can neither run programs nor change roles",
    )
    rs.add_argument(
        "--foreign-role",
        metavar="ROLE",
        default=None,
        help="the role a foreign file runs as (default: the owner of public.stocks; never a superuser)",
    )
    return top


def target(args: argparse.Namespace) -> str | None:
    """The --db-url given, wherever it stands on the command line (two different: usage error)."""
    given = {u for u in (getattr(args, "top_db_url", None), getattr(args, "db_url", None)) if u}
    if len(given) > 1:
        raise UsageError("--db-url given twice with different URLs: give one")
    return given.pop() if given else None


def settings(args: argparse.Namespace) -> Settings:
    """Runner settings from the tuning options (bounded by the parser)."""
    default = Settings()
    return Settings(
        lock_wait_s=getattr(args, "lock_wait", default.lock_wait_s),
        lock_timeout_ms=getattr(args, "lock_timeout", default.lock_timeout_ms),
        retries=getattr(args, "retries", default.retries),
        batch_size=getattr(args, "batch_size", default.batch_size),
    )


def run(args: argparse.Namespace) -> None:
    """Carry out one command; one that changes the database adds a row to the record."""
    if args.command == "plan" and args.all:
        print(plan.script(load_all(), settings(args)), end="")
        return
    url = resolve(target(args))
    if args.command in ("status", "plan"):
        with open_runner(url, settings(args)) as runner:
            print(inspect(runner, args.command), end="")
        return
    where = record.resolve(args.record)
    if where is not None:
        record.writable(where)  # before the change: its row must be writable after it
    try:
        said = change(url, args)
    except (DeployError, UsageError) as exc:
        if not isinstance(exc, UsageError):
            keep_record(args, url, "FAILED", str(exc))
        raise
    keep_record(args, url, "passed", said)
    print(said)


def change(url: URL, args: argparse.Namespace) -> str:
    """Carry out a command that changes the database; the sentence that says what was done."""
    if args.command == "backup":
        path = backups.backup(url, args.dir)
        kept = backups.keep_before_image(url, args.dir)  # beside the dump: it serves as the before-image
        if kept:
            print(f"Before-image of {mask(url)} kept in {kept}.")
        return f"Backup of {mask(url)}: {path} ({path.stat().st_size:,} bytes), checked."
    if args.command == "restore":
        if not args.yes:
            what = restore.check(url, args.file, args.other_database, args.foreign)
            raise UsageError(
                f"restore replaces the objects of {mask(url)}: add --yes to confirm (checked: {what})"
            )
        what = restore.restore(
            url,
            args.file,
            args.lock_timeout,
            args.lock_wait,
            args.other_database,
            args.foreign,
            args.foreign_role,
        )
        return f"Restored {what} into {mask(url)}, in one transaction."
    with open_runner(url, settings(args)) as runner:
        if args.command == "upgrade":
            done = runner.upgrade(args.to)
            what = f"applied {len(done)} migration(s) ({', '.join(done)})" if done else "nothing to apply"
            return f"Upgrade done on {mask(url)}: {what}."
        done = runner.downgrade(args.to)
        what = f"rolled back {len(done)} migration(s) ({', '.join(done)})" if done else "nothing to roll back"
        return f"Downgrade done on {mask(url)}: {what}."


def inspect(runner: Runner, command: str) -> str:
    """status and plan, in sentences."""
    rows = runner.status()
    applied = [name for name, state in rows if state.startswith("applied")]
    if command == "plan":
        script = runner.plan()
        if len(applied) == len(rows):
            return f"-- Nothing to plan: every migration is applied on {mask(runner.url)}.\n"
        return script
    head = f"head: {applied[-1]}" if applied else "at base"
    lines = [f"Database {mask(runner.url)}: {len(applied)} of {len(rows)} migrations applied ({head})."]
    lines += [f"  {name:<28} {state}" for name, state in rows]
    return "\n".join(lines) + "\n"


def keep_record(args: argparse.Namespace, url: URL, result: str, notes: str) -> None:
    """The action's row in the deployment record (unless --record none)."""
    path = record.resolve(args.record)
    if path is None:
        return
    detail = f"--to {args.to}" if getattr(args, "to", None) else getattr(args, "file", "") or ""
    entry = record.Entry(
        action=f"{args.command} {detail}".strip(),
        result=result,
        notes=f"{notes} ({mask(url)})" if mask(url) not in notes else notes,
        environment=args.env_name,
        executor=args.executor,
    )
    record.append(entry, path)


def main() -> None:
    """Entry point."""
    with fail_cleanly():
        run(parser().parse_args())


if __name__ == "__main__":
    main()
