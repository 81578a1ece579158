"""Project conventions that a change could silently break."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.helpers import REPO


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_the_dashboard_or_dash():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "core").rglob("*.py") if _imports(p) & {"dash", "dashboard", "flask"}]
    assert offenders == []


def _dashboard_imports(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module] + [f"{node.module}.{a.name}" for a in node.names])
    return {n for n in names if n.startswith("dashboard.")}


def test_components_never_import_pages():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dashboard" / "components").rglob("*.py")
                 if any(n == "dashboard.pages" or n.startswith("dashboard.pages.") for n in _dashboard_imports(p))]
    assert offenders == []


def test_no_torchvision_or_timm():
    offenders = [str(p.relative_to(REPO)) for p in REPO.rglob("*.py") if ".venv" not in p.parts and _imports(p) & {"torchvision", "timm"}]
    assert offenders == []


def test_ruff_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "core", "dashboard", "tests", "run_dashboard.py", "docs"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
