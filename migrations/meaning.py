"""What a difference between a catalog fact and what is expected of it does.

A difference **fails** when it changes what the application can do (read, write, which rows
are accepted, what a cascade or a trigger does, who may do it), what a rollback can restore,
or what the next deployment will meet. Otherwise it is **noted**: documentation (comments),
physical storage (index storage parameters), the application's own tuning (a plain index), a
trigger that never fires (disabled, and not one a migration makes), settings that only shape
how values are shown or plans made, and forms PostgreSQL treats as the same: MATCH FULL on NOT
NULL columns, ENABLE ALWAYS where enabled is due (more sessions, never fewer), a function
pinned to `search_path = pg_catalog, public`, a body that differs only in case, comments or
`:=` for `=`.

Where the text of a CHECK or of a function body differs otherwise, the catalog cannot tell:
the verdict is BEHAVIOUR, and verification judges it on values (verification/behaviour.py);
the runner, which cannot, treats it as drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from migrations import catalog
from migrations.catalog import ANY, Key

SAME, NOTED, BEHAVIOUR, FAILS = "same", "noted", "behaviour", "fails"

# Settings that shape how values are shown, how plans are made or what is logged: never what
# runs (pg_settings' categories). Everything else fails: it decides whether and how the
# application's statements run (read-only, timeouts, replication role, row security, literal
# syntax), and a setting the server does not know (an extension's, the kit's own azak.*)
# cannot be shown harmless.
HARMLESS_CATEGORIES = (
    "Client Connection Defaults / Locale and Formatting",
    "Reporting and Logging",
    "Resource Usage",
    "Query Tuning",
    "Statistics",
)
SETTING_NOTES = {
    # name resolution has its own check: test_sessions_find_the_deployments_tables_in_public
    "search_path": "name resolution is judged by the check that sessions find the tables in public",
    "default_transaction_isolation": "an isolation level changes when concurrent transactions"
    " conflict, not which rows are accepted",
}
HARMFUL_SETTINGS = {"client_encoding"}  # text the server cannot convert fails to reach the application
# Statement-behaviour settings that shape messages, maintenance, storage or representation
# only: whether and what a statement does stays the same.
QUIET_SETTINGS = {
    "client_min_messages",
    "check_function_bodies",
    "gin_pending_list_limit",
    "default_toast_compression",
    "default_transaction_deferrable",
    "default_tablespace",
    "temp_tablespaces",
    "bytea_output",
    "xmlbinary",
    "xmloption",
}

STORAGE = re.compile(r" WITH \((?:[^()']|'(?:[^']|'')*')*\)")
FK_COLUMNS = re.compile(r"^FOREIGN KEY \(([^)]*)\)")
HARDENED_PATHS = (["pg_catalog", "public"], ["public"])
SEARCH_PATH = re.compile(r"(?:^|, )search_path=(.*?)(?=, [\w.]+=|$)")


@dataclass(frozen=True)
class Weight:
    """A difference's verdict and, unless it fails, why."""

    verdict: str
    why: str = ""


@dataclass(frozen=True)
class Context:
    """What a verdict may depend on besides the two definitions."""

    found: Mapping[Key, str] = field(default_factory=dict)  # the whole catalog (NOT NULL columns)
    data: frozenset[Key] = frozenset()  # facts holding data a rollback reads: judged to the letter
    categories: Mapping[str, str] = field(default_factory=dict)  # setting (lower case) → category
    roles: frozenset[str] | None = None  # who acted as the application at the yardstick (`roles_of`)


def roles_of(facts: Mapping[Key, str | None]) -> frozenset[str]:
    """The roles that owned, were granted or had settings among these facts."""
    names: set[str] = set()
    for key, value in facts.items():
        if value is None:
            continue
        if key.kind == "owner":
            names.add(value)
        elif key.kind == "grant":
            names |= set(privileges(value)) - {"owner", "PUBLIC"}
        elif key.kind == "setting" and key.table.startswith("role "):
            names.add(role_named(key.table))
    return frozenset(names)


