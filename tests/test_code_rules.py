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


def test_no_torchvision_or_timm():
    offenders = [str(p.relative_to(REPO)) for p in REPO.rglob("*.py") if ".venv" not in p.parts and _imports(p) & {"torchvision", "timm"}]
    assert offenders == []


def test_ruff_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "core", "dashboard", "tests", "run_dashboard.py", "docs"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _modules_imported(path) -> set[str]:
    """Every module a file imports, in full (``from dashboard import pages`` counts as ``dashboard.pages``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_components_never_import_pages():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dashboard" / "components").rglob("*.py")
                 if any(m == "dashboard.pages" or m.startswith("dashboard.pages.") for m in _modules_imported(p))]
    assert offenders == []


def test_nothing_is_attached_to_heatmap_objects_from_outside():
    """Derived layers live in ``SlideLayers``, never in a heatmap's ``__dict__`` or set on it with ``setattr``."""
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in (REPO / "core" / "heatmaps").rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "__dict__" in line or "setattr" in line]
    assert offenders == []
