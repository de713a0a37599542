"""What import-linter can't check about the architecture; the import rules themselves are
the contracts in pyproject.toml (`lint-imports`), run here too."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optiinfra_tui"
PYPROJECT = ROOT / "pyproject.toml"


def _contracts() -> list[dict]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_import_linter_contracts_hold():
    beside = Path(sys.executable).with_name("lint-imports")
    exe = shutil.which("lint-imports") or (str(beside) if beside.exists() else None)
    if exe is None:
        pytest.skip("lint-imports (import-linter) not installed")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layers_contract_places_every_module():
    # A layers contract says nothing about a module it doesn't list: a new top-level module
    # must be given its layer, or it could import anything.
    layered = {name.strip().removeprefix("optiinfra_tui.")
               for c in _contracts() if c["type"] == "layers" and not c.get("containers")
               for layer in c["layers"] for name in layer.replace(":", "|").split("|")}
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert present - layered == set(), "modules without a layer in pyproject.toml"
    assert layered - present == set(), "layers naming modules that no longer exist"


def test_every_contract_says_why():
    text = PYPROJECT.read_text(encoding="utf-8")
    blocks = re.findall(r"((?:^#.*\n)*)\[\[tool\.importlinter\.contracts\]\]", text, re.M)
    assert len(blocks) == len(_contracts()) > 5
    assert all(b.strip() for b in blocks), "a contract without a comment saying why"


def test_huey_config_reaches_the_package_only_through_the_worker():
    # huey_config.py sits outside the package (huey_consumer imports it by path), so no
    # contract sees it: it may use the worker layer and what lies below, never an interface.
    allowed = ("optiinfra_tui.worker", "optiinfra_tui.errors", "optiinfra_tui.settings")
    ours = {m for m in _imports(ROOT / "huey_config.py") if m.startswith("optiinfra_tui")}
    assert ours and all(m.startswith(allowed) for m in ours), ours


def test_every_provider_is_in_the_independence_contract():
    # import-linter checks the modules it is given: a new provider must be added to be checked.
    # A single-module provider's light spec (<provider>_spec.py, what its entry point names)
    # is part of that provider, not one of its own.
    shared = {"__init__", "base", "fields", "focus_sql", "http", "ratelimit"}
    collectors = PACKAGE / "collectors"
    specs = {p.stem.removesuffix("_spec") for p in collectors.glob("*_spec.py")}
    providers = {f"optiinfra_tui.collectors.{p.stem}" for p in collectors.glob("*.py")
                 if p.stem not in shared and not p.stem.endswith("_spec")} | {
        f"optiinfra_tui.collectors.{p.parent.name}" for p in collectors.glob("*/__init__.py")}
    assert {f"optiinfra_tui.collectors.{s}" for s in specs} <= providers
    independent = next(set(c["modules"]) for c in _contracts() if c["type"] == "independence")
    assert providers == independent
