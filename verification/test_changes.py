"""The chain's own checks: each change's checklist (`migrations/changes/<change>/checklist`),
collected here with its fixtures and markers (`verification.checklists`). Each keeps the
checklist item its own module names."""

from verification.checklists import collected

globals().update(collected())
