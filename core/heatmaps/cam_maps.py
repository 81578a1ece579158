"""Slide-wide class activation maps stitched from patch maps, and the localisation comparison of methods
against a ground-truth mask (Belharbi et al., Table 1: F1+, F1- and Dice, with the all-ones lower bound)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sqlalchemy import select

from core.cache import content_key, explanation_path, load_arrays, save_arrays
from core.explain.cam import class_activation_maps
from core.heatmaps.attention import mil_models_for, slide_attention
from core.heatmaps.groundtruth import TUMOUR_LABEL_MIN, mask_on_cells, read_label_mask, segmentation_scores
from core.heatmaps.overlay import ATTENTION_LAYER, OverlayStyle, layer_grid
from core.heatmaps.patch_inspection import read_heatmap_patches
from core.heatmaps.reconstruct import normalise_per_slide
from core.heatmaps.slide_heatmap import SlideHeatmap, compute_heatmap
from core.slides.grid import CELLS_PER_PATCH
from core.store.schema import Slide
from core.workspace import DEMO_BUILD_MARKER, Workspace

STITCHED_METHODS = ("cam", "gradcam", "gradcam++")
CAM_CACHE_FORMAT = 1


def cam_cache_path(workspace: Workspace, heat: SlideHeatmap, method: str):
    """Stored stitched map: keyed by the heatmap (slide, patch model weights, grid parameters), method and target layer."""
    key = content_key("stitched-cam", CAM_CACHE_FORMAT, heat.key, method, workspace.manifest(heat.model_id).cam_target_layer, CELLS_PER_PATCH)
    return explanation_path(workspace.cache_dir, "cam", key, ".npz")


def stitched_cam(workspace: Workspace, heat: SlideHeatmap, method: str = "gradcam", batch_size: int = 64,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """A raw (un-normalised) map on the heatmap's cell grid. Each patch contributes its map of its most likely
    tumour class (4 x 4 cells, the target layer's resolution); overlapping patches are averaged. Computed once per
    heatmap and method, then read from the workspace cache."""
    cache = heat.__dict__.setdefault("_cams", {})
    if method in cache:
        return cache[method]
    stored = load_arrays(cam_cache_path(workspace, heat, method))
    if stored is not None:
        cache[method] = stored["cam"]
        return cache[method]
    model = workspace.model(heat.model_id)
    names = list(model.manifest.class_names)
    tumour = [i for i, n in enumerate(names) if n != "benign"] or list(range(len(names)))
    classes = torch.tensor(np.asarray(tumour)[heat.probs[:, tumour].argmax(1)]) if len(heat.probs) else torch.zeros(0, dtype=torch.long)
    maps = []
    for start in range(0, len(heat.origins), batch_size):
        idx = list(range(start, min(start + batch_size, len(heat.origins))))
        x = torch.from_numpy(read_heatmap_patches(workspace, heat, idx)).permute(0, 3, 1, 2).float().div(255).to(model.device)
        m = class_activation_maps(model.module, x, classes[idx].to(model.device), method, model.manifest.cam_target_layer)
        maps.append(torch.nn.functional.adaptive_avg_pool2d(m[:, None], CELLS_PER_PATCH)[:, 0].detach().cpu().numpy())
        if progress:
            progress(idx[-1] + 1, len(heat.origins))
    maps = np.concatenate(maps) if maps else np.zeros((0, CELLS_PER_PATCH, CELLS_PER_PATCH))
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
    cache[method] = stitched
    return stitched


@dataclass
class MethodScores:
    method: str
    dice: float
    f1_foreground: float
    f1_background: float
    mask: np.ndarray  # thresholded map on the cell grid (tissue cells only)
    empty_truth: bool = False  # the slide's annotation has no tumour in its tissue
    predicted_fraction: float = 0.0  # share of the tissue marked as tumour


def localisation_maps(workspace: Workspace, heat: SlideHeatmap) -> dict[str, np.ndarray]:
    """Every method's tumour map on the cell grid, in [0, 1] (normalised per slide where raw scores are not probabilities)."""
    maps = {"patch classifier": layer_grid(heat, OverlayStyle())}
    labels = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
    for method in STITCHED_METHODS:
        maps[labels[method]] = normalise_per_slide(np.where(heat.tissue, stitched_cam(workspace, heat, method), np.nan), "minmax")
    if heat.embeddings is not None and mil_models_for(workspace, heat):
        slide_attention(workspace, heat)
        maps["MIL attention"] = layer_grid(heat, OverlayStyle(layer=ATTENTION_LAYER))
    return maps


def compare_methods(workspace: Workspace, heat: SlideHeatmap, labels: np.ndarray, mask_um_per_px: float,
                    threshold: float = 0.5) -> list[MethodScores]:
    """F1+, F1- and Dice of each method's thresholded map and of the all-ones bound, over tissue cells only (as
    Belharbi et al. score within the image, and the image is the tissue, not the glass around it)."""
    true = mask_on_cells(labels, mask_um_per_px, heat.cell_um, heat.cell_shape) >= TUMOUR_LABEL_MIN
    tissue = heat.tissue.astype(bool)
    grids = {**localisation_maps(workspace, heat), "all-ones (lower bound)": np.ones(tissue.shape)}
    rows = []
    for name, grid in grids.items():
        pred = (np.nan_to_num(grid, nan=0.0) >= threshold) & tissue
        s = segmentation_scores(pred, true, within=tissue)
        rows.append(MethodScores(name, s.dice, s.f1_foreground, s.f1_background, pred, s.empty_truth, s.predicted_fraction))
    return rows


def comparison_slides(workspace: Workspace) -> list:
    """Slides with a ground-truth mask; for the demo, only those of its held-out patients."""
    marker = workspace.root / DEMO_BUILD_MARKER
    held_out = set(json.loads(marker.read_text())["held_out_patients"]) if marker.is_file() else None
    with workspace.store.session() as s:
        slides = list(s.scalars(select(Slide).where(Slide.mask_file.is_not(None)).order_by(Slide.id)))
    return [sl for sl in slides if held_out is None or sl.patient_id in held_out]


def mean_scores(rows: list[MethodScores]) -> dict[str, float]:
    """One method's scores over slides: F1+, F1- and Dice averaged over slides with tumour in their annotation; slides
    without tumour (where Dice has nothing to agree on) are counted apart, with their F1- and the tissue share marked."""
    tumour = [r for r in rows if not r.empty_truth]
    benign = [r for r in rows if r.empty_truth]
    def mean(values: list[float]) -> float:  # over slides where the score is defined
        defined = [v for v in values if not np.isnan(v)]
        return float(np.mean(defined)) if defined else float("nan")

    return {"F1+": mean([r.f1_foreground for r in tumour]), "F1-": mean([r.f1_background for r in tumour]),
            "Dice": mean([r.dice for r in tumour]), "slides": len(tumour), "benign slides": len(benign),
            "benign F1-": mean([r.f1_background for r in benign]), "benign marked": mean([r.predicted_fraction for r in benign])}


def cohort_comparison(workspace: Workspace, patch_model_id: str, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Per method, ``mean_scores`` over the comparison slides (heatmaps computed where missing)."""
    totals: dict[str, list[MethodScores]] = {}
    for slide in comparison_slides(workspace):
        heat = compute_heatmap(workspace, slide.id, patch_model_id)
        for row in compare_methods(workspace, heat, read_label_mask(workspace.slides_dir / slide.mask_file), slide.mask_mpp, threshold):
            totals.setdefault(row.method, []).append(row)
    return {m: mean_scores(rows) for m, rows in totals.items()}
