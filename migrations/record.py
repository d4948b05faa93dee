"""The deployment record: the runbook's table of what was done to which database, by whom.

One markdown table row per action (verification now; backup, upgrade, downgrade, restore
too), appended to `data/deployments.md` by default: `data/` is kept by `make clean`.

    from migrations import record
    record.append(record.Entry("upgrade", "passed", "3 migrations applied", environment="staging"))

Every cell is escaped, so a value (an environment name, a failure message) can neither
break the table nor put markup into it: pipes, backslashes and newlines; what renderers act
on as HTML or code (`<`, `>`, `&`, backticks); links and images (`[`, `]`), emphasis and
strikethrough (`*`, `~`, `_` outside a word), math (`$`); and what GitHub links by itself:
URLs (`://`, `www.`), e-mail addresses and @mentions (`@`), issue references (`#12`,
`GH-12`), each broken by a zero-width space (`&#8203;`). A secret a value shows is ***.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from migrations.dburl import DeployError, mask_text

DEFAULT_PATH = Path("data/deployments.md")
PATH_ENV = "AZAK_RECORD"  # another default (the tests' own file, make rehearse's)


def default_path() -> Path:
    """AZAK_RECORD, else data/deployments.md."""
    return Path(os.environ.get(PATH_ENV) or DEFAULT_PATH)


COLUMNS = ("date", "environment", "executor", "action", "result", "notes", "report")
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|" + "|".join("---" for _ in COLUMNS) + "|\n"

# `&` first: the entities that follow must not be escaped again; the backslash before the
# backslash escapes that follow it.
_ESCAPES = (
    ("&", "&amp;"),
    ("\\", "&#92;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("`", "&#96;"),
    ("|", "\\|"),
    ("[", "\\["),
    ("]", "\\]"),
    ("*", "\\*"),
    ("~", "\\~"),
    ("$", "\\$"),
)
ZERO_WIDTH = "&#8203;"
# `_` that could open or close emphasis (not between two letters or digits); then what GitHub
# links in text: URLs, www., e-mail addresses and mentions, issue references.
_PATTERNS = (
    (re.compile(r"(?<![^\W_])_|_(?![^\W_])"), r"\\_"),
    (re.compile(r"(:)(//)|(www)(\.)|(@)()|(?<!&)(#)(\d)|(GH-)(\d)", re.IGNORECASE), None),
)


@dataclass
class Entry:
    """One row: what was done (`action`), how it ended (`result`), and why (`notes`)."""

    action: str
    result: str
    notes: str
    environment: str = "unspecified"
    executor: str | None = None  # None: the OS user
    report: str = ""  # where the detailed report is, if any
    date: str | None = None  # None: now, local time to the minute with its offset

    def cells(self) -> list[str]:
        """The row's cells, in COLUMNS order, unescaped."""
        return [
            self.date or datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z"),
            self.environment,
            self.executor or getpass.getuser(),
            self.action,
            self.result,
            self.notes,
            self.report,
        ]


def escape(value: object) -> str:
    """A value as one inert markdown table cell: rendered, it reads as the value (with
    zero-width spaces), and makes nothing (no link, image, mention, emphasis, HTML)."""
    text = " ".join(str(value).split())  # newlines and tabs: one space
    for raw, safe in _ESCAPES:
        text = text.replace(raw, safe)
    (underscore, replacement), (linked, _) = _PATTERNS
    text = underscore.sub(replacement, text)
    return linked.sub(lambda m: ZERO_WIDTH.join(g for g in m.groups() if g is not None), text)


def row(entry: Entry) -> str:
    """The entry as one markdown table line (a secret a value shows: ***)."""
    return "| " + " | ".join(escape(mask_text(str(c))) for c in entry.cells()) + " |\n"


def resolve(path: str | Path | None) -> Path | None:
    """The record's path from an option: None or "" → the default; "none" → no record."""
    if path is None or str(path) == "":
        return default_path()
    if str(path).lower() == "none":
        return None
    return Path(path)


def writable(path: Path) -> None:
    """Fail (one line) before an action when its row could not be written after it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise DeployError(f"cannot write the deployment record {path}: {exc.strerror or exc}") from None


def append(entry: Entry, path: Path | None = None) -> Path:
    """Append `entry` to the record at `path` (default data/deployments.md) and return the path.

    Creates the parent directories, and the header when the file is new or does not end in a
    table. Concurrent writers (a fleet's, or two terminals') take turns on a file lock.
    Raises DeployError, one line, when the file cannot be written.
    """
    path = default_path() if path is None else Path(path)
    line = row(entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.seek(0)
            content = out.read()
            lines = content.splitlines()
            text = line
            if not lines or not lines[-1].startswith("|"):  # new, or ends in prose or a blank line
                text = ("\n" if content.strip() else "") + HEADER + line
            if content and not content.endswith("\n"):
                text = "\n" + text
            out.write(text)
    except OSError as exc:
        raise DeployError(f"cannot write the deployment record {path}: {exc.strerror or exc}") from None
    return path
