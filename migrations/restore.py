"""Restore: the kit's own backups run exactly as checked; a foreign file only when named so.

The file is read once, into an unlinked private copy; everything after works on that copy,
whatever happens to the path meanwhile (a swap while restore waits for the deployment lock
changes nothing). Then:

- **A backup of the kit** (`provenance.verify`: header signed with the backup key, every byte
  matching its digest, pg_dump's end mark, the database's identity) runs through psql, the
  reference reader of pg_dump's SQL, fed from the copy: one transaction whose COMMIT is the
  file's last statement, sent only once everything before it has run; psql dies with the
  kit, so a kill at any moment leaves the database wholly before or wholly restored.
- **A foreign file** (`--foreign`) is never given to psql: `migrations.foreign` runs it inside
  one server-side call that PostgreSQL keeps harmless.

Either way the restore holds the deployment lock, and a lock it waits for longer than
`--lock-timeout` is given up (`migrations.lock`), naming who holds it.
"""

from __future__ import annotations

import ctypes
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

from psycopg2.extensions import connection as Connection

from migrations import faults, lock, provenance
from migrations.dburl import KIT_PATH, URL, DeployError, UsageError, connect, libpq_command, mask
from migrations.foreign import foreign_script, run_foreign
from migrations.lock import Watchdog
from migrations.progress import Counting, Progress
from migrations.provenance import CHUNK, MAX_HEADER, Identity, Manifest, NotTheKits


