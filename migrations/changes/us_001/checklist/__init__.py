"""US-001's own post-deploy checks (collected by `pytest verification`, verification/test_changes.py).

`ITEMS`: the runbook's checklist items this change adds (shown after UNIQUE); `REWRITTEN`:
the item under which a rollback's rewritten values are judged (`verification/test_rewrites.py`).
"""

ITEMS = ("priority",)  # priority 값이 모두 1인지 확인
REWRITTEN = "priority"
