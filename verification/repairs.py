"""A fact a migration made, put back as that migration wrote it, without touching data.

The statement is the migration's own, found in its SQL (never written here per object): the
`CREATE INDEX` of an index, the `COMMENT ON` of a comment, the `CREATE TRIGGER` and `CREATE
FUNCTION` of a trigger and its function (`CREATE OR REPLACE` when the function exists, a `DROP`
first when an index or trigger exists but differs); a constraint left NOT VALID is validated.
Anything else (a table, a column, a key, data) has no such statement: its migration's rollback
or the backup puts it back (`verification.advice`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from migrations.catalog import Key
from migrations.steps import Ddl, Migration


@dataclass(frozen=True)
class Difference:
    """A catalog fact that differs: what it should be (None: absent) and what was found."""

    key: Key
    expected: str | None
    found: str | None


DOLLAR = re.compile(r"\$([A-Za-z_]\w*)?\$")
LEADING_COMMENTS = re.compile(r"^(\s*--[^\n]*\n)+")


def quote(name: str) -> str:
    """An identifier quoted for a statement the advice prints (the operator runs it in psql)."""
    return '"' + name.replace('"', '""') + '"'


def statements(text: str) -> list[str]:
    """SQL text split at its semicolons (quotes, dollar quotes and comments respected)."""
    found, start, i = [], 0, 0
    while i < len(text):
        char = text[i]
        if char in "'\"":
            end = text.find(char, i + 1)
            while end != -1 and text.startswith(char, end + 1):  # a doubled quote
                end = text.find(char, end + 2)
            i = len(text) if end == -1 else end + 1
            continue
        tag = DOLLAR.match(text, i) if char == "$" else None
        closing = {"-": "\n", "/": "*/"}.get(char) if text.startswith(("--", "/*"), i) else None
        if tag or closing:
            mark = tag.group(0) if tag else closing or ""
            end = text.find(mark, i + (len(mark) if tag else 2))
            i = len(text) if end == -1 else end + len(mark)
            continue
        if char == ";":
            found.append(text[start : i + 1])
            start = i + 1
        i += 1
    found.append(text[start:])
    cleaned = (LEADING_COMMENTS.sub("", s.strip() + "\n").strip() for s in found)
    return [s for s in cleaned if s.rstrip(";").strip()]


def name(text: str) -> str:
    """An identifier as a migration may write it (unquoted or quoted, optionally in public)."""
    return rf'(?:public\.)?"?{re.escape(text)}"?'


def creates(statement: str, key: Key) -> bool:
    """Whether `statement` creates (or sets) the fact `key`."""
    table = name(key.table)
    patterns = {
        "index": rf"CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(IF\s+NOT\s+EXISTS\s+)?{name(key.name)}"
        rf"\s+ON\s+(ONLY\s+)?{table}[\s(]",
        "trigger": rf"CREATE\s+(OR\s+REPLACE\s+)?(CONSTRAINT\s+)?TRIGGER\s+{name(key.name)}"
        rf"\s.*?\sON\s+{table}\s",
        "function": rf"CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s+{name(key.name.split('(')[0])}\s*\(",
        "comment": rf"COMMENT\s+ON\s+COLUMN\s+{table}\.{name(key.name)}\s+IS\s"
        if key.name
        else rf"COMMENT\s+ON\s+TABLE\s+{table}\s+IS\s",
    }
    pattern = patterns.get(key.kind)
    return bool(pattern and re.match(pattern, statement, re.IGNORECASE | re.DOTALL))


def repair(migration: Migration, difference: Difference) -> tuple[int, list[str]] | None:
    """The statements that put a fact back as `migration` made it, without touching data, and
    where they stand in its SQL; None when there are none (the fact holds or needs data)."""
    key, found = difference.key, difference.found
    if difference.expected is None:
        return None
    if key.kind == "constraint":
        if found != f"{difference.expected} NOT VALID":
            return None
        return 1 << 30, [f"ALTER TABLE public.{quote(key.table)} VALIDATE CONSTRAINT {quote(key.name)};"]
    written = [s for p in migration.upgrade if isinstance(p, Ddl) for s in statements(p.sql)]
    position = next((i for i, s in enumerate(written) if creates(s, key)), None)
    if position is None:
        return None
    statement = written[position]
    if found is None or key.kind == "comment":
        return position, [statement]
    if key.kind == "function":  # as written, replacing the body in place
        return position, [re.sub(r"^CREATE\s+FUNCTION", "CREATE OR REPLACE FUNCTION", statement, flags=re.I)]
    drop = {
        "index": f"DROP INDEX public.{quote(key.name)};",
        "trigger": f"DROP TRIGGER IF EXISTS {quote(key.name)} ON public.{quote(key.table)};",
    }[key.kind]
    return position, [drop, statement]
