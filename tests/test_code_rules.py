"""Project conventions that a change could silently break."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

ARCHITECTURE = REPO / "docs" / "architecture.md"


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


@pytest.mark.slow  # about 20 s of type checking on 2 cores: outside the fast loop, inside the full run
def test_mypy_clean_over_core():
    """``python -m mypy`` with the settings in pyproject.toml: core/, every function annotated."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def core_layers(doc: str) -> dict[str, int]:
    """``core.X`` -> its layer, from the table under ``## Layers`` in docs/architecture.md."""
    assert "\n## Layers\n" in doc, "docs/architecture.md has no '## Layers' section"
    section = doc.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for level, names in re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", section, re.MULTILINE):
        for name in re.findall(r"`(core\.[A-Za-z_][A-Za-z0-9_]*)`", names):
            assert name not in layers, f"{name} is on two layers"
            layers[name] = int(level)
    return layers


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` in ``path`` names, relative imports resolved, nested and TYPE_CHECKING ones included."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)  # ``from core import cache`` imports core.cache
    return names


def _owner(module: str, layers: dict[str, int]) -> str | None:
    """The layer entry ``module`` belongs to: itself or the package above it."""
    parts = module.split(".")
    return next((".".join(parts[:n]) for n in range(len(parts), 1, -1) if ".".join(parts[:n]) in layers), None)


def test_architecture_layers_name_every_core_package_and_only_existing_ones():
    layers = core_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(set(layers.values())) >= 5, "the layer table was not found or lost rows"
    missing = [n for n in layers if not (REPO / n.replace(".", "/")).with_suffix(".py").is_file()
               and not (REPO / n.replace(".", "/") / "__init__.py").is_file()]
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"
    top_level = {f"core.{p.stem}" for p in (REPO / "core").glob("*.py") if p.stem != "__init__"}
    top_level |= {f"core.{p.parent.name}" for p in (REPO / "core").glob("*/__init__.py")}
    unplaced = sorted(top_level - set(layers))
    assert unplaced == [], f"put these on a layer of docs/architecture.md: {unplaced}"


def test_core_imports_run_only_down_the_layers():
    """A module imports from its own package and from lower layers of docs/architecture.md; peers on one layer
    do not import each other."""
    layers = core_layers(ARCHITECTURE.read_text(encoding="utf-8"))
    offenders = []
    for path in sorted((REPO / "core").rglob("*.py")):
        here = _owner(_module_name(path), layers)
        if here is None:
            continue  # core/__init__.py; an unplaced module fails the test above
        for module in imported_modules(path):
            there = _owner(module, layers)
            if there is not None and there != here and layers[there] >= layers[here]:
                offenders.append(f"{path.relative_to(REPO)} ({here}, layer {layers[here]}) imports {module} (layer {layers[there]})")
    assert offenders == [], "\n".join(sorted(set(offenders)))


def test_components_never_import_pages():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "dashboard" / "components").rglob("*.py")
                 if any(m == "dashboard.pages" or m.startswith("dashboard.pages.") for m in imported_modules(p))]
    assert offenders == []


def test_nothing_is_attached_to_heatmap_objects_from_outside():
    """Derived layers live in ``SlideLayers``, never in a heatmap's ``__dict__`` or set on it with ``setattr``."""
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in (REPO / "core" / "heatmaps").rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "__dict__" in line or "setattr" in line]
    assert offenders == []
