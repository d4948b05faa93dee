"""`python -m migrations COMMAND`: upgrade, downgrade, status, plan, backup, restore."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

from migrations import backup as backups
from migrations import plan
from migrations.cli import fail_cleanly, open_runner
from migrations.dburl import UsageError, mask, resolve
from migrations.runner import Settings
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
    tuning = Parser(add_help=False, parents=[waiting])
    tuning.add_argument(
        "--retries",
        type=bounded(int, 1, 100),
        default=5,
        help="tries per transaction on a lock timeout (default 5; 1..100)",
    )
    tuning.add_argument(
        "--batch-size",
        type=bounded(int, 1, MAX_BATCH),
        default=5000,
        help=f"stocks rows per priority batch (default 5000; 1..{MAX_BATCH:,})",
    )
    # The URL after the command lands in db_url, before it in top_db_url: neither resets the other.
    common = Parser(add_help=False)
    common.add_argument("--db-url", default=None, help=url_help)

    top = Parser(prog="python -m migrations", description="US-001 migrations: deploy, roll back, inspect.")
    top.add_argument("--db-url", dest="top_db_url", default=None, metavar="DB_URL", help=url_help)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    up = sub.add_parser("upgrade", parents=[common, tuning], help="apply pending migrations")
    up.add_argument("--to", metavar="NAME", help="stop after this migration")
    down = sub.add_parser("downgrade", parents=[common, tuning], help="roll migrations back")
    down.add_argument(
        "--to",
        metavar="base|NAME",
        required=True,
        help="roll back everything after NAME ('base': everything)",
    )
    sub.add_parser("status", parents=[common], help="applied / pending / changed migrations")
    plan_cmd = sub.add_parser("plan", parents=[common, tuning], help="print the SQL upgrade would run")
    plan_cmd.add_argument(
        "--all", action="store_true", help="every migration, as on a fresh database (no connection)"
    )
    bk = sub.add_parser("backup", parents=[common], help="pg_dump to data/backups/*.sql.gz (private)")
    bk.add_argument("--dir", type=Path, default=backups.DEFAULT_DIR, help="backup directory")
    rs = sub.add_parser(
        "restore", parents=[common, waiting], help="load a backup (.sql.gz or .sql) in one transaction"
    )
    rs.add_argument("file", type=Path)
    rs.add_argument(
        "--yes", action="store_true", help="confirm: replace the database's objects with the backup's"
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
    return Settings(
        lock_wait_s=args.lock_wait,
        lock_timeout_ms=args.lock_timeout,
        retries=args.retries,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> None:
    """Carry out one command."""
    db_url = target(args)
    if args.command == "backup":
        url = resolve(db_url)
        path = backups.backup(url, args.dir)
        print(f"backup of {mask(url)}: {path} ({path.stat().st_size:,} bytes), checked")
        return
    if args.command == "restore":
        url = resolve(db_url)
        if not args.yes:
            backups.check(args.file, require_table="stocks")
            raise UsageError(f"restore replaces the objects of {mask(url)}: add --yes to confirm")
        backups.restore(url, args.file, args.lock_timeout, args.lock_wait)
        print(f"restored {args.file} into {mask(url)}")
        return
    tuned = settings(args) if hasattr(args, "batch_size") else None
    if args.command == "plan" and args.all:
        print(plan.script(load_all(), tuned or Settings()), end="")
        return
    with open_runner(db_url, tuned) as runner:
        if args.command == "upgrade":
            done = runner.upgrade(args.to)
            print(f"upgrade done: {len(done)} migration(s) applied on {mask(runner.url)}")
        elif args.command == "downgrade":
            done = runner.downgrade(args.to)
            print(f"downgrade done: {len(done)} migration(s) rolled back on {mask(runner.url)}")
        elif args.command == "status":
            print(f"database: {mask(runner.url)}")
            for name, state in runner.status():
                print(f"  {name:<28} {state}")
        elif args.command == "plan":
            print(runner.plan(), end="")


def main() -> None:
    """Entry point."""
    with fail_cleanly():
        run(parser().parse_args())


if __name__ == "__main__":
    main()
