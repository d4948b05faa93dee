"""The application's changes, one folder each, and the chain: the order they deploy in.

A change is a package (`migrations/changes/<change>/`) whose `__init__` names its migrations
in order (`MIGRATIONS`); beside them, `contracts/` (what each does to the catalog) and, if it
has any, `checklist` (its own post-deploy checks, a module or a package of them, collected by
`pytest verification`: `verification.checklists`). Adding a change is adding its folder and
its line here; the kit reads nothing else.
"""

CHAIN = ("migrations.changes.us_001",)

# The application's configuration, as the kit needs it: the table that marks its database
# (the kit refuses a database without it) and whose owner is the application (what a
# migration creates is owned like it).
APPLICATION_TABLE = "public.stocks"
