"""What the database says it has: SQLAlchemy's inspector, and pg_catalog where it is silent.

Tables, columns, keys, indexes (with DESC) and comments come from `sqlalchemy.inspect`;
the raw queries below are for what no library reports, each saying why. A missing table
reads as empty, so a check fails with its own message instead of a reflection error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Inspector

from verification.db import Target


class Catalog:
    """Reflection of the target database, cached for the run (verification changes nothing)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @cached_property
    def inspector(self) -> Inspector:
        return self.target.inspector()

    def _ask(self, method: str, table: str) -> Any:
        """One inspector call, its transaction ended: no lock or snapshot kept between checks."""
        try:
            return getattr(self.inspector, method)(table)
        finally:
            self.target.conn.rollback()

    def has_table(self, table: str) -> bool:
        return bool(self._ask("has_table", table))

    def _reflect(self, method: str, table: str, empty: Any) -> Any:
        return self._ask(method, table) if self.has_table(table) else empty

    def columns(self, table: str) -> dict[str, dict[str, Any]]:
        """Columns by name: type, nullable, default, comment."""
        return {c["name"]: c for c in self._reflect("get_columns", table, [])}

    def primary_key(self, table: str) -> tuple[str, ...]:
        return tuple(self._reflect("get_pk_constraint", table, {}).get("constrained_columns", ()))

    def indexes(self, table: str) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self._reflect("get_indexes", table, [])}

    def foreign_keys(self, table: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self._reflect("get_foreign_keys", table, [])}

    def unique_constraints(self, table: str) -> dict[str, tuple[str, ...]]:
        return {
            u["name"]: tuple(u["column_names"]) for u in self._reflect("get_unique_constraints", table, [])
        }

    def check_constraints(self, table: str) -> dict[str, str]:
        return {c["name"]: c["sqltext"] for c in self._reflect("get_check_constraints", table, [])}

    def named(self, kind: str, table: str, name: str) -> dict[str, Any]:
        """One column / index / foreign_key of a table, or a failure listing what it has."""
        found = getattr(self, {"column": "columns", "index": "indexes", "foreign key": "foreign_keys"}[kind])(
            table
        )
        assert name in found, f"{kind} {name} on {table} should exist; {table} has {sorted(found)}"
        return found[name]

    def table_comment(self, table: str) -> str | None:
        return self._reflect("get_table_comment", table, {}).get("text")

    def validated(self, table: str, name: str) -> bool | None:
        return constraint_validated(self.target, table, name)

    def check_columns(self, table: str, name: str) -> tuple[str, ...]:
        return check_columns(self.target, table, name)

    def trigger(self, table: str, name: str) -> FoundTrigger | None:
        return trigger(self.target, table, name)

    def function_exists(self, name: str) -> bool:
        return function_exists(self.target, name)


@dataclass(frozen=True)
class FoundTrigger:
    """A trigger as pg_trigger has it."""

    timing: str
    events: tuple[str, ...]
    update_of: tuple[str, ...]
    row_level: bool
    function: str
    enabled: bool


def constraint_validated(target: Target, table: str, name: str) -> bool | None:
    """pg_constraint.convalidated (the inspector does not report NOT VALID); None if absent."""
    rows = target.rows(
        "SELECT convalidated FROM pg_constraint WHERE conname = :n AND conrelid = to_regclass(:t)",
        n=name,
        t=f"public.{table}",
    )
    return rows[0][0] if rows else None


def check_columns(target: Target, table: str, name: str) -> tuple[str, ...]:
    """The columns a CHECK constraint reads (the inspector gives only its text)."""
    rows = target.rows(
        "SELECT a.attname FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
        " WHERE c.conname = :n AND c.conrelid = to_regclass(:t) ORDER BY a.attnum",
        n=name,
        t=f"public.{table}",
    )
    return tuple(r[0] for r in rows)


def trigger(target: Target, table: str, name: str) -> FoundTrigger | None:
    """A trigger's timing, events, level and function (the inspector knows no triggers)."""
    rows = target.rows(
        """
        SELECT t.tgtype, t.tgenabled, p.proname,
               ARRAY(SELECT a.attname FROM pg_attribute a
                     WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr) ORDER BY a.attnum)
        FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgname = :n AND t.tgrelid = to_regclass(:t) AND NOT t.tgisinternal
        """,
        n=name,
        t=f"public.{table}",
    )
    if not rows:
        return None
    tgtype, enabled, function, update_of = rows[0]
    # tgtype bits (pg_trigger.h): 1 ROW, 2 BEFORE, 4 INSERT, 8 DELETE, 16 UPDATE, 32 TRUNCATE
    events = tuple(
        e for bit, e in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE")) if tgtype & bit
    )
    timing = "BEFORE" if tgtype & 2 else ("INSTEAD OF" if tgtype & 64 else "AFTER")
    return FoundTrigger(timing, events, tuple(update_of), bool(tgtype & 1), function, enabled != "D")


def function_exists(target: Target, name: str) -> bool:
    """Whether a function of that name exists in public."""
    return bool(
        target.value(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public' AND p.proname = :n",
            n=name,
        )
    )
