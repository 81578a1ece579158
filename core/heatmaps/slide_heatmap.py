"""A slide's patch predictions for one model, cached on disk by content hash (its derived layers: ``slide_layers``)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.cache import write_atomic
from core.errors import PathReviewError
from core.heatmaps.inference import ProgressFn, predict_slide
from core.models.manifest import InputSpec, ModelManifest
from core.slides.grid import CELLS_PER_PATCH, patch_grid
from core.slides.quality import QualityAccumulator, quality_cache_path, save_quality
from core.slides.reader import slide_fingerprint
from core.slides.slide_stain import slide_input
from core.slides.tissue import slide_tissue
from core.store.cases import slide_record
from core.workspace import Workspace

CACHE_FORMAT = 2
METHODS = ("overlap", "bilinear")
log = logging.getLogger(__name__)
OVERLAPS = (0.0, 0.5, 0.75)  # the patch overlaps the app offers
STALE_PART_SECONDS = 3600  # a temporary file this old was left by a job that was killed


@dataclass(frozen=True)
class HeatmapParams:
    overlap: float = 0.0
    min_tissue: float = 0.2


@dataclass
class SlideHeatmap:
    key: str
    slide_id: str
    model_id: str
    weights_sha256: str
    params: HeatmapParams
    class_names: list[str]
    cell_level0: float  # cell side in level-0 pixels
    cell_shape: tuple[int, int]
    stride_cells: int
    slide_mpp: float
    slide_size: tuple[int, int]
    origins: np.ndarray  # (N, 2) level-0 top-left of each patch
    cell_index: np.ndarray  # (N, 2)
    probs: np.ndarray  # (N, C)
    tissue: np.ndarray  # (rows, cols) bool, tissue mask on the cell grid
    embeddings: np.ndarray | None = None  # (N, D) patch embeddings, the input of MIL heads
    notices: list[str] = field(default_factory=list)  # how it was computed, when the user should know (e.g. on the CPU after GPU OOM)

    @property
    def cell_um(self) -> float:
        return self.cell_level0 * self.slide_mpp

    def patch_at(self, x0: float, y0: float) -> int | None:
        """Index of the patch whose area holds level-0 point (x0, y0), nearest centre first."""
        size0 = self.cell_level0 * CELLS_PER_PATCH
        inside = ((self.origins[:, 0] <= x0) & (x0 < self.origins[:, 0] + size0)
                  & (self.origins[:, 1] <= y0) & (y0 < self.origins[:, 1] + size0))
        if not inside.any():
            return None
        idx = np.flatnonzero(inside)
        centres = self.origins[idx] + size0 / 2
        return int(idx[np.argmin(((centres - (x0, y0)) ** 2).sum(1))])


def heatmap_key(slide_path: Path, weights_sha256: str, params: HeatmapParams, input_spec: InputSpec | None = None) -> str:
    return _key(slide_fingerprint(slide_path), weights_sha256, params, input_spec)


def _key(fingerprint: str, weights_sha256: str, params: HeatmapParams, input_spec: InputSpec | None = None) -> str:
    """The content key of a heatmap: slide file, weights, grid parameters and, when the model normalises stain, its
    declared normalisation and target (a manifest edited to another target is another heatmap)."""
    content: dict[str, Any] = {"format": CACHE_FORMAT, "slide": fingerprint, "weights": weights_sha256, "params": asdict(params)}
    if input_spec is not None and input_spec.stain_normalisation != "none":
        content["stain"] = {"method": input_spec.stain_normalisation, "target": input_spec.stain_target.model_dump()}
        if input_spec.stain_fit != "patch":  # the slide's estimate follows from the slide file, which the key holds
            content["stain"]["fit"] = input_spec.stain_fit
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def checked_heatmap_key(key: object) -> str:
    """A heatmap key as ``heatmap_key`` makes it (32 hex digits); anything else, e.g. a path from a hand-made request,
    is refused before it names a file."""
    if not isinstance(key, str) or len(key) != 32 or any(c not in "0123456789abcdef" for c in key):
        raise PathReviewError("not a heatmap key: recompute the heatmap")
    return key


def _cache_path(workspace: Workspace, key: str) -> Path:
    key = checked_heatmap_key(key)
    return workspace.cache_dir / "heatmaps" / f"{key}.npz"


def _save(path: Path, h: SlideHeatmap) -> None:
    """Atomic: written to a temporary name, then renamed. A killed job leaves no file that loads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "slide_id": h.slide_id, "model_id": h.model_id, "weights_sha256": h.weights_sha256, "params": asdict(h.params),
        "class_names": h.class_names, "cell_level0": h.cell_level0, "cell_shape": list(h.cell_shape),
        "stride_cells": h.stride_cells, "slide_mpp": h.slide_mpp, "slide_size": list(h.slide_size), "notices": list(h.notices),
    }
    extra: dict[str, Any] = {} if h.embeddings is None else {"embeddings": h.embeddings}
    # A unique temporary name: two workers computing the same heatmap (a redelivered task) never write one file.
    write_atomic(path, lambda fh: np.savez(fh, allow_pickle=False, origins=h.origins, cell_index=h.cell_index, probs=h.probs, tissue=h.tissue,
                                           meta=np.array(json.dumps(meta)), **extra))