@contextmanager
def private_copy(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, read once into an unlinked temporary file only this process sees."""
    try:
        source = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UsageError(f"no such backup file: {path}") from None
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror or exc}") from None
    with source, tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(source, copy, CHUNK)
        source.close()
        copy.seek(0)
        yield copy


def target_of(url: URL) -> Identity:
    """Which database `url` is."""
    conn = connect(url, **KIT_PATH)
    try:
        with conn, conn.cursor() as cur:
            return provenance.identity_of(cur)[0]
    finally:
        conn.close()


def check(url: URL, path: Path, elsewhere: bool = False, foreign: bool = False) -> str:
    """What `restore` would load, checked as it checks it; changes nothing."""
    with private_copy(path) as copy:
        return checked(url, copy, path, elsewhere, foreign)[1]


def checked(
    url: URL, copy: IO[bytes], path: Path, elsewhere: bool, foreign: bool
) -> tuple[Manifest | None, str]:
    """The copy's manifest (None for a foreign file, when allowed) and what it is, in words."""
    target = target_of(url)
    try:
        manifest = provenance.verify(copy, str(path))
    except DeployError as exc:  # not the kit's, or no longer what it wrote
        if not foreign:
            hint = (
                " (load a file the kit did not write with --foreign)" if isinstance(exc, NotTheKits) else ""
            )
            raise DeployError(f"{exc}; refused, nothing changed{hint}") from None
        copy.seek(0)
        foreign_script(copy, path)  # its size, before anything changes
        return None, f"{path} (a foreign file)"
    finally:
        copy.seek(0)
    if not elsewhere:
        provenance.refuse_elsewhere(manifest, target, str(path))
    elif manifest.identity.differences(target) and not carries_ledger(copy, path, manifest):
        raise DeployError(
            f"{path} was made by an earlier kit: its ledger comes from the history of {manifest.identity},"
            f" which {target} does not hold (this database's ledger would say base over the tables);"
            " refused, nothing changed: restore it into the database it was taken of"
        )
    return manifest, f"{path} (a backup of {manifest.identity}, taken {manifest.taken_at})"


CARRIED = b"pg_catalog.convert_from(pg_catalog.decode('"  # the prelude of a backup that carries its ledger


def carries_ledger(copy: IO[bytes], path: Path, manifest: Manifest) -> bool:
    """Whether the backup's prelude carries its ledger (this kit's), or takes it from the target's
    history by the backup's token (an earlier kit's)."""
    try:
        stream = provenance.content(copy, path.name)
        return CARRIED in stream.read(manifest.teardown_end + (64 << 10))
    finally:
        copy.seek(0)


def restore(
    url: URL,
    path: Path,
    lock_timeout_ms: int = 2000,
    lock_wait_s: float = 10.0,
    elsewhere: bool = False,
    foreign: bool = False,
    role: str | None = None,
) -> str:
    """Load a backup into `url` in one transaction, fully or not at all, whenever it is killed;
    what was restored, in words. A backup of another database (or server) only `elsewhere`;
    a file the kit did not write only as `foreign` (run as `role`)."""
    with private_copy(path) as copy:
        manifest, what = checked(url, copy, path, elsewhere, foreign)
        holder = connect(url, **KIT_PATH)
        try:
            holder.autocommit = True  # the watchdog's polls, each its own transaction
            lock.acquire(holder, url, lock_wait_s)
            if manifest is None:
                ran_as = run_foreign(url, holder, foreign_script(copy, path), path, lock_timeout_ms, role)
                return f"{what} as role {ran_as}"
            run_own(url, holder, copy, manifest, path, lock_timeout_ms)
            return what
        finally:
            holder.close()


# -- the kit's own backups: psql, fed from the checked copy -----------------------------------


def run_own(
    url: URL, holder: Connection, copy: IO[bytes], manifest: Manifest, path: Path, bound_ms: int
) -> None:
    """Feed the checked copy to psql: the teardown, the dump, then (once all of it has run) the
    final COMMIT; its bytes read of the file's size show as progress."""
    size = os.fstat(copy.fileno()).st_size
    with Progress("restore", size, unit="bytes") as shown:
        send(url, holder, cast(IO[bytes], Counting(copy, shown)), manifest, path, bound_ms)


def send(
    url: URL, holder: Connection, copy: IO[bytes], manifest: Manifest, path: Path, bound_ms: int
) -> None:
    """The file's bytes to psql, marks and fault points between them."""
    stream = provenance.content(copy, path.name)
    feed = Psql(url, holder, bound_ms)
    commit_sent = False
    try:
        feed.send(stream.readline(MAX_HEADER))
        feed.copy(stream, manifest.teardown_end)
        feed.reach("teardown")
        faults.fault("restore:after-teardown")
        feed.copy(stream, manifest.commit_at - manifest.teardown_end)
        feed.reach("commit")
        faults.fault("restore:before-commit")
        commit_sent = True
        feed.copy(stream, manifest.bytes - manifest.commit_at)
        feed.close()
    except (BrokenPipeError, Stopped):
        pass
    finally:
        code = feed.end()
    if code != 0 or not commit_sent:
        raise feed.failure(mask(url), path.name, commit_sent)


class Stopped(Exception):
    """psql ended before reaching a mark."""


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the child gets SIGKILL when the kit dies (Linux), so no psql goes
    on restoring without the deployment lock; None where prctl is unknown."""
    parent = os.getpid()
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return arm


class Psql:
    """psql reading the kit's pipe (no psqlrc, ON_ERROR_STOP), and the marks it answers with."""

    def __init__(self, url: URL, holder: Connection, bound_ms: int) -> None:
        argv, env = libpq_command(url, **KIT_PATH)  # the backup sets its own; the marks see pg_catalog
        self.nonce = secrets.token_hex(8)
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as psql)
        self.marks: queue.Queue[str | None] = queue.Queue()
        self.lines = 0  # lines sent so far
        self.kit_lines: list[int] = []  # the kit's own lines (marks), by number
        command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", "-f", "-", *argv]
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.errors,
                env=env,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 (no thread runs yet)
            )
        except FileNotFoundError:
            raise DeployError("psql not found: install the PostgreSQL client tools") from None
        threading.Thread(target=self.read_marks, daemon=True).start()
        self.watchdog: Watchdog | None = None
        try:
            pid = int(self.reach("pid", "pg_catalog.pg_backend_pid()"))
        except (BrokenPipeError, Stopped, ValueError):
            return
        self.watchdog = Watchdog(holder, pid, bound_ms)
        self.watchdog.start()

    def read_marks(self) -> None:
        assert self.proc.stdout is not None
        prefix = f"azak-mark {self.nonce} "
        for raw in self.proc.stdout:
            line = raw.decode("ascii", errors="replace").rstrip("\n")
            if line.startswith(prefix):
                self.marks.put(line[len(prefix) :])
        self.marks.put(None)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.lines += data.count(b"\n")

    def copy(self, stream: IO[bytes], size: int) -> None:
        """Send exactly `size` bytes of the stream."""
        while size > 0:
            chunk = stream.read(min(CHUNK, size))
            if not chunk:
                raise Stopped
            self.send(chunk)
            size -= len(chunk)

    def reach(self, name: str, value: str = "''") -> str:
        """Send a mark and wait until psql has run everything before it: the mark's value."""
        self.kit_lines.append(self.lines + 1)
        self.send(f"SELECT pg_catalog.concat('azak-mark {self.nonce} {name} ', {value});\n".encode())
        assert self.proc.stdin is not None
        self.proc.stdin.flush()
        while True:
            got = self.marks.get()
            if got is None:
                raise Stopped
            if got.startswith(f"{name} "):
                return got[len(name) + 1 :]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def end(self) -> int:
        """Wait for psql (closing its input: without the COMMIT it ends in a rollback)."""
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self.proc.wait()
        if self.watchdog:
            self.watchdog.finish()
        return code

    def failure(self, where: str, name: str, commit_sent: bool) -> DeployError:
        """The one line that says why psql stopped."""
        if self.watchdog and self.watchdog.reason:
            return DeployError(f"restore into {where}: {self.watchdog.reason}; nothing changed")
        self.errors.seek(0)
        said = self.errors.read().decode(errors="replace")
        lines = [ln for ln in said.splitlines() if re.search(r"ERROR|FATAL|psql:", ln)] or ["psql stopped"]
        found = re.match(r"psql:<stdin>:(\d+): (.*)", lines[0])
        text, at = (found[2], int(found[1])) if found else (lines[0], 0)
        line = at - sum(1 for n in self.kit_lines if n < at)  # stdin's lines less the kit's marks
        place = f" at line {line} of {name}" if at else ""
        if commit_sent and "ERROR" not in text:
            return DeployError(
                f"restore into {where}: psql stopped while committing ({text}): check the database"
            )
        return DeployError(f"restore into {where} failed{place}, nothing changed: {text.strip()}")
