"""Where a backup is made and kept: a private `.azak_backup_*.partial` directory, held locked
(flock) while the backup lives, then the checked file given its final, never reused name.
A backup sweeps the leftovers of killed ones: the directories nobody holds."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrations.dburl import DeployError

PARTIAL = ".azak_backup_*.partial"


@contextmanager
def workspace(directory: Path) -> Iterator[Path]:
    """A private `.azak_backup_*.partial` directory, held locked (flock) while this backup
    lives and removed after it. Made under the backup directory's own lock, which is also
    when a killed backup's leftover (a .partial nobody holds) is swept."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(directory):
        sweep(directory)
        work = Path(tempfile.mkdtemp(prefix=".azak_backup_", suffix=".partial", dir=directory))
        held = os.open(work, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(held)


@contextmanager
def locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """flock on a file or directory for the block; whether it was had (non-blocking)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def sweep(directory: Path) -> None:
    """Remove the .partial leftovers of backups that died (their lock is free)."""
    for left in directory.glob(PARTIAL):
        try:
            with locked(left, blocking=False) as free:
                if free:
                    shutil.rmtree(left) if left.is_dir() else left.unlink()
        except FileNotFoundError:
            continue


def publish(partial: Path, directory: Path, stamp: str) -> Path:
    """Give the checked file its name: the runbook's, with _2, _3, ... if taken (never overwrites,
    even by a backup running beside this one: os.link fails on an existing name)."""
    for n in range(1, 10_000):
        final = directory / (f"azak_backup_{stamp}.sql.gz" if n == 1 else f"azak_backup_{stamp}_{n}.sql.gz")
        try:
            os.link(partial, final)
        except FileExistsError:
            continue
        return final
    raise DeployError(f"no free backup name for {stamp} in {directory}")
