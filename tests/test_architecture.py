"""The core never imports textual: only optiinfra_tui/tui may (as harlequin keeps its core)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "optiinfra_tui"
UI = PACKAGE / "tui"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def core_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if UI not in p.parents]


def test_the_walk_sees_the_core_and_would_catch_an_import(tmp_path):
    assert len(core_modules()) > 10
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from textual.app import App\n")
    assert "textual.app" in _imports(bad)


def test_no_core_module_imports_textual():
    offenders = {str(p.relative_to(PACKAGE.parent)): sorted(m for m in _imports(p)
                                                           if m.split(".")[0] == "textual")
                 for p in core_modules()}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_core_module_imports_the_tui():
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in core_modules()
                 if any(m.startswith("optiinfra_tui.tui") for m in _imports(p))
                 and p.name != "cli.py"]  # the CLI starts the dashboard, lazily
    assert not offenders


def test_import_linter_contracts_hold():
    beside = Path(sys.executable).with_name("lint-imports")
    exe = shutil.which("lint-imports") or (str(beside) if beside.exists() else None)
    if exe is None:
        pytest.skip("lint-imports (import-linter) not installed")
    result = subprocess.run([exe], cwd=PACKAGE.parent, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
