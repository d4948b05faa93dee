"""The application's own SQLAlchemy models against the deployed schema (`--app-models`).

SQLAlchemy reflects the database and Alembic's `compare_metadata` lists every difference;
this module only judges them, by what breaks the application at its first request:

- fails: a mapped table or column the database lacks; a type that differs (family, length,
  precision, time zone: shorter, the application's writes fail; longer, the database takes
  values the model rules out); a column the model requires that the database leaves nullable (reads
  bring NULLs the model rules out), or one the database requires that the model leaves
  nullable with no default on either side (the application's inserts fail); a server default
  the model relies on missing from a NOT NULL column; a NOT NULL column without a default
  the model does not map (inserts fail); the model's primary key or a unique key it declares
  (upserts: ON CONFLICT) without a unique key on the same columns in the database.
- noted, one line per kind with a count: comments, server defaults the models do not
  declare, index spellings, indexes the models declare that the database lacks (speed, not
  correctness), and whatever the database has beyond the models.

A failure whose fact the database already had before the deployment (the before-image shows
it), on a table no migration creates, is the application's: reported in its own line.
Imported only when `--app-models` is given: a run without it never loads SQLAlchemy.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import orm

from migrations import catalog
from migrations.catalog import Key
from migrations.dburl import UsageError

SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")
# A key an upsert can name: primary key, UNIQUE constraint or unique index, whole columns only
# (not DEFERRABLE, not partial, not an expression, not INVALID).
KEY = re.compile(r"^(?:PRIMARY KEY|UNIQUE(?: USING \w+)?) \(([^()]+)\)$")
COLUMN = re.compile(r"^(?P<type>.+?) (?P<null>not null|null)(?P<rest>.*)$")
Aspect = Callable[[catalog.Image], Hashable]


@dataclass
class Models:
    """The application's MetaData and the class that maps each table (for the messages)."""

    metadata: sa.MetaData
    classes: dict[str, str]

    def name(self, table: str) -> str:
        return self.classes.get(table, table)


def load(spec: str, app_path: str | None = None) -> Models:
    """Import PACKAGE.MODULE[:ATTR] (app_path first on sys.path): a declarative base, a
    MetaData, or without ATTR the one the module holds; UsageError in one line otherwise."""
    if not SPEC.match(spec):
        raise UsageError(f"--app-models {spec!r}: expected PACKAGE.MODULE[:ATTR]")
    if app_path is not None:
        folder = Path(app_path).resolve()
        if not folder.is_dir():
            raise UsageError(f"--app-path {app_path}: no such directory")
        sys.path.insert(0, str(folder))
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the application's own import-time error, in one line
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"--app-models {spec}: cannot import it ({type(exc).__name__}: {reason})") from None
    try:
        given = [attrgetter(attr)(module)] if attr else list(vars(module).values())
    except AttributeError:
        raise UsageError(f"--app-models {spec}: {module_name} has no {attr}") from None
    found = {id(m): m for m in map(metadata_of, given) if m is not None and (attr or m.tables)}
    if len(found) > 1:
        raise UsageError(
            f"--app-models {spec}: more than one MetaData in {module_name}: name one, MODULE:ATTR"
        )
    metadata = next(iter(found.values()), None)
    if metadata is None or not metadata.tables:
        raise UsageError(
            f"--app-models {spec}: holds no models (no declarative base or MetaData with tables;"
            " are the model modules imported?)"
        )
    classes: dict[str, str] = {}
    for obj in given:
        registry = getattr(obj, "registry", None)
        if isinstance(registry, orm.registry) and registry.metadata is metadata:
            for mapper in registry.mappers:
                if mapper.inherits is None and isinstance(mapper.local_table, sa.Table):
                    classes.setdefault(mapper.local_table.name, mapper.class_.__name__)
    return Models(metadata, classes)


def metadata_of(obj: Any) -> sa.MetaData | None:
    """A MetaData, or the one a declarative base (or registry) carries."""
    if isinstance(obj, sa.MetaData):
        return obj
    try:
        carried = getattr(obj, "metadata", None)
    except Exception:  # an application object whose attribute access fails is not a base
        return None
    return carried if isinstance(carried, sa.MetaData) else None