def newcomer(role: str, context: Context) -> bool:
    """A role granted privileges since the yardstick, which had none then (a member of the
    application's role is no newcomer: it acts as the application)."""
    if context.roles is None or role in context.roles:
        return False
    granted = {k: v for k, v in context.found.items() if k.kind == "grant"}
    return role in roles_of(granted)


def reader(role: str, context: Context) -> bool:
    """A role granted SELECT on the application's tables and nothing more, owning none of them."""
    held: set[str] = set()
    for key, value in context.found.items():
        if key.kind == "owner" and value == role:
            return False
        if key.kind == "grant" and value:
            held |= privileges(value).get(role, set())
    return held == {"SELECT"}


def role_named(target: str) -> str:
    """The role a setting's target names ('role x', 'role "X y" in the database'), unquoted."""
    name = target.removeprefix("role ").removesuffix(" in the database")
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def weigh(key: Key, want: str | None, have: str | None, context: Context, declared: bool = True) -> Weight:
    """The verdict on `have` where `want` is expected (None: must not exist). `declared` False:
    nothing declares the fact at all (an extra object on a judged table)."""
    if want == have or (want == ANY and have is not None):
        return Weight(SAME)
    if key.kind == "comment" and key not in context.data:
        return Weight(NOTED, "a comment is documentation: nothing the application does changes")
    if key.kind == "setting":
        return setting(key, context)
    if not declared and have is not None:
        return extra(key, have, context)
    if want is None or have is None:
        return Weight(FAILS)
    judges = {
        "index": index,
        "constraint": constraint,
        "trigger": trigger,
        "event trigger": trigger,
        "function": function,
        "grant": grants,
        "column": column,
    }
    return judges[key.kind](key, want, have, context) if key.kind in judges else Weight(FAILS)


def differences(expected: Mapping[Key, str | None], found: Mapping[Key, str], context: Context) -> list[str]:
    """catalog.differences, less what is only noted: the differences that matter, or that
    only behaviour could clear (the runner cannot judge behaviour)."""
    return [
        catalog.difference(key, expected[key], found.get(key))
        for key in sorted(expected, key=catalog.sort_key)
        if weigh(key, expected[key], found.get(key), context).verdict in (FAILS, BEHAVIOUR)
    ]


def extra(key: Key, have: str, context: Context) -> Weight:
    """An object no migration declares, on a table the deployment answers for."""
    if key.kind == "index" and plain_index(have):
        return Weight(NOTED, "a plain index (tuning): the same rows are accepted")
    if key.kind in ("trigger", "rule", "event trigger") and have.endswith(" (DISABLED)"):
        return Weight(NOTED, f"a disabled {key.kind} never fires")
    if key.kind == "policy" and "row security" not in context.found.get(Key("table", key.table), ""):
        return Weight(NOTED, "row security is off on the table: the policy applies to no one")
    if key.kind == "grant":
        return Weight(NOTED, "privileges given: whoever could before still can")
    if key.kind == "constraint" and check_parts(have) and "NOT VALID" not in have:
        return Weight(BEHAVIOUR, "a CHECK nothing declares, against what the table accepts anyway")
    return Weight(FAILS)


def plain_index(definition: str) -> bool:
    """Not unique, valid and maintained, of columns or expressions that cannot raise an error:
    it refuses no row a table without it accepts."""
    return (
        not definition.startswith("UNIQUE")
        and not re.search(r" \((INVALID|NOT READY[^)]*)\)$", definition)
        and not can_raise(definition)
    )


# Calls an index expression or predicate may make without ever raising an error on a value
# its column holds; a cast to text likewise. Anything else (a division, another cast, another
# function) might refuse a row the table accepts: the index is judged as a constraint would be.
TOTAL_CALLS = {
    "lower", "upper", "btrim", "ltrim", "rtrim", "coalesce", "md5", "length", "left", "right", "date_trunc",
    "date_part", "substr", "substring", "to_tsvector", "timezone",
}  # fmt: skip
WIDENING_CASTS = {
    "text",
    "character varying",
    "varchar",
    "date",
    "bigint",
    "numeric",
    "double precision",
    "regconfig",
}
CALL = re.compile(r'((?:"(?:[^"]|"")+"|[a-z_]\w*)(?:\.(?:"(?:[^"]|"")+"|[a-z_]\w*))?)\(')


