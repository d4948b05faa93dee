"""`python -m verification [OPTIONS]`: the post-deploy checklist, as an operator runs it.

The same checks as `pytest verification OPTIONS`, with only the plugins a verification needs
(pytest-html and pytest-metadata, pytest-xdist when `-n` asks for it): the development tools
installed beside them (hypothesis, pytest-postgresql, ...) are never loaded, which keeps a
run within about half a second. `--help` lists the kit's own options; pytest's options work
too (`--html=F --self-contained-html`, `--junitxml=F`, `-q`, `-n N`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
PLUGINS = ("pytest_metadata.plugin",)
# pytest's own plugins a verification never uses (the last two collect garbage at exit: ~50 ms)
UNUSED = ("cacheprovider", "doctest", "pastebin", "legacypath", "unraisableexception", "threadexception")
PARALLEL = ("-n", "--numprocesses", "--dist", "--maxprocesses")
HTML = ("--html", "--self-contained-html", "--css")  # pytest-html (and its jinja2) only for these
USAGE = "python -m verification [--db-url URL] [--to head|base|ledger|NAME] [OPTIONS]"
MORE = """pytest's options work too, among them:
  --html=FILE --self-contained-html   the report, one file for a browser
  --junitxml=FILE                     the checks as JUnit XML (CI)
  -q / -v                             fewer / more lines; -n N: a fleet's databases in parallel
Every option of pytest and its plugins: python -m pytest verification --help

Exit status: 0 every check passed, 1 a check failed, 4 bad options or no database."""


class Options:
    """Collects the kit's options as `pytest_addoption` declares them (no pytest run)."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(prog="python -m verification", usage=USAGE, epilog=MORE)
        self.parser.formatter_class = argparse.RawDescriptionHelpFormatter
        self.parser.description = "The post-deploy checklist of the kit, on one database or a fleet."

    def getgroup(self, name: str, description: str = "", after: str | None = None) -> Options:
        return self

    def addoption(self, *names: str, **spec: Any) -> None:
        self.parser.add_argument(*names, **spec)


def short_help() -> str:
    """The kit's own options only, as the checks' conftest declares them."""
    from verification.options import declare

    options = Options()
    declare(options)  # type: ignore[arg-type]
    return options.parser.format_help()


def arguments(args: list[str]) -> list[str]:
    """pytest's arguments: the checks, the plugins they need, then the operator's."""
    wanted = [
        *PLUGINS,
        *(("pytest_html.plugin",) if any(a.startswith(HTML) for a in args) else ()),
        *(("xdist.plugin",) if any(a.startswith(PARALLEL) for a in args) else ()),
    ]
    unused = (f"no:{name}" for name in UNUSED)
    return [str(HERE), *(x for name in (*unused, *wanted) for x in ("-p", name)), *args]


def main(args: list[str] | None = None) -> int:
    """Run the checks; pytest's exit status."""
    args = sys.argv[1:] if args is None else args
    if "-h" in args or "--help" in args:
        print(short_help())
        return 0
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins named here
    return int(pytest.main(arguments(args)))


if __name__ == "__main__":
    raise SystemExit(main())
