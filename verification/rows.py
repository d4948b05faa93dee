"""What the catalog claims about rows, as bounded queries: each validated CHECK and foreign key,
each NOT NULL column, each declared width and each unique key, tried on the first `limit` rows
of a table (all of them when it has fewer) — one statement for all.

The catalog can be edited without touching the rows (`UPDATE pg_constraint SET convalidated =
true`, `UPDATE pg_attribute SET attnotnull = true`, `UPDATE pg_index SET indisunique = true`):
then the catalog's word is the only thing that changed, and only the rows can say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg2 import sql

from migrations import catalog, meaning
from migrations.catalog import Key
from verification.behaviour import mentions

FOREIGN_KEY = re.compile(r"^FOREIGN KEY \(([^)]+)\) REFERENCES public\.(\w+|\"[^\"]+\")\(([^)]+)\)")
UNIQUE_COLUMNS = re.compile(r"^(?:PRIMARY KEY|UNIQUE(?: USING btree)?) \(([\w, \"]+)\)")
WIDTH = re.compile(r"^(character varying|character)\((\d+)\)")
DISABLED = "(ENFORCEMENT TRIGGERS DISABLED"


@dataclass(frozen=True)
class Claim:
    """One thing the catalog says of a table's rows, and the condition a row breaks it by."""

    table: str
    said: str  # e.g. "ck_x is validated", "name is NOT NULL"
    breaks: sql.Composable  # a boolean over the scanned rows' columns (FROM rows `r`)
    grouped: tuple[str, ...] = ()  # a unique key: the columns whose values must not repeat
    columns: tuple[str, ...] = ()  # the columns it reads


def names(columns: str) -> list[str]:
    return [c.strip().strip('"') for c in columns.split(",")]


def claims(found: catalog.Image, tables: Iterable[str]) -> list[Claim]:
    """Every claim the catalog makes about the rows of `tables`."""
    wanted = set(tables)
    out: list[Claim] = []
    for key, definition in sorted(found.items(), key=lambda kv: catalog.sort_key(kv[0])):
        if key.table not in wanted:
            continue
        if key.kind == "column":
            out += column_claims(key, definition)
        elif key.kind in ("constraint", "primary key", "index"):
            named = [k.name for k in found if k.kind == "column" and k.table == key.table]
            out += key_claims(key, definition, named)
    return out


def columns_of(table_claims: list[Claim]) -> list[str]:
    """The columns the claims read, once each."""
    return list(dict.fromkeys(c for claim in table_claims for c in (*claim.columns, *claim.grouped)))


def column_claims(key: Key, definition: str) -> list[Claim]:
    column = sql.Identifier(key.name)
    out = []
    if meaning.not_null({key: definition}, key.table, key.name):
        out.append(
            Claim(
                key.table,
                f"{key.name} is NOT NULL",
                sql.SQL("num_nulls(r.{}) > 0").format(column),
                columns=(key.name,),
            )
        )
    width = WIDTH.match(definition)
    if width:
        out.append(
            Claim(
                key.table,
                f"{key.name} holds at most {width[2]} characters",
                sql.SQL("char_length(r.{}::text) > {}").format(column, sql.Literal(int(width[2]))),
                columns=(key.name,),
            )
        )
    return out


def key_claims(key: Key, definition: str, table_columns: list[str]) -> list[Claim]:
    if "NOT VALID" in definition or DISABLED in definition or " WHERE " in definition:
        return []  # not claimed for every row, or not enforced (the catalog checks say so)
    name = key.name or "the primary key"
    check = meaning.check_parts(definition)
    if key.kind == "constraint" and check:
        read = tuple(c for c in table_columns if mentions(check[0], c))
        return [
            Claim(
                key.table,
                f"{name} is validated",
                sql.SQL("({}) IS FALSE").format(sql.SQL(check[0])),
                columns=read,
            )
        ]
    foreign = FOREIGN_KEY.match(definition)
    if foreign:
        own, parent, theirs = names(foreign[1]), foreign[2].strip('"'), names(foreign[3])
        present = sql.SQL(" AND ").join(sql.SQL("r.{} IS NOT NULL").format(sql.Identifier(c)) for c in own)
        match = sql.SQL(" AND ").join(
            sql.SQL("p.{} = r.{}").format(sql.Identifier(t), sql.Identifier(c))
            for c, t in zip(own, theirs, strict=True)
        )
        return [
            Claim(
                key.table,
                f"{name} is validated: every {', '.join(own)} is in {parent}",
                sql.SQL("{present} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})").format(
                    present=present, parent=sql.Identifier("public", parent), match=match
                ),
                columns=tuple(own),
            )
        ]
    unique = UNIQUE_COLUMNS.match(definition)
    columns = tuple(names(unique[1])) if unique else ()
    if (
        columns
        and all(re.fullmatch(r"\w+", c) for c in columns)
        and definition.startswith(("UNIQUE", "PRIMARY"))
    ):
        return [Claim(key.table, f"{name} is unique ({', '.join(columns)})", sql.SQL("false"), columns)]
    return []


def statement(table: str, table_claims: list[Claim], limit: int) -> sql.Composed:
    """One row: the table, the rows scanned, and per claim the rows that break it, over the
    first `limit` rows (of the columns the claims read). Statements of several tables join
    with UNION ALL."""
    cut = sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL("")
    counts: list[sql.Composable] = []
    for claim in table_claims:
        if claim.grouped:
            keys = sql.SQL(", ").join(sql.Identifier(c) for c in claim.grouped)
            present = sql.SQL(" AND ").join(
                sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in claim.grouped
            )
            counts.append(
                sql.SQL(
                    "(SELECT count(*) FROM (SELECT 1 FROM rows WHERE {present} GROUP BY {keys}"
                    " HAVING count(*) > 1) d)"
                ).format(present=present, keys=keys)
            )
        else:
            counts.append(sql.SQL("count(*) FILTER (WHERE {})").format(claim.breaks))
    read = columns_of(table_claims)
    return sql.SQL(
        "SELECT * FROM (WITH rows AS MATERIALIZED (SELECT {read} FROM {table}{cut})"
        " SELECT {name}, count(*), ARRAY[{counts}]::bigint[] FROM rows r) {alias}"
    ).format(
        read=sql.SQL(", ").join(sql.Identifier(c) for c in read) if read else sql.SQL("1"),
        table=sql.Identifier("public", table),
        cut=cut,
        name=sql.Literal(table),
        counts=sql.SQL(", ").join(counts),
        alias=sql.Identifier(f"claims_{table}"),
    )
