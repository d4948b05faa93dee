"""The application during a deploy: a writer updating one random `stocks` row every few ms."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from migrations.dburl import connect, parse

UPDATE = "UPDATE stocks SET updated_at = now() WHERE code = %s"


@dataclass(frozen=True)
class Waits:
    """The writer's statement latencies (seconds)."""

    max: float
    p99: float


class Writer:
    """Context manager: writes in a thread while the block runs; `stats()` after it."""

    def __init__(self, url: str, every_s: float = 0.005) -> None:
        self.url = url
        self.every_s = every_s
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = connect(parse(self.url))
        conn.autocommit = True
        rng = random.Random(7)
        with conn.cursor() as cur:
            cur.execute("SELECT code FROM stocks")
            codes = [r[0] for r in cur.fetchall()]
            while not self._stop.is_set():
                started = time.monotonic()
                cur.execute(UPDATE, (rng.choice(codes),))
                self.waits.append(time.monotonic() - started)
                time.sleep(self.every_s)
        conn.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        time.sleep(0.5)  # let it load the codes and start writing
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def stats(self) -> Waits:
        ordered = sorted(self.waits) or [0.0]
        return Waits(ordered[-1], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])
