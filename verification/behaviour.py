"""Judging by behaviour what the catalog's text cannot: a CHECK or a trigger function spelled
differently from what is expected (`migrations.meaning` says BEHAVIOUR).

A CHECK is evaluated as found and as expected on ranges of values of its columns (read-only:
no row is written): every single-character change of every digit run, letter and space up
to the column's width, every pair of digits at every pair of positions, the literals both
spellings name, numbers around zero and at the edges, and a sample of the table's own values.
The same verdict on every one of them is the same behaviour; the first value where they part
is the failure. A trigger function is judged by the behaviour probes its change's checklist
writes for it (`PROBED`, `verification.checklists`), which must be able to run for this role.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import psycopg2
from psycopg2 import sql

from migrations import catalog, meaning
from migrations.catalog import Key
from verification import checklists
from verification.db import Target

# A superuser may open a replica session; one where the function's triggers do not fire too.
MAY_REPLICATE = """
SELECT r.rolsuper AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                                  WHERE p.pronamespace = 'public'::regnamespace AND p.proname = :name
                                    AND t.tgenabled = 'A')
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""

ALPHABET = "0123456789aZ -._가"
DIGITS = "0123456789"
PAIR_BASES = "019"  # runs whose every two places take every pair of digits
WIDEST = 10  # characters changed one by one: beyond, only runs of the column's width
MAX_VALUES = 60_000  # per CHECK: tens of milliseconds on the server
TEXT_TYPE = re.compile(r"^(character varying|character|text|name|bpchar)(?:\((\d+)\))?$")
NUMBER_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
LITERAL = re.compile(r"'((?:[^']|'')*)'")
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def judge(target: Target, found: catalog.Image, key: Key, want: str, have: str) -> tuple[bool, str]:
    """Whether `have` behaves as `want` does, and what showed it."""
    if key.kind == "function":
        return function(target, key)
    if key.kind == "constraint":
        return check(target, found, key.table, want, have)
    return False, "no behaviour judge for this kind"


def deciders(key: Key) -> tuple[str, ...]:
    """The probes that decide a function left to them (none for other kinds)."""
    return checklists.probed().get(key.name, (None, ()))[1] if key.kind == "function" else ()


def function(target: Target, key: Key) -> tuple[bool, str]:
    """A trigger function: its probes run (and must pass), or the text is all there is."""
    found = checklists.probed().get(key.name)
    if not found:
        return False, "no behaviour probe pins this function down: its text is the yardstick"
    module, probes = found
    if not target.value(module.WRITES):
        return False, "the verifying role may not write: its behaviour probes cannot run"
    replica = key.name in getattr(module, "NEEDS_REPLICA", ())
    if replica and not target.value(MAY_REPLICATE, name=key.name.split("(")[0]):
        return False, "its probes need a replica session its trigger does not fire in (a superuser's)"
    return True, "the probes " + ", ".join(f"{checklists.NODE}::{p}" for p in probes) + " decide"


def check(target: Target, found: catalog.Image, table: str, want: str, have: str) -> tuple[bool, str]:
    """A CHECK as found vs as expected (`want` empty: a CHECK nothing declares, against the
    rows the table's other CHECKs and NOT NULLs accept anyway), on ranges of values of its
    columns."""
    got = meaning.check_parts(have)
    assert got
    wanted = meaning.check_parts(want)
    given = [] if wanted else anyway(found, table, have)
    expected = wanted[0] if wanted else " AND ".join(given) or "true"
    written = got[0] if wanted else " AND ".join([*given, got[0]])
    columns = {
        key.name: column_type(definition)
        for key, definition in found.items()
        if key.kind == "column" and key.table == table and mentions(expected + written, key.name)
    }
    if not columns:
        return False, "it names no column of the table"
    samples: dict[str, list[str | None]] = {}
    for name, type_name in columns.items():
        values = samples_of(type_name, literals(want + have), table_values(target, table, name))
        if values is None:
            return False, f"no range of values for {name} ({type_name})"
        samples[name] = values
    rows = combined(samples)
    try:  # one statement; where either errs on some value, each value in a subtransaction
        parted = first_parting(target, columns, rows, expected, written)
    except psycopg2.Error:
        parted = first_parting_one_by_one(target, columns, rows, expected, written)
    if parted is not None:
        row, verdict = parted
        why = " (an error is no check violation)" if verdict == "errs on" else ""
        return False, f"on {shown(columns, row)} it {verdict} what the expected CHECK does not{why}"
    return True, f"the same verdict on {len(rows):,} values"