def can_raise(definition: str) -> bool:
    """Whether an index's expressions or predicate could raise an error on some row: arithmetic
    (overflow, division), a cast but to text, a date or a bigint, a call of anything but a few of
    pg_catalog's total functions (a quoted or schema-qualified name is another function)."""
    body = re.sub(r"'(?:[^']|'')*'", "''", definition.partition("USING ")[2])
    body = re.sub(r'COLLATE "(?:[^"]|"")*"', "", body)  # a collation's name is no arithmetic
    while True:  # a constant, cast (once or more) when the index is made
        folded = re.sub(r"(\(-?[\d.]+\)|\(?''\)?)::[a-z ]+", "''", body)
        if folded == body:
            break
        body = folded
    body = re.sub(r"\(-[\d.]+\)", "0", body)  # a negative constant
    if re.search(r"[-+*/%^]", body.replace("::", " ")):
        return True
    if any(cast.strip() not in WIDENING_CASTS for cast in re.findall(r"::([a-z ]+)", body)):
        return True
    names = [name.removeprefix("pg_catalog.") for name in CALL.findall(body)]
    return any(name not in TOTAL_CALLS for name in names)


def setting(key: Key, context: Context) -> Weight:
    """A database or role default: by what the setting decides."""
    name = key.name.lower()
    path = context.found.get(key)
    if key.table.startswith("role ") and newcomer(role_named(key.table), context):
        return Weight(NOTED, "a role given access since: its settings shape its own sessions only")
    if key.table.startswith("role ") and reader(role_named(key.table), context):
        return Weight(
            NOTED, "a role that may only read the application's tables: its settings shape its reads"
        )
    if name == "search_path" and path is not None and "public" not in path.replace('"', "").split(", "):
        return Weight(FAILS)  # the application's tables are not found at all
    if name in SETTING_NOTES:
        return Weight(NOTED, SETTING_NOTES[name])
    category = context.categories.get(name, "")
    if limits(name, path):
        return Weight(FAILS)
    if name not in HARMFUL_SETTINGS and category.startswith(HARMLESS_CATEGORIES):
        return Weight(NOTED, f"{category}: how values are shown or plans made, not what runs")
    if name in QUIET_SETTINGS or name.startswith("vacuum_"):
        return Weight(NOTED, "messages, maintenance or storage: not whether or what a statement does")
    return Weight(FAILS)


UNITS_KB = {"b": 1 / 1024, "kb": 1, "mb": 1 << 10, "gb": 1 << 20, "tb": 1 << 30}
SMALL_TEMP_FILES_KB = 1 << 20  # temp_file_limit below 1 GB: sorts and hashes of real tables fail


def limits(name: str, value: str | None) -> bool:
    """A setting of a harmless category whose value changes what the application gets: values
    read with fewer digits than stored, or statements that fail for want of temporary space."""
    if value is None:
        return False
    found = re.fullmatch(
        r"([-+]?\d*\.?\d+(?:e[-+]?\d+)?)\s*(b|kb|mb|gb|tb)?", value.strip().strip("'").lower()
    )
    if found is None:
        return False
    number = float(found[1])
    if name == "extra_float_digits":
        return round(number) < 1  # PostgreSQL rounds an integer setting given as a fraction
    if name == "temp_file_limit":
        kb = number * UNITS_KB[found[2] or "kb"]
        return 0 <= kb < SMALL_TEMP_FILES_KB
    return False


def grants(key: Key, want: str, have: str, context: Context) -> Weight:
    """Privileges: every role keeps what it had (more is noted)."""
    wanted, got = privileges(want), privileges(have)
    if all("all" in got.get(who, set()) or held <= got.get(who, set()) for who, held in wanted.items()):
        return Weight(NOTED, "privileges given: whoever could before still can")
    return Weight(FAILS)


def privileges(acl: str) -> dict[str, set[str]]:
    """`owner: all; PUBLIC: SELECT` as role → privileges."""
    pairs = (entry.partition(": ") for entry in acl.split("; ") if entry)
    return {who: set(held.split(", ")) for who, _, held in pairs}


