"""Repository root: its presence puts the repo on sys.path for `tests/` and `verification/`.

Fixtures live next to what uses them: `tests/conftest.py` (throwaway databases) and
`verification/conftest.py` (the post-deploy checklist's options and report).
"""
