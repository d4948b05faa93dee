"""What "identical to before" means, measured: a schema-only dump and a fingerprint of the data.

Used by `make rehearse` and the tests to prove that a rollback or a restore loses nothing.
The kit's own registry (azak_registry: ledger, images, history) is not the application's
and is left out: it keeps its history across a rollback by design.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from psycopg2 import sql

from migrations.dburl import KIT_PATH, URL, DeployError, connect, libpq_command, mask

# Lines of a pg_dump that differ between two dumps of the same schema.
VOLATILE = ("\\restrict", "\\unrestrict", "-- Dumped ")


@dataclass(frozen=True)
class Snapshot:
    """A database's schema (dump text) and data (per table: row count and md5; sequences)."""

    schema: str
    tables: dict[str, tuple[int, str]]
    sequences: dict[str, tuple[int, bool]]

    def differences(self, other: Snapshot) -> list[str]:
        """What differs from `other`, one line each (empty: identical)."""
        out = []
        if self.schema != other.schema:
            out.append("schema-only dumps differ")
        for name in sorted(set(self.tables) | set(other.tables)):
            if self.tables.get(name) != other.tables.get(name):
                out.append(f"table {name}: {self.tables.get(name)} vs {other.tables.get(name)}")
        for name in sorted(set(self.sequences) | set(other.sequences)):
            if self.sequences.get(name) != other.sequences.get(name):
                out.append(f"sequence {name}: {self.sequences.get(name)} vs {other.sequences.get(name)}")
        return out


def schema_dump(url: URL) -> str:
    """`pg_dump --schema-only`, without the lines that vary between runs."""
    argv, env = libpq_command(url)
    done = subprocess.run(
        ["pg_dump", "--schema-only", "--exclude-schema=azak_registry", "--no-password", *argv],
        capture_output=True,
        text=True,
        errors="surrogateescape",  # an EUC_KR or SQL_ASCII database's bytes, compared as they are
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise DeployError(f"pg_dump --schema-only of {mask(url)} failed: {done.stderr.strip()[:200]}")
    return "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith(VOLATILE))


def take(url: URL) -> Snapshot:
    """Snapshot every table and sequence of the public schema."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S') ORDER BY c.relname"
            )
            tables, sequences = {}, {}
            for name, kind in cur.fetchall():
                ident = sql.Identifier("public", name)
                if kind == "S":
                    cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident))
                    sequences[name] = tuple(cur.fetchone() or ())
                else:
                    cur.execute(
                        sql.SQL(
                            "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
                            " FROM {} t"
                        ).format(ident)
                    )
                    tables[name] = tuple(cur.fetchone() or ())
    finally:
        conn.close()
    return Snapshot(schema_dump(url), tables, sequences)
