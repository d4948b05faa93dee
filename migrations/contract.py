"""What a migration declares it does to the catalog, in the words of `migrations.catalog`.

A contract is written by hand, independently of the migration's SQL: the tests prove that
the SQL does what the contract says (a bug in a migration never becomes its own proof).
The same declaration tells the runner what a migration owns (drift, adoption), backup what
to clear before loading a pre-deployment dump, and verification what to expect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from psycopg2 import sql

from migrations import application
from migrations.catalog import ANY, Key

__all__ = ["ANY", "Contract", "Key", "Rewrite", "fold", "function", "owned_like", "serial", "table"]


# An expected image: None where an object must not exist.
Expected = dict[Key, str | None]
# A fact's definition, or how to derive it from the image before the migration (a saved copy
# of what the migration changes): ANY where that image does not hold what it needs.
Value = str | Callable[[Mapping[Key, str | None]], str]


@dataclass(frozen=True)
class Rewrite:
    """Rows whose `column` a migration rewrites, keyed by `key`: the before-image keeps their
    values, and a rollback must give every one of them back."""

    table: str
    key: str
    column: str
    # the value the migration writes (as text): rows already holding it are not changed; None
    # when it writes a value of its own to each row (every row then counts)
    writes: str | None = None

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Contract:
    """Facts a migration adds, changes (new definition of an existing fact) and removes, and
    the column values it rewrites."""

    adds: Mapping[Key, Value] = field(default_factory=dict)
    changes: Mapping[Key, str] = field(default_factory=dict)
    removes: tuple[Key, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    # facts whose text is data a rollback reads (a saved default in a comment): judged to the
    # letter, never as documentation
    data: tuple[Key, ...] = ()

    def apply(self, image: Mapping[Key, str | None]) -> Expected:
        """The image after this migration (None: the object must not exist)."""
        after: Expected = dict(image)
        after.update(dict.fromkeys(self.removes))
        after.update(self.changes)
        after.update({k: v(image) if callable(v) else v for k, v in self.adds.items()})
        return after

    @property
    def keys(self) -> set[Key]:
        """Every fact this migration touches."""
        return {*self.adds, *self.changes, *self.removes}

    def created_tables(self) -> list[str]:
        """The tables it creates."""
        return [key.table for key in self.adds if key.kind == "table"]


def fold(contracts: Iterable[Contract], start: Mapping[Key, str | None] | None = None) -> Expected:
    """The expected image after applying `contracts` in order to `start` (default: nothing)."""
    image: Expected = dict(start or {})
    for contract in contracts:
        image = contract.apply(image)
    return image


# -- helpers to write contracts as a person reads a table definition ---------------------------

# Who the application is: the owner of its table (`changes.APPLICATION_TABLE`). What a
# migration creates is owned like it, so that the application's ALTER, VACUUM and TRUNCATE
# work on the new objects as on its own.
OWNER_ONLY = "owner: all"  # a new object's privileges: its owner's, and nobody else's
# How the runner (and the plan's script) creates them so: an upgrade's DDL runs as the owner of
# the application's table where the deploying role may act as it (a member, or a superuser) and that owner may
# create in public; the ledger's rows are then written as the deploying role again.
AS_APPLICATION = f"""
SELECT pg_catalog.set_config('role', o.rolname, true)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
WHERE c.oid = {application.REGCLASS} AND o.rolname <> current_user
  AND pg_catalog.pg_has_role(current_user, o.oid, 'MEMBER')
  AND pg_catalog.has_schema_privilege(o.oid, 'public', 'CREATE');
"""  # noqa: S608 (the application's table is configuration, not input)
AS_DEPLOYER = "SELECT pg_catalog.set_config('role', 'none', true);"


def owned_like(table_name: str = application.TABLE) -> Callable[[Mapping[Key, str | None]], str]:
    """An owner fact's value: the owner `table_name` had in the image before the migration
    (ANY where that image does not say: an image older than owners, or none)."""
    return lambda before: before.get(Key("owner", table_name)) or ANY


def table(
    name: str,
    *,
    columns: Mapping[str, str],
    comment: Value | None = None,
    column_comments: Mapping[str, str] | None = None,
    primary_key: str | None = None,
    constraints: Mapping[str, str] | None = None,
    indexes: Mapping[str, str] | None = None,
    triggers: Mapping[str, str] | None = None,
    persistence: str = "logged",
    owner: Value | None = None,
) -> dict[Key, Value]:
    """Every fact of a new table (owned like the application's table unless `owner` says otherwise)."""
    facts: dict[Key, Value] = {
        Key("table", name): persistence,
        Key("owner", name): owner or owned_like(),
        Key("grant", name): OWNER_ONLY,
    }
    facts.update({Key("column", name, col): definition for col, definition in columns.items()})
    if comment is not None:
        facts[Key("comment", name)] = comment
    facts.update({Key("comment", name, col): text for col, text in (column_comments or {}).items()})
    if primary_key is not None:
        facts[Key("primary key", name)] = primary_key
    facts.update({Key("constraint", name, n): d for n, d in (constraints or {}).items()})
    facts.update({Key("index", name, n): d for n, d in (indexes or {}).items()})
    facts.update({Key("trigger", name, n): d for n, d in (triggers or {}).items()})
    return facts


def serial(table_name: str, column: str = "id") -> tuple[str, dict[Key, Value]]:
    """An integer serial column's definition, and the facts of its sequence (owned like its
    table, as PostgreSQL requires of a sequence owned by a column)."""
    sequence = f"{table_name}_{column}_seq"
    return (
        f"integer not null default nextval('public.{sequence}'::regclass)",
        {
            Key("sequence", "", sequence): f"integer, owned by {table_name}.{column}",
            Key("owner", sequence): owned_like(),
            Key("grant", sequence): OWNER_ONLY,
        },
    )


def function(signature: str, returns: str, language: str, body: str) -> dict[Key, Value]:
    """A function of `public`: its signature `name(args)`, result, language and body; owned
    like the application's table."""
    text = " ".join(body.split())
    return {
        Key("function", "", signature): f"returns {returns} language {language}: {text}",
        Key("owner", "", signature): owned_like(),
    }


def teardown(contracts: Iterable[Contract]) -> sql.Composed:
    """SQL that drops every object these contracts create that would outlive the tables they
    hang on (tables, functions with their triggers, sequences, views, types): idempotent, and
    without error on a database in any state. Names are composed, never formatted in."""
    verbs = {
        "table": "TABLE",
        "view": "VIEW",
        "materialized view": "MATERIALIZED VIEW",
        "function": "FUNCTION",
        "sequence": "SEQUENCE",
        "type": "TYPE",
    }
    drops: dict[tuple[str, str, str], sql.Composed] = {}
    for contract in contracts:
        for key in contract.adds:
            if key.kind in verbs:
                base, paren, args = (key.table or key.name).partition("(")
                drops[(key.kind, base, args)] = sql.SQL("DROP {} IF EXISTS {}{} CASCADE;\n").format(
                    sql.SQL(verbs[key.kind]),
                    sql.Identifier("public", base),
                    sql.SQL(paren + args),  # a function's argument types, as the contract declares them
                )
    return sql.Composed(list(drops.values()))
