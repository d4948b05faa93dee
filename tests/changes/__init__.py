"""Changes the tests try out after US-001, each a folder as `migrations/changes/<change>/` is.

A test puts one at the head with AZAK_EXTRA_CHANGES (`migrations.steps.EXTRA_ENV`); each says
`AFTER`, the migration it follows, so the chain is cut there and a real next change already on
the chain never meets it. `make test` runs its PostgreSQL 13 leg with `next_change` at the head.
"""
