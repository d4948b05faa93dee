"""The deployment kit's deploy side: the runtime that applies the chain of changes.

`python -m migrations --help` lists the commands. The changes themselves live in
`migrations/changes/`, one folder each. Each migration is also runnable alone, as a runbook
does (`python -m migrations.<migration> [downgrade]`): the folders of the chain's changes are
part of this package's search path, so `migrations.<migration>` finds the migration's module.
"""

import importlib.util

from migrations.changes import CHAIN

for _change in CHAIN:
    _spec = importlib.util.find_spec(_change)
    if _spec is not None and _spec.submodule_search_locations:
        __path__.extend(_spec.submodule_search_locations)
