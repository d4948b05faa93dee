"""The README's Deploying and Rolling back commands run as written on a fresh clone after
`make setup`: each names the venv that `make setup` makes, each parses (the migrations' commands
by their own parser, the verification's through `--collect-only`, which checks every option but
connects to nothing). The venv's commands in docs/ parse the same way."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from migrations.__main__ import parser
from tests.conftest import ROOT, run

VENV_PYTHON = ".venv/bin/python"
SECTIONS = ("Deploying", "Rolling back")


def bash_commands(text: str) -> list[list[str]]:
    """The command lines of the bash blocks of a Markdown text (continuations joined, comments
    dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


def deploying_commands() -> list[list[str]]:
    """The commands of the README's Deploying and Rolling back sections, in order."""
    readme = (ROOT / "README.md").read_text()
    return bash_commands(
        "\n".join(readme.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0] for name in SECTIONS)
    )


COMMANDS = deploying_commands()
README_KIT = [c for c in COMMANDS if c[0] != "make" and c[0] != "export"]
DOCS_KIT = [
    c
    for doc in sorted((ROOT / "docs").glob("*.md"))
    for c in bash_commands(doc.read_text())
    if c[0] == VENV_PYTHON
]
KIT = README_KIT + DOCS_KIT


def test_the_readme_sets_up_first_with_a_setup_only_target() -> None:
    assert COMMANDS[0] == ["make", "setup"]
    dry = run(["make", "-n", "setup"], timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert not re.search(r"pytest|rehearse|bench", dry.stdout), dry.stdout  # setting up only
    assert len(README_KIT) >= 8 and all(c[:2] == [VENV_PYTHON, "-m"] for c in KIT), KIT


@pytest.mark.parametrize("words", [c for c in KIT if c[2] == "migrations"], ids=lambda c: " ".join(c[2:4]))
def test_each_migrations_command_parses(words: list[str]) -> None:
    args = parser().parse_args(words[3:])  # a usage error raises: one line, exit 2
    assert args.command == words[3]


@pytest.mark.parametrize("words", [c for c in KIT if c[2] == "verification"], ids=lambda c: " ".join(c[2:4]))
def test_each_verification_command_parses(words: list[str], tmp_path: Path) -> None:
    python = ROOT / VENV_PYTHON
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://deploy@db.internal:5432/azak",
        "STAGING": "postgresql://deploy@staging.internal/azak",
        "PRODUCTION": "postgresql://deploy@db.internal/azak",
    }
    argv = [re.sub(r"\$(\w+)", lambda m: env[m[1]], w) for w in words[1:]]  # as the shell expands them
    done = subprocess.run(
        [str(python) if python.exists() else sys.executable, *argv, "--collect-only", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_indexes_are_as_expected" in done.stdout
