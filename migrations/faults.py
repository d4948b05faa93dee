"""The tests' hook at the kit's named points (a kill, or a pause), in the runner, backup and restore."""

from __future__ import annotations

import os
import select
import signal
import sys


def fault(point: str) -> None:
    """Test hook at a named point: AZAK_FAULT_AT=point dies like `kill -9`;
    AZAK_PAUSE_AT=point says so and waits, holding what it holds, for a line on stdin
    (at most AZAK_PAUSE_S seconds, default 60)."""
    if os.environ.get("AZAK_FAULT_AT") == point:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("AZAK_PAUSE_AT") == point:
        print(f"paused at {point}", flush=True)
        select.select([sys.stdin], [], [], float(os.environ.get("AZAK_PAUSE_S", "60")))
