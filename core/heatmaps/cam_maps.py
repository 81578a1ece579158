"""Slide-wide class activation maps stitched from patch maps: the ``cam`` layer kind (``cam:cam``, ``cam:gradcam``,
``cam:gradcam++``), whole-slide model work that a job computes and the workspace cache keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.errors import PathReviewError
from core.explain.cam import class_activation_maps
from core.heatmaps.layer_kind import LayerKind, Layers, Progress
from core.heatmaps.patch_inspection import read_heatmap_patches
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.slides.grid import CELLS_PER_PATCH
from core.slides.slide_stain import slide_input
from core.slides.stain import model_input
from core.workspace import Workspace

STITCHED_METHODS = ("cam", "gradcam", "gradcam++")
CAM_CACHE_FORMAT = 1
BATCH_SIZE = 64


def cam_cache_path(workspace: Workspace, heat: SlideHeatmap, method: str) -> Path:
    """Stored stitched map: keyed by the heatmap (slide, patch model weights, grid parameters), method and target layer."""
    key = content_key("stitched-cam", CAM_CACHE_FORMAT, heat.key, method, workspace.manifest(heat.model_id).cam_target_layer, CELLS_PER_PATCH)
    return explanation_path(workspace.cache_dir, "cam", key, ".npz")


def stitch_cam(workspace: Workspace, heat: SlideHeatmap, method: str = "gradcam", batch_size: int = BATCH_SIZE,
               progress: Progress | None = None) -> np.ndarray:
    """A raw (un-normalised) map on the heatmap's cell grid, computed and stored in the workspace cache. Each patch
    contributes its map of its most likely tumour class (4 x 4 cells, the target layer's resolution); overlapping
    patches are averaged."""
    model = workspace.model(heat.model_id)
    names = list(model.manifest.class_names)
    tumour = [i for i, n in enumerate(names) if n != "benign"] or list(range(len(names)))
    classes = torch.tensor(np.asarray(tumour)[heat.probs[:, tumour].argmax(1)]) if len(heat.probs) else torch.zeros(0, dtype=torch.long)
    batches: list[np.ndarray] = []
    reads = slide_input(workspace, heat.slide_id, model.manifest.input)
    for start in range(0, len(heat.origins), batch_size):
        idx = list(range(start, min(start + batch_size, len(heat.origins))))
        x = model_input(read_heatmap_patches(workspace, heat, idx), reads, model.device)  # as the model read them
        m = class_activation_maps(model.module, x, classes[idx].to(model.device), method, model.manifest.cam_target_layer)
        batches.append(torch.nn.functional.adaptive_avg_pool2d(m[:, None], CELLS_PER_PATCH)[:, 0].detach().cpu().numpy())
        if progress:
            progress(idx[-1] + 1, len(heat.origins))
    maps = np.concatenate(batches) if batches else np.zeros((0, CELLS_PER_PATCH, CELLS_PER_PATCH))
    sums = np.zeros(heat.cell_shape)
    counts = np.zeros(heat.cell_shape)
    rows, cols = heat.cell_index[:, 0], heat.cell_index[:, 1]
    for dr in range(CELLS_PER_PATCH):
        for dc in range(CELLS_PER_PATCH):
            r, c = rows + dr, cols + dc
            inside = (r < sums.shape[0]) & (c < sums.shape[1])
            np.add.at(sums, (r[inside], c[inside]), maps[inside, dr, dc])
            np.add.at(counts, (r[inside], c[inside]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stitched = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    save_arrays(cam_cache_path(workspace, heat, method), cam=stitched)
    return stitched


def _method(layers: Layers, variant: str) -> str:
    if variant not in STITCHED_METHODS:
        raise PathReviewError(f"a stitched CAM layer is one of {', '.join('cam:' + m for m in STITCHED_METHODS)}")
    return variant


def _stored(layers: Layers, method: str) -> np.ndarray | None:
    stored = load_arrays(cam_cache_path(layers.workspace, layers.heat, method))
    return None if stored is None else stored["cam"]


STITCHED_CAM = LayerKind(
    name="cam", background=True, variant=_method, stored=_stored,
    compute=lambda layers, method, progress: stitch_cam(layers.workspace, layers.heat, method, progress=progress),
)