def differences(metadata: sa.MetaData, creator: Callable[[], Any]) -> list[tuple[Any, ...]]:
    """Alembic's differences, one tuple each, on a connection `creator` opens (the kit's own
    libpq path: psycopg2, whatever SQLAlchemy's default driver for postgresql:// is)."""
    engine = sa.create_engine("postgresql+psycopg2://", creator=creator, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            found = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return [d for diff in found for d in (diff if isinstance(diff, list) else [diff])]


def held_before(
    before: catalog.Image | None, created: set[str], found: catalog.Image, table: str, aspect: Aspect
) -> bool:
    """Whether a disagreement is the application's: the database's fact (`aspect` of a catalog)
    was the same in the before-image, on a table no migration creates (what a migration makes
    is its own, whatever it lacked before)."""
    return before is not None and table not in created and aspect(before) == aspect(found)


def keys(image: catalog.Image, table: str) -> set[frozenset[str]]:
    """The column sets of `table` an upsert can name (ON CONFLICT): primary and unique keys."""
    sets = set()
    for key, definition in image.items():
        match = KEY.match(definition or "") if key.table == table else None
        if match and key.kind in ("primary key", "constraint", "index"):
            sets.add(frozenset(c.strip().strip('"') for c in match[1].split(",")))
    return sets


def has_table(image: catalog.Image, table: str) -> bool:
    return Key("table", table) in image


def has_key(image: catalog.Image, table: str, columns: frozenset[str]) -> bool:
    return columns in keys(image, table)


def shape(image: catalog.Image, table: str, column: str) -> tuple[str, bool, bool] | None:
    """A column as the catalog has it: (type, nullable, has a default or is generated)."""
    match = COLUMN.match(image.get(Key("column", table, column)) or "")
    filled = bool(match and re.search(r"\b(default|generated)\b", match["rest"]))
    return (match["type"], match["null"] == "null", filled) if match else None


def spelled(column: sa.Column[Any]) -> str:
    """A model column as the message shows it: String(10) NOT NULL."""
    kind = column.type
    args = [str(getattr(kind, a)) for a in ("length", "precision", "scale") if getattr(kind, a, None)]
    args += ["timezone=True"] if getattr(kind, "timezone", False) else []
    text = type(kind).__name__ + (f"({', '.join(args)})" if args else "")
    return f"{text} {'NULL' if column.nullable else 'NOT NULL'}"


def shown(found: catalog.Image, table: str, column: str) -> str:
    """A database column as the message shows it: character varying(20) NULL."""
    have = shape(found, table, column)
    return f"{have[0]} {'NULL' if have[1] else 'NOT NULL'}" if have else "no such column"


def type_change(have: Any, want: Any) -> str:
    """What differs between the database's type and the model's, and what it breaks."""
    if have._type_affinity is not want._type_affinity:
        return "another type"
    for attr in ("length", "precision", "scale"):
        db, model = getattr(have, attr, None), getattr(want, attr, None)
        if db is not None and model is not None and db != model:
            return (
                f"{attr} shorter in the database: the application's writes fail"
                if db < model
                else f"{attr} longer in the database: it takes values the model rules out"
            )
    return "the type differs"


@dataclass
class Verdict:
    """What the comparison found: the deployment's failures, the application's own, notes."""

    failures: list[str] = field(default_factory=list)
    application: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, subject: str) -> None:
        self.notes.setdefault(kind, []).append(subject)

    def note_lines(self) -> list[str]:
        """One line per kind of harmless difference, with its count and the first few."""
        return [
            f"application models, noted: {kind}: {len(subjects)} ({', '.join(sorted(subjects)[:3])}"
            f"{', ...' if len(subjects) > 3 else ''})"
            for kind, subjects in self.notes.items()
        ]


def names(obj: Any) -> frozenset[str]:
    """The columns an index or constraint covers (none for what has no columns)."""
    columns = getattr(obj, "columns", None)
    return frozenset(columns.keys()) if columns is not None else frozenset()


