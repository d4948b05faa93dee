"""The application, as the kit knows it: one table (`changes.APPLICATION_TABLE`) that marks
its database, and whose owner is the application's role."""

from __future__ import annotations

from typing import Any

from migrations.changes import APPLICATION_TABLE
from migrations.dburl import URL, DeployError, mask, scalar

SCHEMA, _, TABLE = APPLICATION_TABLE.rpartition(".")
# The table's oid, or NULL where the database has no such table.
REGCLASS = f"pg_catalog.to_regclass('{APPLICATION_TABLE}')"
EXISTS_SQL = f"SELECT {REGCLASS} IS NOT NULL"
# Its owner: the application's role (no row where there is no such table).
OWNER_SQL = f"SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE oid = {REGCLASS}"  # noqa: S608


def is_application(cur: Any) -> bool:
    """Whether the database of this cursor is the application's (its table is there)."""
    return bool(scalar(cur, EXISTS_SQL))


def not_application(url: URL) -> DeployError:
    """The one line that refuses a database that is not the application's."""
    return DeployError(f"{mask(url)} has no table {APPLICATION_TABLE}: is this the application's database?")


def require(cur: Any, url: URL) -> None:
    """Refuse (DeployError) unless the cursor's database is the application's."""
    if not is_application(cur):
        raise not_application(url)