# Column defaults PostgreSQL evaluates to the same value: the transaction's start time.
NOW = re.compile(r"\b(CURRENT_TIMESTAMP|LOCALTIMESTAMP|transaction_timestamp\(\))")
NO_DEFAULT = re.compile(r" default NULL(?:::[a-z ]+(?:\([\d,]+\))?)?(?=( generated| collate|$))")


def column(key: Key, want: str, have: str, context: Context) -> Weight:
    if default_form(want) == default_form(have):
        return Weight(NOTED, "a default spelled differently: the same value")
    return Weight(FAILS)


def default_form(definition: str) -> str:
    """A column's definition with its default in a form equal values share: `DEFAULT NULL`
    is no default; now(), CURRENT_TIMESTAMP, LOCALTIMESTAMP are the transaction's start."""
    return NO_DEFAULT.sub("", NOW.sub("now()", definition))


def index(key: Key, want: str, have: str, context: Context) -> Weight:
    if STORAGE.sub("", want) == STORAGE.sub("", have):
        return Weight(NOTED, "storage parameters (fillfactor, deduplication): the same rows, the same order")
    return Weight(FAILS)


def constraint(key: Key, want: str, have: str, context: Context) -> Weight:
    if " MATCH FULL" in want + have and want.replace(" MATCH FULL", "") == have.replace(" MATCH FULL", ""):
        columns = FK_COLUMNS.match(want)
        if columns and all(not_null(context.found, key.table, c) for c in columns[1].split(", ")):
            return Weight(NOTED, "MATCH FULL on NOT NULL columns accepts the same rows")
    wanted, found = check_parts(want), check_parts(have)
    if wanted and found and wanted[1] == found[1]:
        if array_form(wanted[0]) == array_form(found[0]):
            return Weight(NOTED, "the same CHECK as PostgreSQL reads it back from a dump (restored)")
        return Weight(BEHAVIOUR, "the CHECK is spelled differently")
    return Weight(FAILS)


# `(ARRAY['0'::character varying, '1'::character varying])::text[]`, as PostgreSQL stores
# `x IN ('0', '1')`, comes back from pg_dump as `ARRAY[('0'::character varying)::text, ...]`.
ARRAY_CAST = re.compile(r"\(ARRAY\[((?:[^\[\]']|'(?:[^']|'')*')*)\]\)::([a-z ]+)\[\]")
LITERALS = re.compile(r"'(?:[^']|'')*'::[a-z ]+")


def array_form(expression: str) -> str:
    """A CHECK expression with every cast of an array of literals moved onto its elements."""

    def spread(found: re.Match[str]) -> str:
        items = LITERALS.findall(found[1])
        if ", ".join(items) != found[1]:
            return found[0]  # not an array of literals only: left as it is
        return "ARRAY[" + ", ".join(f"({item})::{found[2]}" for item in items) + "]"

    return ARRAY_CAST.sub(spread, expression)


def not_null(found: Mapping[Key, str], table: str, column: str) -> bool:
    definition = found.get(Key("column", table, column.strip('"')), "")
    return definition.split(" default ", 1)[0].endswith(" not null")


def check_parts(definition: str) -> tuple[str, str] | None:
    """A CHECK's expression (in its parentheses) and what follows it (NO INHERIT, NOT VALID,
    disabled enforcement), or None for anything else."""
    if not definition.startswith("CHECK ("):
        return None
    depth, quoted = 0, False
    for at, char in enumerate(definition[6:], 6):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return definition[6 : at + 1], definition[at + 1 :]
    return None


def trigger(key: Key, want: str, have: str, context: Context) -> Weight:
    if have == want + " (ENABLE ALWAYS)":
        return Weight(NOTED, "ENABLE ALWAYS fires in every session (replica ones too), never fewer")
    return Weight(FAILS)


