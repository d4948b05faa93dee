"""Progress of long work: rows or bytes done of the total, the rate and the time left.

On a terminal, one line rewritten in place (`\\r`) a few times a second; anywhere else (a CI
log, a pipe, a file) a plain line every few seconds, so that a log shows the work moving
without filling up. Work shorter than that interval shows nothing in a log.

    with Progress("a_rewriting_migration", total=1_000_000, out=sys.stdout) as shown:
        shown.update(5000)                    # or shown.add(n)

Backup and restore count bytes through a stream: `Counting(stream, Progress(..., unit="bytes"))`
counts what is read from or written to it (for a .sql.gz: the compressed bytes, of the
file's size as the total).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any, TextIO

TTY_EVERY_S = 0.2  # a terminal: a smooth line
LOG_EVERY_S = 5.0  # a log: a line every few seconds, not one per batch
UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


class Progress:
    """One piece of long work, shown as `label: done of total (N%), rate, time left`."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "rows",
        out: TextIO | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total if total and total > 0 else None
        self.unit = unit
        self.out = out if out is not None else sys.stderr
        self.tty = is_tty(self.out)
        self.every = every if every is not None else (TTY_EVERY_S if self.tty else LOG_EVERY_S)
        self.clock = clock
        self.started = self.shown_at = clock()
        self.done = 0
        self.width = 0  # of the line on the terminal now (0: none)

    def add(self, amount: int) -> None:
        """`amount` more done."""
        self.update(self.done + amount)

    def update(self, done: int) -> None:
        """`done` so far; shown when the interval has passed."""
        self.done = min(done, self.total) if self.total else done
        now = self.clock()
        if now - self.shown_at >= self.every:
            self.show(now)

    def text(self, now: float) -> str:
        """The line: done (of total, percent), rate, time left."""
        rate = self.done / max(now - self.started, 1e-6)
        done = amount(self.done, self.unit)
        if self.total:  # `250 of 1,000 rows`; bytes keep their own scale: `3.0 MiB of 1.2 GiB`
            done = done if self.unit == "bytes" else f"{self.done:,}"
            done += f" of {amount(self.total, self.unit)} ({100 * self.done / self.total:.0f}%)"
        line = f"{self.label}: {done}"
        line += f", {amount(round(rate), self.unit)}/s"
        if self.total and rate > 0:
            line += f", {duration((self.total - self.done) / rate)} left"
        return line

    def show(self, now: float | None = None) -> None:
        """Write the line now: in place on a terminal, as a new line elsewhere."""
        now = self.clock() if now is None else now
        line = self.text(now)
        if self.tty:
            self.out.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.shown_at = now

    def clear(self) -> None:
        """Take the line off the terminal (before another line is printed, and at the end)."""
        if self.tty and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()
            self.width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()  # the caller says what was done, in its own words


class Counting:
    """A binary stream whose reads and writes count as progress (bytes)."""

    def __init__(self, stream: IO[bytes], progress: Progress) -> None:
        self.stream = stream
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.progress.add(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        data = self.stream.read1(size)  # type: ignore[attr-defined]
        self.progress.add(len(data))
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        n = self.stream.readinto(buffer)  # type: ignore[attr-defined]
        self.progress.add(n or 0)
        return int(n or 0)

    def readline(self, size: int = -1) -> bytes:
        data = self.stream.readline(size)
        self.progress.add(len(data))
        return data

    def write(self, data: bytes) -> int:
        written = self.stream.write(data)
        self.progress.add(len(data))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def is_tty(out: Any) -> bool:
    """Whether `out` is a terminal (a closed or odd stream is not)."""
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def amount(value: float, unit: str) -> str:
    """`1,234,567 rows`, or for bytes `12.3 MiB`."""
    if unit != "bytes":
        return f"{value:,.0f} {unit}"
    size, step = float(value), 0
    while size >= 1024 and step < len(UNITS) - 1:
        size, step = size / 1024, step + 1
    return f"{size:,.0f} bytes" if step == 0 else f"{size:.1f} {UNITS[step]}"


def duration(seconds: float) -> str:
    """`7 s`, `2 min 05 s`, `1 h 03 min`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
