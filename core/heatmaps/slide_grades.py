"""The class-map grade of each slide whose heatmap has been computed, kept small in the workspace cache
(``cache/slide-grades/<hash of the slide id>.json``), so that the worklist compares model and report grades without
loading a heatmap.

A record holds the share of tissue per class of the slide's class map (overlap-mean reconstruction, the viewer's
default) and which heatmap it came from. It is written, atomically, when a heatmap job finishes and whenever the slide
panel shows the grade; the slide's most recently computed heatmap wins (any overlap). A record whose model weights are
no longer the workspace's, or whose heatmap has left the cache, is not used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from core.cache import write_atomic
from core.heatmaps.overlay import grade_fractions
from core.heatmaps.slide_layers import SlideLayers
from core.workspace import Workspace

GRADE_METHOD = "overlap"
SLIDE_GRADES_DIR = "slide-grades"


@dataclass(frozen=True)
class StoredSlideGrade:
    slide_id: str
    model_id: str
    weights_sha256: str
    heatmap_key: str
    overlap: float
    class_fractions: dict[str, float]  # class -> share of the tissue in the class map


def _path(workspace: Workspace, slide_id: str) -> Path:
    name = hashlib.sha256(slide_id.encode()).hexdigest()[:32]  # any slide id, safely as a file name
    return workspace.cache_dir / SLIDE_GRADES_DIR / f"{name}.json"


def record_slide_grade(workspace: Workspace, layers: SlideLayers) -> StoredSlideGrade:
    """Store the class-map shares of this heatmap as its slide's grade record, and return it."""
    heat = layers.heat
    record = StoredSlideGrade(slide_id=heat.slide_id, model_id=heat.model_id, weights_sha256=heat.weights_sha256, heatmap_key=heat.key,
                              overlap=float(heat.params.overlap), class_fractions=grade_fractions(layers, GRADE_METHOD))
    path = _path(workspace, heat.slide_id)
    current = _read(path)
    if current != record:
        write_atomic(path, lambda fh: fh.write(json.dumps(asdict(record)).encode()))
    return record


def _read(path: Path) -> StoredSlideGrade | None:
    try:
        data = json.loads(path.read_text())
        return StoredSlideGrade(**{**data, "class_fractions": {str(k): float(v) for k, v in data["class_fractions"].items()}})
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # none yet, or damaged outside the program: computed again
        return None


def stored_slide_grades(workspace: Workspace, slide_ids: Iterable[str]) -> dict[str, StoredSlideGrade]:
    """Slide id -> its usable grade record, for the slides that have one."""
    weights = {m: workspace.manifest(m).weights_sha256 for m in workspace.models_for("patch")}
    found = {}
    for slide_id in slide_ids:
        record = _read(_path(workspace, slide_id))
        if (record is not None and record.slide_id == slide_id and weights.get(record.model_id) == record.weights_sha256
                and (workspace.cache_dir / "heatmaps" / f"{record.heatmap_key}.npz").is_file()):
            found[slide_id] = record
    return found
