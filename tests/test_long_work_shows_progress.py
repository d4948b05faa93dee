"""Long work shows progress: rows or bytes done of the total, the rate and the time left;
one line rewritten in place on a terminal, plain lines at a modest rate elsewhere."""

from __future__ import annotations

import io

import pytest

from migrations import progress
from migrations.progress import Counting, Progress
from migrations.runner import Runner
from tests.conftest import FAST, Db


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_plain_line_every_few_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    shown = Progress("priority", total=1000, out=out, clock=clock)
    for second in range(1, 11):
        clock.now = float(second)
        shown.update(second * 50)
    assert out.getvalue().splitlines() == [
        "priority: 250 of 1,000 rows (25%), 50 rows/s, 15 s left",
        "priority: 500 of 1,000 rows (50%), 50 rows/s, 10 s left",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place_and_cleared() -> None:
    out, clock = Terminal(), Clock()
    with Progress("restore", total=10 * 2**20, unit="bytes", out=out, clock=clock) as shown:
        for second in range(1, 4):
            clock.now = float(second)
            shown.update(second * 2**20)
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") >= 4
    assert "\rrestore: 3.0 MiB of 10.0 MiB (30%), 1.0 MiB/s, 7 s left" in text
    assert text.endswith("\r")  # cleared: the caller says what was done


def test_bytes_read_through_a_stream_count() -> None:
    out, clock = io.StringIO(), Clock()
    shown = Progress("backup", total=None, unit="bytes", out=out, every=0, clock=clock)
    stream = Counting(io.BytesIO(b"x" * 5000), shown)
    clock.now = 2.0
    while stream.read(1024):
        pass
    assert shown.done == 5000
    assert out.getvalue().splitlines()[-1] == "backup: 4.9 KiB, 2.4 KiB/s"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log"])
def test_the_batched_priority_step_shows_rows_of_the_total(
    app_db: Db, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    monkeypatch.setattr(progress, "TTY_EVERY_S" if terminal else "LOG_EVERY_S", 0.0)
    out = Terminal() if terminal else io.StringIO()
    with Runner(app_db.url, FAST, out=out) as runner:
        runner.upgrade()
        runner.downgrade("base")
    text = out.getvalue()
    total = app_db.value("SELECT count(*) FROM stocks")
    saved = app_db.value("SELECT count(*) FROM stocks WHERE priority <> 1")
    start = "\r" if terminal else "\n"
    for done, of in ((64, total), (128, total), (64, saved)):
        assert f"{start}  deprecate_priority_column: {done} of {of} rows ({100 * done / of:.0f}%), " in text
    assert " left" in text and " rows/s" in text
    assert f"  deprecate_priority_column: {saved} rows changed in 5 batches (1 session)\n" in text