_LOADED: dict[str, SlideHeatmap] = {}
_LOADED_LOCK = threading.Lock()
_MAX_LOADED = 32


def _load(path: Path, key: str) -> SlideHeatmap | None:
    """The heatmap stored at ``path``; kept in memory by path (one process may serve several workspace copies)."""
    if not path.is_file():
        with _LOADED_LOCK:
            _LOADED.pop(str(path), None)  # removed from the cache folder: forget it here too
        return None
    with _LOADED_LOCK:
        if str(path) in _LOADED:
            return _LOADED[str(path)]
    try:
        h = _read(path, key)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # damaged outside the program: recompute
        log.warning("heatmap cache %s is unreadable (%s); it will be computed again", path.name, exc)
        return None
    with _LOADED_LOCK:
        if len(_LOADED) >= _MAX_LOADED:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[str(path)] = h
    return h


def _read(path: Path, key: str) -> SlideHeatmap:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return SlideHeatmap(
            key=key, slide_id=meta["slide_id"], model_id=meta["model_id"], weights_sha256=meta["weights_sha256"],
            params=HeatmapParams(**meta["params"]), class_names=meta["class_names"], cell_level0=meta["cell_level0"],
            cell_shape=tuple(meta["cell_shape"]), stride_cells=meta["stride_cells"], slide_mpp=meta["slide_mpp"],
            slide_size=tuple(meta["slide_size"]), origins=data["origins"], cell_index=data["cell_index"],
            probs=data["probs"], tissue=data["tissue"], embeddings=data["embeddings"] if "embeddings" in data.files else None,
            notices=list(meta.get("notices", [])),
        )


def sweep_stale_parts(folder: Path, max_age_s: float = STALE_PART_SECONDS) -> int:
    """Remove ``*.part`` files older than ``max_age_s`` (left by killed jobs; never read as results). Returns how many."""
    removed, cutoff = 0, time.time() - max_age_s
    for part in folder.glob("*.part") if folder.is_dir() else ():
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
        except FileNotFoundError:  # another process swept it first
            continue
    return removed


def loaded_heatmap(workspace: Workspace, key: str) -> SlideHeatmap | None:
    """A stored heatmap by its content key (as used in overlay tile URLs)."""
    return _load(_cache_path(workspace, key), key)


def slide_heatmap_by_key(workspace: Workspace, key: str | None, slide_id: str | None) -> SlideHeatmap | None:
    """The stored heatmap with this key when it belongs to this slide: a key a page holds may be stale (another slide
    was shown since) or forged."""
    heat = loaded_heatmap(workspace, key) if key and slide_id else None
    return heat if heat is not None and heat.slide_id == slide_id else None


def _slide_and_model(workspace: Workspace, slide_id: str, model_id: str) -> tuple[Path, float, ModelManifest]:
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path, mpp = workspace.slides_dir / record.file, record.mpp
    manifest = workspace.manifest(model_id)
    if manifest.task != "patch":
        raise PathReviewError(f"model {model_id} is a {manifest.task} model; heatmaps need a patch model")
    if not manifest.input.patch_size_px or not manifest.input.mpp:
        raise PathReviewError(f"model {model_id} does not declare its patch size and microns per pixel")
    return path, mpp, manifest