def function(key: Key, want: str, have: str, context: Context) -> Weight:
    """Header (result, language, volatility, security, settings) to the letter, but for a
    search_path that pins pg_catalog and public; the body by its proven-equal form, else by
    behaviour."""
    (want_head, _, want_body), (have_head, _, have_body) = want.partition(": "), have.partition(": ")
    why = "the body is spelled differently"
    if want_head != have_head:
        head, pinned = unhardened(have_head)
        if head != want_head:
            return Weight(FAILS)
        if pinned not in HARDENED_PATHS:  # names of public resolve nowhere: the probes decide
            return Weight(BEHAVIOUR, f"pinned to search_path {', '.join(pinned) or 'empty'}")
        why = "pinned to search_path pg_catalog, public (hardened)"
    if body_form(want_body) == body_form(have_body):
        return Weight(NOTED, why if want_body != have_body or want_head != have_head else "")
    return Weight(BEHAVIOUR, why)


def unhardened(head: str) -> tuple[str, list[str]]:
    """A function's header without a `set search_path` that names only pg_catalog, public
    and pg_temp (last), and the schemas it pins; else the header unchanged."""
    before, marker, configs = head.partition(" set ")
    path = SEARCH_PATH.search(configs) if marker else None
    if path is None:
        return head, []
    schemas = [s.strip().strip('"') for s in path[1].split(",") if s.strip().strip('"')]
    if schemas[-1:] == ["pg_temp"]:
        schemas = schemas[:-1]
    if not set(schemas) <= {"pg_catalog", "public"}:
        return head, []
    rest = SEARCH_PATH.sub("", configs, count=1).strip(", ")
    return (f"{before} set {rest}" if rest else before), schemas


# a space next to punctuation means nothing, but between two operator signs (`- -1` is not `--1`)
SIGNS = r"+\-*/<>=~!@#%^&|`?"
SPACING = re.compile(
    rf" (?=[^\w\s{SIGNS}])|(?<=[^\w\s{SIGNS}]) | (?=[{SIGNS}])(?<=\w )| (?<=[{SIGNS}] )(?=\w)"
)
# What a body is read as, left to right: a literal or quoted name (kept as written), a comment
# (`--` to the line's end, `/* */` nested as PostgreSQL nests them), or code.
TOKEN = re.compile(
    r"(?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$|--[^\n]*|/\*",
    re.S,
)


# Literals and quoted names only: comments read as code.
QUOTED = re.compile(TOKEN.pattern.rsplit("|--", 1)[0], re.S)


def pieces(body: str) -> list[tuple[bool, str]]:
    """The body as (literal?, text) pieces, comments left out (each a space). The catalog gives
    a body on one line (its spacing collapsed), so where a line comment ends is lost: a body
    with one keeps every comment as code (what follows `--` may be code or not)."""
    out = scan(body, TOKEN)
    return (
        out
        if not any(not literal and "--" in text for literal, text in scan(body, QUOTED))
        else scan(body, QUOTED)
    )


def scan(body: str, token: re.Pattern[str]) -> list[tuple[bool, str]]:
    """The body as (literal?, text) pieces by `token`, comments left out (each a space)."""
    out: list[tuple[bool, str]] = []
    at = 0
    while (found := token.search(body, at)) is not None:
        out.append((False, body[at : found.start()]))
        text = found[0]
        if text == "/*":
            depth, end = 1, found.end()
            while depth and end < len(body):
                opens, closes = body.find("/*", end), body.find("*/", end)
                if closes < 0:
                    end = len(body)
                    break
                if 0 <= opens < closes:
                    depth, end = depth + 1, opens + 2
                else:
                    depth, end = depth - 1, closes + 2
            out.append((False, " "))
            at = end
            continue
        out.append((False, " ") if text.startswith("--") else (True, text))
        at = found.end()
    out.append((False, body[at:]))
    merged: list[tuple[bool, str]] = []
    for literal, text in out:  # code around a comment is one piece: the comment a space in it
        if merged and not literal and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + text)
        else:
            merged.append((literal, text))
    return merged


def body_form(body: str) -> str:
    """A function body in a form where spellings that mean the same read the same: comments
    dropped, case folded and spacing removed outside literals and quoted names, `:=` as `=`,
    no semicolon after the final END."""
    out = []
    for literal, part in pieces(body):
        if literal:
            out.append(part)
            continue
        text = re.sub(r"\s+", " ", part.lower().replace(":=", "=")).strip()
        out.append(SPACING.sub("", text))
    return re.sub(r";$", "", "".join(out).strip())
