"""The verifying role may read the schema the deployment is in.

A hardened database may withhold USAGE on schema `public` from a role that only verifies:
then no check could read anything. This check fails naming the missing privilege and the
GRANT that gives it; the database checks are not run (each says why); the report and the
deployment record are written as for any failure.
"""

from verification.db import Target


def test_verifying_role_may_use_schema_public(target: Target) -> None:
    missing = target.blind_spot()
    assert missing is None, f"{missing}; the database checks were not run"
