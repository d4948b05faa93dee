"""The runbook's per-step forms, routed through the runner so the ledger stays true.

    python -m migrations.add_product_info_table            # apply this step
    python -m migrations.add_product_info_table downgrade  # roll this step back
    python -c "from migrations.deprecate_priority_column import downgrade; downgrade()"

A migration module declares them through `migrations.runbook`, which loads this (and the
runner) only when a step is run. The database comes from DATABASE_URL or the POSTGRES_*
variables (or `--db-url`).
"""

from __future__ import annotations

import argparse
import sys

from migrations import history
from migrations.cli import fail_cleanly, open_runner
from migrations.dburl import resolve


def run_step(module: str, direction: str, db_url: str | None = None) -> None:
    """Apply (`up`) or roll back (`down`) exactly one migration; a row in the database's history."""
    name = module.rpartition(".")[2]
    with fail_cleanly():
        url = resolve(db_url)
        verb = "upgrade" if direction == "up" else "downgrade"
        action = history.Action(url, verb, f"{name} (the runbook's step)")
        with history.recorded(action), open_runner(url) as runner:
            runner.apply_one(name, direction)


def main() -> None:
    """`python -m migrations.<step> [upgrade|downgrade] [--db-url URL]`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None:
        raise SystemExit("error: run a migration as `python -m migrations.<name>`")
    module = spec.name
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("direction", nargs="?", choices=("upgrade", "downgrade"), default="upgrade")
    parser.add_argument("--db-url", help="PostgreSQL URL (else DATABASE_URL, else POSTGRES_*)")
    args = parser.parse_args()
    run_step(module, "up" if args.direction == "upgrade" else "down", args.db_url)
