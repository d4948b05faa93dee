"""`python -m migrations COMMAND`: upgrade, downgrade, status, plan, backup, restore; and the
registry's record, adopt, image and forget-registry."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg2

from migrations import backup as backups
from migrations import history, image, ledger, plan, record, registry, restore
from migrations.changes import APPLICATION_TABLE
from migrations.cli import fail_cleanly, open_runner
from migrations.dburl import KIT_PATH, URL, DeployError, UsageError, connect, mask, resolve
from migrations.runner import Runner, Settings, find
from migrations.steps import load_all, rewrites

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
        help=f"rows per rewriting batch (default 5000; 1..{MAX_BATCH:,})",
    )
    sizing.add_argument(
        "--workers",
        type=bounded(int, 1, 16),
        default=2,
        help="sessions sharing the rewriting batches of a large table, each its own key range (default 2)",
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
    recorded.add_argument(
        "--env-name",
        default=None,
        help="environment, for the record (default: the one this database was last named, else unspecified)",
    )
    recorded.add_argument(
        "--executor", default=None, help="who runs it, for the record (default: $AZAK_EXECUTOR, else OS user)"
    )
    changing = [common, recorded]
    reasoned = Parser(add_help=False)
    reasoned.add_argument("--reason", default="", help="why, for the database's history and the record")

    top = Parser(
        prog="python -m migrations",
        description="Deploy, roll back and inspect the chain of migrations on one database.",
        epilog="`python -m migrations COMMAND --help` describes each command.",
    )
    top.add_argument("--db-url", dest="top_db_url", default=None, metavar="DB_URL", help=url_help)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name: str, summary: str, details: str, parents: list[Parser]) -> Parser:
        return sub.add_parser(name, parents=parents, help=summary, description=f"{summary}. {details}")

    up = command(
        "upgrade",
        "Apply the pending migrations, in order",
        "Keeps a before-image of the database first (in its registry, azak_registry), then runs each "
        "migration in short transactions under the deployment lock; an interrupted one is resumed.",
        [*changing, tuning],
    )
    up.add_argument("--to", metavar="NAME", help="stop after this migration (default: all)")
    down = command(
        "downgrade",
        "Roll migrations back, newest first",
        "Every value a migration rewrote is put back (the columns its contract says it rewrites).",
        [*changing, tuning, reasoned],
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
        "`gunzip` + `psql -f` of it brings back this database exactly (and tells its registry).",
        changing,
    )
    bk.add_argument(
        "--dir", type=Path, default=backups.DEFAULT_DIR, help="backup directory (default data/backups)"
    )
    rs = command(
        "restore",
        "Load a backup into the database, all or nothing",
        "Reads the file once and runs exactly what it checked: a backup the kit signed, of this database, "
        "whole (a file it did not write only with --foreign); one transaction under the deployment lock, "
        "which also sets the registry's ledger to the backup's. Without --yes it only checks.",
        [*changing, waiting, reasoned],
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
        help=f"the role a foreign file runs as (default: the owner of {APPLICATION_TABLE};"
        " never a superuser)",
    )
    rec = command(
        "record",
        "Print the database's history as the runbook's deployment table",
        "Every action of the kit on this database, from any machine, from its registry (azak_registry);"
        " an action that never finished reads 'interrupted'. Changes nothing.",
        [common],
    )
    rec.add_argument("--limit", type=bounded(int, 1, 1_000_000), default=None, help="only the last N rows")
    command(
        "adopt",
        "Move an earlier kit's ledger (public.schema_migrations) into the registry",
        "With the before-images that kit kept in data/images ($AZAK_IMAGES_DIR) here, if found; every "
        "changing command does it too.",
        changing,
    )
    img = command(
        "image",
        "Write the database's before-image to a private file",
        "For `pytest verification --before FILE` where the kit does not deploy (the kit keeps its own in "
        "the registry).",
        [common],
    )
    img.add_argument(
        "--dir", type=Path, default=None, help="directory (default $AZAK_IMAGES_DIR, else data/images)"
    )
    forget = command(
        "forget-registry",
        "Remove the kit's registry (schema azak_registry) from the database",
        "Its ledger, before-images and history go; refused while the ledger records a migration.",
        [common, recorded],
    )
    forget.add_argument(
        "--yes", action="store_true", help="confirm: drop schema azak_registry and all it holds"
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
        workers=getattr(args, "workers", default.workers),
    )


@dataclass
class Outcome:
    """What a command did: the sentence, and the history's columns."""

    said: str
    migrations: str = ""
    report: str = ""
    backup: str | None = None


