"""The verification's options: declared, checked before anything runs (one line each when
wrong), and the state `--to` names, resolved against the chain."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from migrations.dburl import UsageError
from migrations.steps import load_all, title
from verification import operations
from verification.db import LOCK_TIMEOUT_MS, MAX_ROW_LOSS, SCAN_ROWS, STATEMENT_TIMEOUT_MS
from verification.state import ALIASES, target_name

LEDGER_HEAD = pytest.StashKey[str]()  # --to ledger: the state the ledger records
HTML_INI = "environment_table_redact_list"  # pytest.ini's, for pytest-html (python -m verification --html)
# Numeric options: (type, lowest, highest), checked before anything runs.
NUMBERS: dict[str, tuple[type[int] | type[float], float, float]] = {
    "--lock-timeout": (int, 1, 600_000),
    "--statement-timeout": (int, 1, 3_600_000),
    "--app-timeout": (float, 0.1, 600),
    "--backup-max-age": (float, 0, 100_000),
}


def declare(parser: pytest.Parser) -> None:
    """The verification options (`pytest_addoption`'s; `python -m verification --help` lists them)."""
    # first in --help, right after the positional arguments
    try:
        named = title()
    except (UsageError, ImportError, AttributeError):  # said in one line once the options are read
        named = "the chain's"
    group = parser.getgroup("azak", f"{named} post-deploy verification", after="_anonymous")
    group.addoption(
        "--db-url",
        action="append",
        default=[],
        help="database to verify, repeatable for a fleet (else DATABASE_URL, else POSTGRES_*)",
    )
    group.addoption("--db-urls-file", default=None, help="a file of database URLs, one per line")
    group.addoption(
        "--to",
        default=None,
        metavar="head|base|ledger|NAME",
        help="the state to verify: after migration NAME, 'head' (every migration; the default), "
        "'base' (before the first: a complete rollback) or 'ledger' (what the ledger records)",
    )
    group.addoption(
        "--expect",
        default=None,
        metavar="upgraded|rolled-back",
        help="the same as --to: upgraded = head, rolled-back = base",
    )
    group.addoption(
        "--before",
        default=None,
        metavar="FILE",
        help="a before-image file of this database, for one the kit did not deploy (default: the image of"
        " the deployment its registry records; 'none': judge only what the migrations declare)",
    )
    group.addoption(
        "--allow",
        action="append",
        default=[],
        metavar="OBJECT",
        help="a difference to allow, by the object it names (e.g. 'index stocks.ix_extra'; "
        "* and ? match); shown as allowed, repeatable",
    )
    group.addoption(
        "--env-name",
        default=None,
        help="environment name for the report and record (default: the one the database was last named)",
    )
    group.addoption(
        "--executor", default=None, help="who runs the verification (default: $AZAK_EXECUTOR, else OS user)"
    )
    group.addoption("--app-url", default=None, help="application health URL that must answer 2xx")
    group.addoption("--app-timeout", default=5.0, metavar="S", help="seconds the health URL may take (5)")
    # Not --log-file: that is pytest's own option, and pytest would overwrite the file with its log.
    group.addoption("--app-log", default=None, help="application log file to scan for errors")
    group.addoption(
        "--since", default=None, help="scan the log from this time on (ISO time, or 30m / 2h ago)"
    )
    group.addoption(
        "--app-models",
        default=None,
        metavar="PACKAGE.MODULE[:ATTR]",
        help="the application's SQLAlchemy declarative base or MetaData, compared with the database"
        " (e.g. backend.db.models:Base)",
    )
    group.addoption(
        "--app-path", default=None, metavar="DIR", help="put first on sys.path to import --app-models from"
    )
    group.addoption("--backup-dir", default=None, help="directory of the pre-deploy backup")
    group.addoption(
        "--backup-max-age", default=24.0, metavar="H", help="hours the backup may be old (default 24)"
    )
    group.addoption(
        "--lock-timeout",
        default=LOCK_TIMEOUT_MS,
        metavar="MS",
        help=f"lock_timeout of every check's session (default {LOCK_TIMEOUT_MS})",
    )
    group.addoption(
        "--statement-timeout",
        default=STATEMENT_TIMEOUT_MS,
        metavar="MS",
        help=f"statement_timeout of every check's session (default {STATEMENT_TIMEOUT_MS})",
    )
    # -- the data checks (test_data.py) --
    group.addoption(
        "--max-row-loss",
        type=fraction,
        default=MAX_ROW_LOSS,
        metavar="F",
        help=f"the share of a table's rows (0..1) it may lose since the before-image: the application"
        f" deletes rows; more is a loss (default {MAX_ROW_LOSS}; 1: never judged)",
    )
    group.addoption(
        "--scan-rows",
        type=int,
        default=SCAN_ROWS,
        metavar="N",
        help=f"rows per table the data checks try against the catalog's word (default {SCAN_ROWS:,};"
        " 0: every row)",
    )
    group.addoption(
        "--record",
        default=None,
        metavar="FILE|none",
        help="deployment record to append this run's row to (default $AZAK_RECORD, else "
        "data/deployments.md; 'none': no record)",
    )


def fraction(text: str) -> float:
    """--max-row-loss: a share of rows, 0..1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


def validate(config: pytest.Config) -> None:
    """The options an operator gives, each a usage error in one line when wrong."""
    for name, (kind, low, high) in NUMBERS.items():
        text = config.getoption(name)
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{name}={text}: not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise pytest.UsageError(f"{name}={text}: must be between {low!r} and {high!r}")
        setattr(config.option, name.lstrip("-").replace("-", "_"), value)
    expect = config.getoption("--expect")
    if expect and expect not in ALIASES:
        raise pytest.UsageError(f"--expect={expect}: one of {', '.join(ALIASES)} (or --to head|base|NAME)")
    since = config.getoption("--since")
    try:
        operations.parse_since(since) if since else None
    except ValueError:
        raise pytest.UsageError(f"--since={since}: neither an ISO time nor 30m / 2h / 1d") from None
    try:
        load_all()  # the chain itself: a change that cannot load is one line
    except (UsageError, ImportError, AttributeError) as error:
        raise pytest.UsageError(f"the chain of changes does not load: {error}") from None
    chosen(config)  # --to: a known migration, head, base or ledger


def given_urls(config: pytest.Config) -> list[str | None]:
    """The URLs of --db-url and --db-urls-file; [None] (the environment's) when none is given."""
    urls: list[str | None] = list(config.getoption("--db-url") or [])
    listing = config.getoption("--db-urls-file")
    if listing:
        lines = Path(listing).read_text().splitlines()
        urls += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    return urls or [None]


def chosen(config: pytest.Config) -> str:
    """The migration the verified state ends with, or 'base'; a usage error if unknown."""
    names = [m.name for m in load_all()]
    name = target_name(config)
    if name == "ledger":  # resolved once connected (--collect-only: as head)
        name = config.stash.get(LEDGER_HEAD, "head")
    name = names[-1] if name == "head" else name
    if name not in (*names, "base"):
        raise pytest.UsageError(f"--to {name}: unknown migration; known: head, base, {', '.join(names)}")
    return name
