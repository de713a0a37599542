"""Declared dependencies match what the code imports (deptry), and the dev extras hold
nothing unused."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_CODE = ("tests", "bench", "screenshots")

# Dev dependencies used without an import, and where their use shows.
TOOLS = {
    "ruff": (".ci/run", "ruff check ."),
    "import-linter": (".ci/run", "lint-imports"),
    "deptry": (".ci/run", "deptry ."),
    "pytest-timeout": ("pyproject.toml", "timeout = "),
    "pytest-textual-snapshot": ("tests/test_tui_snapshots.py", "snap_compare"),
    # Imported by the consumer process the benchmark starts (code in a string).
    "gevent": ("bench/scale_customers.py", "from gevent import monkey"),
    # A command the benchmark runs: it attaches to the consumer from outside.
    "py-spy": ("bench/scale_customers.py", '"py-spy"'),
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_deptry_finds_no_dependency_issue():
    r = subprocess.run([sys.executable, "-m", "deptry", "."], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_test_and_bench_dependency_is_used():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    imported = set()
    for folder in DEV_CODE:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    used = {_name(dist) for module, dists in packages_distributions().items()
            if module in imported for dist in dists}
    # A bench-only peer (celery) isn't installed by the test extra: its name is its module.
    used |= {_name(module) for module in imported}
    unused = []
    for requirement in extras["test"] + extras["bench"]:
        name = _name(requirement)
        if name == "optiinfra-tui" or name in used:
            continue
        where = TOOLS.get(name)
        if where is None or where[1] not in (ROOT / where[0]).read_text():
            unused.append(name)
    assert unused == []