def run(args: argparse.Namespace) -> None:
    """Carry out one command; one that changes the database adds a row to its history and to
    the local record."""
    if args.command == "plan" and args.all:
        print(plan.script(load_all(), settings(args)), end="")
        return
    url = resolve(target(args))
    if args.command in ("status", "plan"):
        with open_runner(url, settings(args)) as runner:
            print(inspect(runner, args.command), end="")
        return
    if args.command == "record":
        print(history.render(history.rows(url, args.limit)), end="")
        return
    if args.command == "image":
        print(keep_image(url, args))
        return
    where = record.resolve(args.record)
    if where is not None:
        record.writable(where)  # before the change: its row must be writable after it
    if args.command == "restore" and not args.yes:
        what = restore.check(url, args.file, args.other_database, args.foreign)
        raise UsageError(
            f"restore replaces the objects of {mask(url)}: add --yes to confirm (checked: {what})"
        )
    if getattr(args, "to", None):  # before the history row (which makes the registry)
        find(load_all(), args.to)
    if args.command == "forget-registry" and not args.yes:
        raise UsageError(
            f"forget-registry drops schema {registry.SCHEMA} of {mask(url)}: add --yes to confirm"
        )
    action = history.Action(url, args.command, detail(args), args.env_name, args.executor, reason(args))
    try:
        with history.recorded(action, start=args.command != "forget-registry"):
            done = change(url, args)
            action.finish("passed", done.migrations, notes=done.said, report=done.report, backup=done.backup)
    except (DeployError, psycopg2.Error) as exc:
        keep_record(args, url, "FAILED", history.failure(exc, url), action.environment)
        raise
    keep_record(args, url, "passed", done.said, action.environment)
    print(done.said)


def change(url: URL, args: argparse.Namespace) -> Outcome:
    """Carry out a command that changes the database; what was done."""
    if args.command == "adopt":  # done when its history row was started (by every command)
        return Outcome(f"Registry {registry.SCHEMA} of {mask(url)}: nothing more to adopt.")
    if args.command == "forget-registry":
        return Outcome(forget_registry(url, args))
    if args.command == "backup":
        path = backups.backup(url, args.dir)
        said = f"Backup of {mask(url)}: {path} ({path.stat().st_size:,} bytes), checked."
        return Outcome(said, history.ledger_line(url), str(path), history.backup_token(path))
    if args.command == "restore":
        what = restore.restore(
            url,
            args.file,
            args.lock_timeout,
            args.lock_wait,
            args.other_database,
            args.foreign,
            args.foreign_role,
        )
        if "(a foreign file)" in what or history.backup_token(args.file) is None:
            print(registry.after_unknown_restore(url, load_all()))  # its ledger is not in the file
        said = f"Restored {what} into {mask(url)}, in one transaction."
        return Outcome(said, history.ledger_line(url))
    with Runner(url, settings(args), executor=args.executor) as runner:
        if args.command == "upgrade":
            done = runner.upgrade(args.to)
            what = f"applied {len(done)} migration(s) ({', '.join(done)})" if done else "nothing to apply"
            return Outcome(f"Upgrade done on {mask(url)}: {what}.", "applied: " + (", ".join(done) or "none"))
        done = runner.downgrade(args.to)
        what = f"rolled back {len(done)} migration(s) ({', '.join(done)})" if done else "nothing to roll back"
        said = f"Downgrade done on {mask(url)}: {what}."
        return Outcome(said, "rolled back: " + (", ".join(done) or "none"))


def forget_registry(url: URL, args: argparse.Namespace) -> str:
    """Drop the registry, under the deployment lock, unless its ledger records a migration."""
    with Runner(url, settings(args)) as runner, runner.deployment_lock():
        if runner.entries():
            raise DeployError(
                f"the ledger of {mask(url)} records {', '.join(runner.entries())}: roll back first"
                " (without the registry the kit would not know what is applied); nothing was changed"
            )
        gone = runner.transaction(
            lambda cur: registry.forget(cur) if registry.exists(cur) else None, "forget"
        )
    said = f"Registry {registry.SCHEMA} removed from {mask(url)}"
    return said + (f": {gone} with it." if gone else " (there was none).")


def keep_image(url: URL, args: argparse.Namespace) -> str:
    """`image`: the database's before-image as a private file."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            kept = image.keep(cur, list(rewrites(load_all())), [], args.dir)
    finally:
        conn.close()
    return f"Before-image of {mask(url)} written to {kept.path} (for pytest verification --before FILE)."


def detail(args: argparse.Namespace) -> str:
    """What the action was aimed at: --to NAME, or the file."""
    return f"--to {args.to}" if getattr(args, "to", None) else str(getattr(args, "file", "") or "")


def reason(args: argparse.Namespace) -> str:
    return str(getattr(args, "reason", "") or "")


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
    width = max((len(name) for name, _ in rows), default=0) + 1
    lines += [f"  {name:<{width}} {state}" for name, state in rows]
    lines.append(runner.transaction(registry.summary, "read the registry"))
    return "\n".join(lines) + "\n"


def keep_record(args: argparse.Namespace, url: URL, result: str, notes: str, environment: str) -> None:
    """The action's row in the local deployment record (unless --record none)."""
    path = record.resolve(args.record)
    if path is None:
        return
    notes = f"{notes} ({mask(url)})" if mask(url) not in notes else notes
    entry = record.Entry(
        action=f"{args.command} {detail(args)}".strip(),
        result=result,
        notes=notes + (f"; reason: {reason(args)}" if reason(args) else ""),
        environment=environment or args.env_name or history.UNSPECIFIED,
        executor=ledger.who(args.executor),
    )
    record.append(entry, path)


def main() -> None:
    """Entry point."""
    with fail_cleanly():
        run(parser().parse_args())


if __name__ == "__main__":
    main()