def cached_heatmap(workspace: Workspace, slide_id: str, model_id: str, params: HeatmapParams = HeatmapParams()) -> SlideHeatmap | None:
    """The stored heatmap for these inputs, or None when it has not been computed."""
    path, _, manifest = _slide_and_model(workspace, slide_id, model_id)
    if not path.is_file():
        return None
    key = heatmap_key(path, manifest.weights_sha256, params, manifest.input)
    return _load(_cache_path(workspace, key), key)


def latest_cached_heatmap(workspace: Workspace, slide_id: str, model_id: str, overlaps: tuple[float, ...] = OVERLAPS) -> SlideHeatmap | None:
    """The most recently stored heatmap of the slide and model over these overlaps (default tissue threshold), or None."""
    path, _, manifest = _slide_and_model(workspace, slide_id, model_id)
    if not path.is_file():
        return None
    fingerprint = slide_fingerprint(path)  # read once for every overlap
    stored = []
    for overlap in overlaps:
        key = _key(fingerprint, manifest.weights_sha256, HeatmapParams(overlap=overlap), manifest.input)
        if (cache := _cache_path(workspace, key)).is_file():
            stored.append((cache.stat().st_mtime_ns, key, cache))
    for _, key, cache in sorted(stored, reverse=True):
        if (heat := _load(cache, key)) is not None:
            return heat
    return None


def compute_heatmap(
    workspace: Workspace, slide_id: str, model_id: str, params: HeatmapParams = HeatmapParams(),
    progress: ProgressFn | None = None, cancel: threading.Event | None = None, batch_size: int = 128, workers: int = 2,
) -> SlideHeatmap:
    """Patch inference over the slide's tissue and storage of the result; returns the cached one when present."""
    existing = cached_heatmap(workspace, slide_id, model_id, params)
    if existing is not None:
        return existing
    path, mpp, manifest = _slide_and_model(workspace, slide_id, model_id)
    (width, height), tissue = slide_tissue(path, mpp)  # first: a missing or unreadable file is a SlideReadError a person can act on
    key = heatmap_key(path, manifest.weights_sha256, params, manifest.input)
    sweep_stale_parts(_cache_path(workspace, key).parent)
    grid = patch_grid(width, height, mpp, *manifest.patch_geometry(), tissue, params.overlap, params.min_tissue)
    model = workspace.model(model_id)
    notices: list[str] = []
    quality = QualityAccumulator(len(grid))  # quality control shares the pass over the slide's patches
    probs, embeddings = predict_slide(path, grid, model.module, model.device, batch_size, workers, progress, cancel, with_embeddings=True,
                                      notices=notices, input_spec=slide_input(workspace, slide_id, manifest.input), observe=quality)
    if len(grid) == 0:
        probs = np.zeros((0, len(manifest.class_names)), np.float32)
    rows, cols = grid.cell_shape
    cell_um = grid.cell_level0 * mpp
    # Tissue on the cell grid: the mask sampled at each cell centre.
    rr = np.minimum(((np.arange(rows) + 0.5) * cell_um / tissue.um_per_px).astype(int), tissue.mask.shape[0] - 1)
    cc = np.minimum(((np.arange(cols) + 0.5) * cell_um / tissue.um_per_px).astype(int), tissue.mask.shape[1] - 1)
    heatmap = SlideHeatmap(
        key=key, slide_id=slide_id, model_id=model_id, weights_sha256=manifest.weights_sha256, params=params,
        class_names=list(manifest.class_names), cell_level0=grid.cell_level0, cell_shape=(rows, cols),
        stride_cells=grid.stride_cells, slide_mpp=mpp, slide_size=(width, height), origins=grid.origins,
        cell_index=grid.cell_index, probs=probs, tissue=tissue.mask[np.ix_(rr, cc)], embeddings=embeddings, notices=notices,
    )
    save_quality(quality_cache_path(workspace.cache_dir, key), quality.result())  # before the heatmap: whoever loads it finds both
    _save(_cache_path(workspace, key), heatmap)
    loaded = _load(_cache_path(workspace, key), key)  # the shared in-memory copy, as loaded_heatmap returns it
    return heatmap if loaded is None else loaded
