"""Backup and restore show their progress: bytes done of the total, the rate and the time
left, as plain lines where the output is not a terminal (here, captured stderr)."""

import re
from pathlib import Path

import pytest

from migrations import backup, progress, restore
from tests.conftest import Db

LINE = r"^{}: [\d.]+ (bytes|KiB|MiB) of [\d.]+ (bytes|KiB|MiB) \(\d+%\), [\d.]+ (bytes|KiB|MiB)/s"


def test_backup_and_restore_say_bytes_of_the_total(
    app_db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # a line at every step, not every 5 s
    made = backup.backup(app_db.url, tmp_path)
    said = capsys.readouterr().err
    assert re.search(LINE.format("backup"), said, re.M), said[-2000:]
    restore.restore(app_db.url, made)
    said = capsys.readouterr().err.splitlines()
    shown = [line for line in said if re.match(LINE.format("restore"), line)]
    assert shown, said[-20:]
    assert "(100%)" in shown[-1] and "0 s left" in shown[-1], shown[-1]