def anyway(found: catalog.Image, table: str, added: str) -> list[str]:
    """What the rows of `table` meet whatever an added CHECK says: its other validated CHECKs
    on the same columns, and NOT NULL."""
    named = [k.name for k in found if k.kind == "column" and k.table == table and mentions(added, k.name)]
    given = [f"{quoted(c)} IS NOT NULL" for c in named if meaning.not_null(found, table, c)]
    for key, definition in found.items():
        parts = meaning.check_parts(definition) if key.kind == "constraint" and key.table == table else None
        if parts and definition != added and "NOT VALID" not in parts[1]:
            mentioned = [
                k.name
                for k in found
                if k.kind == "column" and k.table == table and mentions(parts[0], k.name)
            ]
            if set(mentioned) <= set(named):
                given.append(parts[0])
    return given


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_type(definition: str) -> str:
    """A column fact's type: what precedes ` null` / ` not null`."""
    return re.split(r" (?:not )?null(?: |$)", definition, maxsplit=1)[0]


def mentions(expression: str, column: str) -> bool:
    return (
        re.search(rf'(?<![\w."]){re.escape(column)}(?![\w"])|"{re.escape(column)}"', expression) is not None
    )


def literals(text: str) -> list[str]:
    """The string and number literals of the definitions."""
    return [m.replace("''", "'") for m in LITERAL.findall(text)] + NUMBER.findall(text)


def table_values(target: Target, table: str, column: str) -> list[str]:
    """A sample of the column's own values (the first rows in storage order)."""
    query = sql.SQL("SELECT DISTINCT {c}::text FROM (SELECT {c} FROM {t} LIMIT 1000) s LIMIT 100").format(
        c=sql.Identifier(column), t=sql.Identifier("public", table)
    )
    return [row[0] for row in target.rows(query) if row[0] is not None]


def samples_of(type_name: str, seeds: list[str], own: list[str]) -> list[str | None] | None:
    """Values of a type, as text: None where no range can be made."""
    text = TEXT_TYPE.match(type_name)
    if text:
        width = int(text[2]) if text[2] else 8
        return [None, *sorted(strings(width, [*seeds, *own]))]
    if type_name in NUMBER_TYPES or type_name.startswith("numeric("):
        return [None, *numbers(type_name, [*seeds, *own])]
    if type_name == "boolean":
        return [None, "true", "false"]
    return None


def strings(width: int, seeds: Iterable[str]) -> set[str]:
    """Runs of one character, the seeds that fit, each changed in one place (any character)
    or in two (digits), shortened and lengthened by one; up to ten characters, and runs of
    the full width beyond."""
    longest = min(width, WIDEST)
    bases = {c * n for c in ALPHABET for n in range(1, longest + 1)} | {s for s in seeds if len(s) <= longest}
    found = {""} | bases | {c * n for c in ALPHABET for n in (width - 1, width)}
    for base in bases:
        for at in range(len(base) + 1):
            found.update(base[:at] + c + base[at + 1 :] for c in ALPHABET if at < len(base))
            if len(base) < longest:
                found.update(base[:at] + c + base[at:] for c in ALPHABET)
            found.add(base[:at] + base[at + 1 :])
    for digit in PAIR_BASES:
        base = digit * longest
        for i, j in itertools.combinations(range(longest), 2):
            for a, b in itertools.product(DIGITS, repeat=2):
                found.add(base[:i] + a + base[i + 1 : j] + b + base[j + 1 :])
    return found


def numbers(type_name: str, seeds: Iterable[str]) -> list[str]:
    """Integers around zero, the edges of the type, the seeds and their neighbours; halves
    where the type has fractions."""
    found = {str(n) for n in range(-1000, 1001)} | {"32767", "-32768", "2147483647", "-2147483648"}
    for seed in seeds:
        if NUMBER.fullmatch(seed):
            value = float(seed)
            found.update(str(v) for v in (value - 1, value, value + 1))
    if type_name not in {"smallint", "integer", "bigint"}:
        found.update(f"{n / 2}" for n in range(-40, 41))
    integral = type_name in {"smallint", "integer", "bigint"}
    return sorted(v for v in found if not integral or float(v).is_integer())


