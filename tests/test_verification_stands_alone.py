"""Verification stands alone: loading it (its plugin, every check, the chain's checklists and
the command) imports nothing of the deploy side, and no kit module imports one that imports it
back at load time."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_SIDE = (
    "migrations.runner",
    "migrations.backup",
    "migrations.restore",
    "migrations.cli",
    "migrations.script",
    "migrations.__main__",
)
LOADED = f"""
import importlib, json, pkgutil, sys
import verification
for module in pkgutil.iter_modules(verification.__path__):
    importlib.import_module("verification." + module.name)
print(json.dumps([name for name in {DEPLOY_SIDE!r} if name in sys.modules]))
"""


def test_loading_verification_imports_no_deploy_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], "verification loaded the deploy side"


def imports(path: Path) -> set[str]:
    """The kit modules a module imports when it is loaded (its top level, not its functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_no_import_cycle_at_load_time() -> None:
    files = [*ROOT.glob("migrations/*.py"), *ROOT.glob("verification/*.py")]
    modules = {".".join(f.relative_to(ROOT).with_suffix("").parts): f for f in files}
    graph = {name: imports(path) & set(modules) - {name} for name, path in modules.items()}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append([*path[path.index(name) :], name])
            return
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:3])