class Judge:
    """Sorts Alembic's differences into failures (the deployment's or the application's) and notes."""

    def __init__(
        self, models: Models, found: catalog.Image, before: catalog.Image | None, created: Iterable[str]
    ) -> None:
        self.models, self.found, self.before, self.created = models, found, before, set(created)
        self.verdict = Verdict()
        self.columns: dict[str, list[str]] = {}  # table.column → what breaks in it
        self.spelled: set[tuple[str, frozenset[str]]] = set()  # keys the database spells otherwise
        self.paired: set[str] = set()  # the database's names of indexes the models spell otherwise

    def judge(self, diffs: list[tuple[Any, ...]]) -> Verdict:
        """The verdict on Alembic's differences (the model's side first: spellings pair up)."""
        self.primary_keys()
        extra = [d[1] for d in diffs if d[0] == "remove_index"]
        for op, *args in sorted(diffs, key=lambda d: not str(d[0]).startswith("add_")):
            if op in ("modify_type", "modify_nullable", "modify_default"):
                self.modified(op, *args[1:])
            elif op == "modify_comment":
                self.verdict.note("comments that differ", f"{args[1]}.{args[2]}")
            elif op in ("add_table_comment", "remove_table_comment"):
                self.verdict.note("comments that differ", args[0].name)
            elif op == "add_table":
                name = args[0].name
                self.breaks(
                    name,
                    f"model {self.models.name(name)}: table {name}; database: no such table",
                    partial(has_table, table=name),
                )
            elif op == "add_column":
                self.missing(args[1], args[2])
            elif op == "remove_column":
                self.unmapped(args[1], args[2].name)
            elif (op == "add_constraint" and isinstance(args[0], sa.UniqueConstraint)) or (
                op == "add_index" and args[0].unique
            ):
                self.unique(args[0])
            elif op == "add_index":
                self.index(args[0], extra)
            else:
                self.beyond(op, args[0])
        for where, why in self.columns.items():
            table, column = where.split(".", 1)
            model = self.models.metadata.tables[table].c[column]
            self.breaks(
                table,
                f"model {self.models.name(table)}.{column}: {spelled(model)};"
                f" database: {shown(self.found, table, column)} ({'; '.join(why)})",
                partial(shape, table=table, column=column),
            )
        return self.verdict

    def breaks(self, table: str, line: str, aspect: Aspect) -> None:
        """A difference that breaks the application: the deployment's, unless it held before."""
        held = held_before(self.before, self.created, self.found, table, aspect)
        (self.verdict.application if held else self.verdict.failures).append(line)

    def primary_keys(self) -> None:
        """Alembic does not compare primary keys: the model's must be a key of the database."""
        for table in self.models.metadata.tables.values():
            pk = frozenset(table.primary_key.columns.keys())
            if pk and Key("table", table.name) in self.found and pk not in keys(self.found, table.name):
                self.breaks(
                    table.name,
                    f"model {self.models.name(table.name)}: PRIMARY KEY ({', '.join(sorted(pk))});"
                    " database: no primary or unique key on those columns (the ORM's identity, upserts)",
                    partial(has_key, table=table.name, columns=pk),
                )

    def missing(self, table: str, column: sa.Column[Any]) -> None:
        self.breaks(
            table,
            f"model {self.models.name(table)}.{column.name}: {spelled(column)}; database: no such column",
            partial(shape, table=table, column=column.name),
        )

    def unmapped(self, table: str, column: str) -> None:
        """A column the models do not map: harmless, unless the database requires a value for it."""
        have = shape(self.found, table, column)
        if have is not None and not have[1] and not have[2]:
            self.breaks(
                table,
                f"database {table}.{column}: {shown(self.found, table, column)}, no default; model"
                f" {self.models.name(table)} does not map it: the application's inserts fail",
                partial(shape, table=table, column=column),
            )
        else:
            self.verdict.note("columns beyond the models", f"{table}.{column}")

    def modified(self, op: str, table: str, column: str, info: dict[str, Any], have: Any, want: Any) -> None:
        """A mapped column whose type, nullability or server default differs."""
        model = self.models.metadata.tables[table].c[column]
        db = shape(self.found, table, column)
        why = ""
        if op == "modify_type":
            why = type_change(have, want)
        elif op == "modify_nullable" and have and not want:
            why = "NULL allowed where the model requires a value: reads bring NULLs the model rules out"
        elif op == "modify_nullable" and not (model.default or model.server_default or (db and db[2])):
            why = "NOT NULL where the model allows NULL, with no default: inserts without it fail"
        elif op == "modify_nullable":
            self.verdict.note(
                "NOT NULL in the database where the model allows NULL, a default fills it",
                f"{table}.{column}",
            )
        elif want is not None and have is None and db and not db[1] and model.default is None:
            why = "no default in the database, which the model leaves the value to: inserts fail"
        else:
            self.verdict.note(
                "server defaults the models do not declare, or declare otherwise", f"{table}.{column}"
            )
        if why:
            self.columns.setdefault(f"{table}.{column}", []).append(why)

    def unique(self, key: sa.UniqueConstraint | sa.Index) -> None:
        """A unique key the models declare (an upsert's ON CONFLICT names it)."""
        table, columns = key.table.name, names(key)  # type: ignore[union-attr]
        if columns in keys(self.found, table):
            self.spelled.add((table, columns))
            self.verdict.note("unique keys the database spells otherwise", f"{table}.{key.name}")
            return
        self.breaks(
            table,
            f"model {self.models.name(table)}: UNIQUE ({', '.join(key.columns.keys())}) {key.name or ''};"
            " database: no unique key on those columns (the application's upserts fail)",
            partial(has_key, table=table, columns=columns),
        )

    def index(self, index: sa.Index, extra: list[sa.Index]) -> None:
        """An index the models declare: the same columns under another name or order is a spelling."""
        table = index.table.name  # type: ignore[union-attr]
        same = [
            i for i in extra if i.table is not None and i.table.name == table and names(i) == names(index)
        ]
        twin = next((i for i in same if f"{table}.{i.name}" not in self.paired), None)
        if twin is not None:
            self.paired.add(f"{table}.{twin.name}")
            self.verdict.note("index spellings", f"{table}.{index.name} as {twin.name}")
        else:
            self.verdict.note(
                "indexes the models declare, the database lacks (speed, not correctness)",
                f"{table}.{index.name}",
            )

    def beyond(self, op: str, obj: Any) -> None:
        """What the database has beyond the models (or an FK they define otherwise): noted."""
        table = getattr(getattr(obj, "table", None), "name", "")
        if table and table not in self.models.metadata.tables:
            return  # an index or key of a table beyond the models: counted with its table
        if op == "remove_table":
            self.verdict.note("tables beyond the models", obj.name)
        elif op in ("remove_index", "remove_constraint") and (
            f"{table}.{obj.name}" in self.paired or (table, names(obj)) in self.spelled
        ):
            return  # the other half of a spelling, noted with the model's side
        elif op == "remove_index":
            self.verdict.note("indexes beyond the models", f"{table}.{obj.name}")
        elif op == "remove_constraint":
            self.verdict.note("unique keys beyond the models", f"{table}.{obj.name}")
        elif op == "remove_fk":
            self.verdict.note("foreign keys beyond the models", f"{table}.{obj.name}")
        elif op == "add_fk":
            self.verdict.note(
                "foreign keys the models declare that the database lacks or defines otherwise",
                f"{table}({', '.join(obj.columns.keys())})",
            )
        else:
            self.verdict.note(f"other differences ({op})", str(getattr(obj, "name", obj)))


def judge(
    models: Models,
    creator: Callable[[], Any],
    found: catalog.Image,
    before: catalog.Image | None,
    created: Iterable[str],
) -> Verdict:
    """Compare the models with the database `creator` connects to; judge every difference."""
    return Judge(models, found, before, created).judge(differences(models.metadata, creator))