def combined(samples: dict[str, list[str | None]]) -> list[tuple[str | None, ...]]:
    """Rows of every column's values: all of them for one column, a bounded grid for more."""
    per = max(2, int(MAX_VALUES ** (1 / len(samples))))
    thinned = [values[:: max(1, len(values) // per)] for values in samples.values()]
    return list(itertools.islice(itertools.product(*thinned), MAX_VALUES))


Row = tuple[str | None, ...]


def typed_columns(columns: dict[str, str], values: str) -> sql.Composable:
    """`CAST(v[1] AS type) AS name, ...` over the text[] `values`."""
    return sql.SQL(", ").join(
        sql.SQL("CAST({}[{}] AS {}) AS {}").format(
            sql.SQL(values), sql.Literal(i + 1), sql.SQL(type_name), sql.Identifier(name)
        )
        for i, (name, type_name) in enumerate(columns.items())
    )


def first_parting(
    target: Target, columns: dict[str, str], rows: list[Row], expected: str, written: str
) -> tuple[Row, str] | None:
    """One statement: the first row the two expressions judge differently, and what
    `written` does with it (accepts: true or NULL, as a CHECK does)."""
    query = sql.SQL(
        "SELECT azak_row, ({written}) IS NOT FALSE FROM (SELECT azak_row, {typed}"
        " FROM unnest(CAST({rows} AS text[])) WITH ORDINALITY AS r(azak_text, azak_row),"
        " LATERAL (SELECT CAST(azak_text AS text[]) AS v) a) s"
        " WHERE (({expected}) IS NOT FALSE) IS DISTINCT FROM (({written}) IS NOT FALSE) LIMIT 1"
    ).format(
        typed=typed_columns(columns, "v"),
        rows=sql.Placeholder("rows"),
        expected=sql.SQL(expected.replace("%", "%%")),
        written=sql.SQL(written.replace("%", "%%")),
    )
    found = fetch(target, query, {"rows": [array_text(row) for row in rows]})
    return (rows[found[0][0] - 1], "accepts" if found[0][1] else "rejects") if found else None


ONE_BY_ONE = sql.SQL("""
DECLARE r record; a text; b text; parted text := '';
BEGIN
    FOR r IN SELECT t.n, t.v FROM unnest(CAST({rows} AS text[])) WITH ORDINALITY AS t(v, n) LOOP
        BEGIN EXECUTE {expected} INTO a USING r.v::text[]; EXCEPTION WHEN OTHERS THEN a := 'error'; END;
        BEGIN EXECUTE {written} INTO b USING r.v::text[]; EXCEPTION WHEN OTHERS THEN b := 'error'; END;
        IF a IS DISTINCT FROM b THEN parted := r.n || ':' || b; EXIT; END IF;
    END LOOP;
    PERFORM pg_catalog.set_config('azak.parted', parted, true);
END""")


VERDICTS = {"true": "accepts", "false": "rejects", "error": "errs on"}


def first_parting_one_by_one(
    target: Target, columns: dict[str, str], rows: list[Row], expected: str, written: str
) -> tuple[Row, str] | None:
    """The same, each value in its own subtransaction: erring is a verdict of its own (the
    row is refused, but not as a check violation: the application sees another error). A
    read-only DO block; its verdict comes back through a transaction-local setting."""
    conn = target.conn

    def verdict(expression: str) -> sql.Composable:
        select = sql.SQL("SELECT (({}) IS NOT FALSE)::text FROM (SELECT {}) s").format(
            sql.SQL(expression), typed_columns(columns, "$1")
        )
        return sql.Literal(select.as_string(conn))

    body = ONE_BY_ONE.format(
        rows=sql.Literal([array_text(row) for row in rows]),
        expected=verdict(expected),
        written=verdict(written),
    )
    query = sql.SQL("DO {}; SELECT pg_catalog.current_setting('azak.parted')").format(
        sql.Literal(body.as_string(conn))
    )
    (parted,) = fetch(target, query, None)[0]
    if not parted:
        return None
    number, verdict_of_written = parted.split(":")
    return rows[int(number) - 1], VERDICTS[verdict_of_written]


def fetch(target: Target, query: sql.Composable, params: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    """Not Target.rows: the expressions' own text must not be read as `:name` placeholders."""
    conn = target.conn
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.rollback()


def array_text(row: tuple[str | None, ...]) -> str:
    """A row of values as a text[] literal (NULL for None)."""
    quoted = (
        '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' if v is not None else "NULL" for v in row
    )
    return "{" + ",".join(quoted) + "}"


def shown(columns: dict[str, str], row: tuple[str | None, ...]) -> str:
    return ", ".join(
        f"{name} = {'NULL' if v is None else repr(v)}" for name, v in zip(columns, row, strict=True)
    )
