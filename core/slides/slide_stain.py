"""A slide's own stains, estimated once from an even sample of its tissue patches at the model's resolution: what a
model whose manifest declares ``stain_fit = "slide"`` normalises every patch and tile of that slide with.

The method is the manifest's (Macenko or Reinhard, ``core/slides/stain.py``) with the slide as the one image it
fits: the sampled patches are tiled into one image and fitted as the reference fits an image. Each patch is then
rebuilt from that estimate, not its own, so one colour maps to one colour everywhere on the slide: a patch of stroma
with a few nuclei is mapped as the slide's tumour is, and tiles join without seams. A slide whose sample holds too
little stain to estimate (glass, or tissue paler than Macenko's transparency threshold) passes through unchanged,
as an unstained patch does under the per-patch fit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from core.cache import content_key, write_atomic
from core.errors import PathReviewError
from core.models.manifest import InputSpec, StainNormalisation, StainTarget
from core.slides.grid import patch_grid
from core.slides.patches import read_patches
from core.slides.reader import SlideReadError, slide_fingerprint
from core.slides.stain import fit_macenko, fit_reinhard
from core.slides.tissue import slide_tissue
from core.store.cases import slide_record
from core.workspace import Workspace

SAMPLE_PATCHES = 256  # at 224 px, 12.8 million pixels in the tiled image: a few seconds on the CPU, once per slide
CACHE_FORMAT = 1
NOT_ESTIMATED = StainTarget()  # the bound source of a slide with too little stain: its patches pass through unchanged


def sample_indices(n: int, k: int = SAMPLE_PATCHES) -> np.ndarray:
    """Up to ``k`` of ``n`` patches in grid order, evenly spaced (so from all over the tissue), the same every time."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def estimate_stain(patches: np.ndarray, method: StainNormalisation) -> StainTarget:
    """The stains of uint8 (n, px, px, 3) patches tiled into one image, as ``method`` fits a target; ``NOT_ESTIMATED``
    when they hold too little stain."""
    if len(patches) == 0:
        return NOT_ESTIMATED
    mosaic = torch.from_numpy(np.ascontiguousarray(patches).reshape(-1, patches.shape[2], 3))
    if method == "macenko":
        try:
            matrix, max_c = fit_macenko(mosaic)
        except ValueError:  # too few stained pixels
            return NOT_ESTIMATED
        return StainTarget(stain_matrix=matrix, max_concentrations=max_c)
    if method == "reinhard":
        means, stds = fit_reinhard(mosaic)
        return StainTarget(lab_means=means, lab_stds=stds)
    raise ValueError(f"no stain to estimate for normalisation {method!r}")


def tissue_sample(path: Path, slide_mpp: float, patch_px: int, patch_mpp: float) -> np.ndarray:
    """The sampled tissue patches of a slide: its grid of patches with at least 20 % tissue (no overlap), as the
    heatmap's, read at the model's resolution."""
    (width, height), tissue = slide_tissue(path, slide_mpp)
    grid = patch_grid(width, height, slide_mpp, patch_px, patch_mpp, tissue)
    return read_patches(path, grid, sample_indices(len(grid)))


def estimate_slide_stain(path: Path, slide_mpp: float, spec: InputSpec) -> StainTarget:
    """The slide's stains as ``spec`` (its method, patch size and microns per pixel) estimates them."""
    if not spec.patch_size_px or not spec.mpp:
        raise PathReviewError("a per-slide stain estimate needs the model's patch size and microns per pixel")
    return estimate_stain(tissue_sample(path, slide_mpp, spec.patch_size_px, spec.mpp), spec.stain_normalisation)


def bound_to_slide(spec: InputSpec, source: StainTarget) -> InputSpec:
    """``spec`` reading one slide whose stains are ``source``."""
    return spec.model_copy(update={"stain_source": source})


_ESTIMATES: dict[tuple, StainTarget] = {}
_LOCK = threading.Lock()


def slide_input(workspace: Workspace, slide_id: str, spec: InputSpec) -> InputSpec:
    """``spec`` as it reads this slide: bound to the slide's stains when it declares a per-slide fit, itself otherwise.
    The estimate is stored in the workspace cache, keyed by the slide file's content and the model's method and
    resolution, and kept in memory while the file is unchanged."""
    if spec.stain_normalisation == "none" or spec.stain_fit != "slide":
        return spec
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        path, mpp = workspace.slides_dir / record.file, record.mpp
    try:
        stat = path.stat()
    except OSError as exc:
        raise SlideReadError(f"slide file {path.name} is missing from the workspace") from exc
    settings = (spec.stain_normalisation, spec.patch_size_px, spec.mpp, SAMPLE_PATCHES)
    memory_key = (str(path), stat.st_size, stat.st_mtime_ns, *settings)
    with _LOCK:
        known = _ESTIMATES.get(memory_key)
    if known is None:
        stored = workspace.cache_dir / "stain" / f"{content_key(CACHE_FORMAT, slide_fingerprint(path), *settings)}.json"
        try:
            known = StainTarget.model_validate_json(stored.read_text())
        except (OSError, ValueError):  # not estimated yet, or damaged outside the program: estimate again
            known = estimate_slide_stain(path, mpp, spec)
            write_atomic(stored, lambda fh: fh.write(json.dumps(known.model_dump()).encode()))
        with _LOCK:
            _ESTIMATES[memory_key] = known
    return bound_to_slide(spec, known)
