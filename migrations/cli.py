"""Console plumbing shared by every entry point: errors become one line and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from migrations.dburl import URL, DeployError, UsageError, describe, mask_text, resolve
from migrations.runner import Runner, Settings

EXIT_FAILURE = 1
EXIT_USAGE = 2


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn the errors an operator can meet into `error: ...` on stderr and an exit code."""
    try:
        yield
        sys.stdout.flush()  # a closed pipe (`status | head -1`) says so here, not at exit
    except BrokenPipeError:
        # the reader has gone (`| head`): nothing left to say, and no one to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_FAILURE) from None
    except UsageError as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except DeployError as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except psycopg2.Error as exc:
        print(f"error: database: {describe(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except OSError as exc:
        print(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        print("error: interrupted; the database is at the last committed step", file=sys.stderr)
        raise SystemExit(130) from None


def open_runner(db_url: URL | str | None, settings: Settings | None = None) -> Runner:
    """A runner on the database the operator named (argument, DATABASE_URL or POSTGRES_*)."""
    return Runner(db_url if isinstance(db_url, URL) else resolve(db_url), settings)
