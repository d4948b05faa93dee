"""A pytest plugin for verification runs under test (`-p tests.lock_witness`).

After every check's teardown (its probe transaction should be over by then) it counts the
locks the verification's own sessions still hold, from a session of its own, and at the end
prints one line, `lock witness: N locks after CHECK`, N the most it saw. A probe left open
would hold row and table locks on `stocks` for the rest of the run, blocking the application.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from migrations.dburl import connect, resolve, scalar

PREFIX = "lock witness: "
# The verification's sessions on this database only: other test workers verify other ones.
VERIFICATION_LOCKS = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
    " WHERE a.application_name = 'azak-verification' AND a.datname = current_database()"
)


class LockWitness:
    """Counts the verification sessions' locks between checks; keeps the worst."""

    def __init__(self) -> None:
        self.conn = connect(resolve())  # the run's URL, from DATABASE_URL
        self.conn.autocommit = True
        self.most, self.where = 0, "every check"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        yield
        with self.conn.cursor() as cur:
            held = scalar(cur, VERIFICATION_LOCKS)
        if held > self.most:
            self.most, self.where = held, item.nodeid

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.conn.close()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write(f"\n{PREFIX}{self.most} locks after {self.where}\n")  # own line, after the dots


def pytest_configure(config: pytest.Config) -> None:
    """Watch only real runs (not --collect-only)."""
    if not config.option.collectonly:
        config.pluginmanager.register(LockWitness(), "lock-witness")


def locks_seen(output: str) -> str:
    """What a witnessed run printed, e.g. '0 locks after every check'; fails if it printed nothing."""
    found = re.findall(rf"^{PREFIX}(\d+ locks after .*)$", output, re.MULTILINE)
    assert found, f"the lock witness printed nothing; the run said:\n{output[-2000:]}"
    return str(found[-1])
