"""`python -m migrations COMMAND`: upgrade, downgrade, status, plan, backup, restore."""

from __future__ import annotations

import argparse
from pathlib import Path

from migrations import backup as backups
from migrations import plan
from migrations.cli import fail_cleanly, open_runner
from migrations.dburl import UsageError, mask, resolve
from migrations.runner import Settings
from migrations.steps import load_all


def parser() -> argparse.ArgumentParser:
    """The command line."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a --db-url given before the command is not reset by the subcommand's default
    common.add_argument(
        "--db-url", default=argparse.SUPPRESS, help="PostgreSQL URL (else DATABASE_URL, else POSTGRES_*)"
    )
    tuning = argparse.ArgumentParser(add_help=False)
    tuning.add_argument(
        "--lock-wait",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for another deployment to finish (default 10)",
    )
    tuning.add_argument(
        "--lock-timeout",
        type=int,
        default=2000,
        metavar="MS",
        help="lock_timeout of each transaction (default 2000)",
    )
    tuning.add_argument(
        "--retries", type=int, default=5, help="tries per transaction on a lock timeout (default 5)"
    )
    tuning.add_argument(
        "--batch-size", type=int, default=5000, help="stocks rows per priority batch (default 5000)"
    )

    top = argparse.ArgumentParser(
        prog="python -m migrations",
        parents=[common],
        description="US-001 migrations: deploy, roll back, inspect.",
    )
    top.set_defaults(db_url=None)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    bk = sub.add_parser("backup", parents=[common], help="pg_dump to data/backups/*.sql.gz")
    bk.add_argument("--dir", type=Path, default=backups.DEFAULT_DIR, help="backup directory")
    rs = sub.add_parser("restore", parents=[common], help="load a backup into the database")
    rs.add_argument("file", type=Path)
    rs.add_argument(
        "--yes", action="store_true", help="confirm: replace the database's objects with the backup's"
    )
    return top


def settings(args: argparse.Namespace) -> Settings:
    """Runner settings from the tuning options."""
    for name in ("lock_wait", "lock_timeout", "retries", "batch_size"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    return Settings(
        lock_wait_s=args.lock_wait,
        lock_timeout_ms=args.lock_timeout,
        retries=args.retries,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> None:
    """Carry out one command."""
    if args.command == "backup":
        url = resolve(args.db_url)
        path = backups.backup(url, args.dir)
        print(f"backup of {mask(url)}: {path} ({path.stat().st_size:,} bytes), checked")
        return
    if args.command == "restore":
        url = resolve(args.db_url)
        backups.check(args.file)
        if not args.yes:
            raise UsageError(f"restore replaces the objects of {mask(url)}: add --yes to confirm")
        backups.restore(url, args.file)
        print(f"restored {args.file} into {mask(url)}")
        return
    tuned = settings(args) if hasattr(args, "batch_size") else None
    if args.command == "plan" and args.all:
        print(plan.script(load_all(), tuned or Settings()), end="")
        return
    with open_runner(args.db_url, tuned) as runner:
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
    args = parser().parse_args()
    with fail_cleanly():
        run(args)


if __name__ == "__main__":
    main()
