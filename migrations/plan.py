"""`python -m migrations plan`: the SQL an upgrade runs, as a script a reviewer (or squawk) reads.

The runner sets `lock_timeout` and `statement_timeout` for its whole session; the script
says them per transaction, so that it runs the same way by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg2.extensions

from migrations import batching, ledger
from migrations.contract import AS_APPLICATION, AS_DEPLOYER
from migrations.steps import Ddl, Migration

if TYPE_CHECKING:
    from migrations.session import Settings


def script(migrations: list[Migration], settings: Settings) -> str:
    """The SQL `upgrade` runs for these migrations, transactions and ledger writes included."""
    out: list[str] = []
    for m in migrations:
        out.append(f"-- {m.name}")
        for index, phase in enumerate(m.upgrade):
            out += [
                "BEGIN;",
                bind("SET LOCAL lock_timeout = %s;", (f"{settings.lock_timeout_ms}ms",)),
                bind("SET LOCAL statement_timeout = %s;", (f"{settings.statement_timeout_ms}ms",)),
            ]
            if isinstance(phase, Ddl):
                out += [AS_APPLICATION.strip(), phase.sql.strip()]
            else:
                shared = settings.workers > 1 and batching.splittable(m.contract.rewrites) is not None
                out.append(
                    f"-- repeated, one transaction per batch of {settings.batch_size} keys,"
                    " each after the last key done, until the statement returns NULL"
                    + (f" ({settings.workers} sessions share a large table's key range)" if shared else "")
                )
                out.append(
                    "SET LOCAL synchronous_commit = off;  -- the ledger's last mark waits for the disk"
                )
                out.append(bind(phase.sql, {"after": "", "batch_size": settings.batch_size}))
            if index in (0, len(m.upgrade) - 1):
                state = "applied" if index == len(m.upgrade) - 1 else "applying"
                params = {
                    "name": m.name,
                    "checksum": m.checksum,
                    "state": state,
                    "by": ledger.who(),
                    "ms": None,
                }
                out += [ledger.CREATE.strip(), AS_DEPLOYER, bind(ledger.MARK, params)]
            out.append("COMMIT;")
    return "\n".join(out) + "\n"


def bind(statement: str, params: Any) -> str:
    """A statement with its parameters quoted by the driver's adapters, as it would be sent."""

    def literal(value: Any) -> str:
        adapted = psycopg2.extensions.adapt(value)
        if hasattr(adapted, "encoding"):
            adapted.encoding = "utf-8"
        return adapted.getquoted().decode()

    if isinstance(params, dict):
        return (statement % {k: literal(v) for k, v in params.items()}).strip()
    return (statement % tuple(literal(v) for v in params)).strip()
