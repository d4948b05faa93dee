"""The runbook's forms of a migration module, as it declares them:

    upgrade, downgrade = entry_points(__name__)

    if __name__ == "__main__":
        main()

Importing this loads no runtime (a migration module is read by verification too): the
runner comes in through `migrations.script` only when a step is run.
"""

from __future__ import annotations

from collections.abc import Callable


def entry_points(module: str) -> tuple[Callable[..., None], Callable[..., None]]:
    """The runbook's `upgrade(db_url=None)` and `downgrade(db_url=None)` for a migration module."""

    def upgrade(db_url: str | None = None) -> None:
        """Apply this migration (its predecessors must be applied)."""
        from migrations.script import run_step

        run_step(module, "up", db_url)

    def downgrade(db_url: str | None = None) -> None:
        """Roll this migration back (its successors must be rolled back)."""
        from migrations.script import run_step

        run_step(module, "down", db_url)

    return upgrade, downgrade


def main() -> None:
    """`python -m migrations.<name> [upgrade|downgrade]`: the runbook's per-step form."""
    from migrations.script import main as script_main

    script_main()
