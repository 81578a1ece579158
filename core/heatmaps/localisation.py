"""The localisation comparison of methods against a ground-truth mask (Belharbi et al., Table 1: F1+, F1- and Dice,
with the all-ones lower bound)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from core.heatmaps.attention import mil_models_for
from core.heatmaps.cam_maps import STITCHED_METHODS
from core.heatmaps.groundtruth import TUMOUR_LABEL_MIN, mask_on_cells, read_label_mask, segmentation_scores
from core.heatmaps.overlay import ATTENTION_LAYER, OverlayStyle, layer_grid
from core.heatmaps.reconstruct import normalise_per_slide
from core.heatmaps.slide_heatmap import SlideHeatmap, compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.store.schema import Slide
from core.workspace import DEMO_BUILD_MARKER, Workspace


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
    """Every method's tumour map on the cell grid, in [0, 1] (normalised per slide where raw scores are not probabilities);
    stitched CAMs and attention are computed here when no job has stored them yet."""
    layers = slide_layers(workspace, heat)
    maps = {"patch classifier": layer_grid(layers, OverlayStyle())}
    labels = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
    for method in STITCHED_METHODS:
        maps[labels[method]] = normalise_per_slide(np.where(heat.tissue, layers.compute(f"cam:{method}"), np.nan), "minmax")
    if heat.embeddings is not None and mil_models_for(workspace, heat):
        layers.compute(ATTENTION_LAYER)
        maps["MIL attention"] = layer_grid(layers, OverlayStyle(layer=ATTENTION_LAYER))
    return maps


def compare_methods(workspace: Workspace, heat: SlideHeatmap, labels: np.ndarray, mask_um_per_px: float,
                    threshold: float = 0.5) -> list[MethodScores]:
    """F1+, F1- and Dice of each method's thresholded map and of the all-ones bound, over tissue cells only (as
    Belharbi et al. score within the image, and the image is the tissue, not the glass around it)."""
    return compare_methods_on_cells(workspace, heat, mask_on_cells(labels, mask_um_per_px, heat.cell_um, heat.cell_shape) >= TUMOUR_LABEL_MIN,
                                    threshold)


def compare_methods_on_cells(workspace: Workspace, heat: SlideHeatmap, true: np.ndarray, threshold: float = 0.5) -> list[MethodScores]:
    """``compare_methods`` against a ground truth already on the heatmap's cell grid (a mask resampled, or reviewers'
    tumour regions rasterised by ``core.annotations.ground_truth``)."""
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
