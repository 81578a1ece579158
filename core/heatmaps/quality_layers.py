"""A slide's quality control as heatmap layers: the patch measures (``quality``), one map per flag
(``quality-map:blur`` ... ``quality-map:any``), and the reconstructions and class map without the flagged patches
(``kept-reconstruction:<method>``, ``kept-class-map:<method>``) behind the viewer's "exclude QC-flagged patches".

The measures are computed in the heatmap's own pass over the slide and stored beside it (``compute_heatmap``); a
heatmap stored before that has them computed by a job, which reads its patches again. Flags follow
``core/slides/quality.py`` with the default thresholds; the stain-outlier flag compares with the training stain
statistics in the patch model's manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.device import compute_device
from core.errors import PathReviewError
from core.heatmaps.attention import bag_prediction
from core.heatmaps.layer_kind import LayerKind, Layers, Progress
from core.heatmaps.patch_inspection import read_heatmap_patches
from core.heatmaps.reconstruct import class_area_fractions, reconstruct_bilinear, reconstruct_overlap_mean, tissue_argmax
from core.heatmaps.slide_heatmap import METHODS, SlideHeatmap
from core.slides.grid import CELLS_PER_PATCH
from core.slides.quality import (
    FLAGS,
    PatchQuality,
    QualityThresholds,
    load_quality,
    measure_patches,
    quality_cache_path,
    save_quality,
)
from core.store.cases import slide_record
from core.store.schema import SlideQuality, utc_now
from core.workspace import Workspace

ANY_FLAG = "any"
BATCH_SIZE = 128


@dataclass(frozen=True)
class QualitySummary:
    """Per flag: patches flagged and the share of tissue they cover; ``excluded``: patches with any flag."""

    flagged: dict[str, int]
    tissue_fraction: dict[str, float]
    excluded: int
    total: int


def measure_slide(workspace: Workspace, heat: SlideHeatmap, progress: Progress | None = None) -> PatchQuality:
    """The measures of every patch of a stored heatmap, reading its patches again (for heatmaps stored without them)."""
    device = compute_device()
    metrics, vectors = [], []
    for start in range(0, len(heat.origins), BATCH_SIZE):
        idx = list(range(start, min(start + BATCH_SIZE, len(heat.origins))))
        measured = measure_patches(read_heatmap_patches(workspace, heat, idx), device)
        metrics.append(measured.metrics)
        vectors.append(measured.stain_vectors)
        if progress:
            progress(idx[-1] + 1, len(heat.origins))
    quality = PatchQuality(np.concatenate(metrics) if metrics else np.zeros((0, 3)), np.concatenate(vectors) if vectors else np.zeros((0, 6)))
    save_quality(quality_cache_path(workspace.cache_dir, heat.key), quality)
    record_slide_quality(workspace, heat, quality)
    return quality


def flags_of(workspace: Workspace, heat: SlideHeatmap, quality: PatchQuality) -> dict[str, np.ndarray]:
    """(N,) bool per flag and ``any``, with the patch model's training stain statistics."""
    statistics = workspace.manifest(heat.model_id).input.stain_statistics
    flags = quality.flags(QualityThresholds(), statistics)
    flags[ANY_FLAG] = np.logical_or.reduce([flags[f] for f in FLAGS]) if len(quality.metrics) else np.zeros(0, bool)
    return flags


def patch_flags(layers: Layers, quality: PatchQuality) -> dict[str, np.ndarray]:
    return flags_of(layers.workspace, layers.heat, quality)


def flag_cells(heat: SlideHeatmap, flagged: np.ndarray) -> np.ndarray:
    """(rows, cols) share of the patches over each cell that carry a flag (NaN where no patch lies)."""
    return reconstruct_overlap_mean(flagged[:, None].astype(np.float32), heat.cell_index, CELLS_PER_PATCH, heat.cell_shape)[0]


def summarise_quality(workspace: Workspace, heat: SlideHeatmap, quality: PatchQuality) -> QualitySummary:
    """Flag counts and the share of tissue cells each covers (a cell counts when most patches over it are flagged)."""
    flags = flags_of(workspace, heat, quality)
    n_tissue = max(int(heat.tissue.sum()), 1)
    fractions = {flag: float((np.nan_to_num(flag_cells(heat, flags[flag])) >= 0.5)[heat.tissue].sum() / n_tissue)
                 for flag in (*FLAGS, ANY_FLAG)}
    return QualitySummary({f: int(flags[f].sum()) for f in FLAGS}, fractions, int(flags[ANY_FLAG].sum()), len(quality.metrics))


def record_slide_quality(workspace: Workspace, heat: SlideHeatmap, quality: PatchQuality) -> QualitySummary:
    """Keep the slide's QC summary in the case database (the cohort worklist's QC column and filter read it)."""
    summary = summarise_quality(workspace, heat, quality)
    worst = max(FLAGS, key=lambda f: summary.tissue_fraction[f])
    fraction = summary.tissue_fraction[worst]
    with workspace.store.session() as s:
        patient_id = slide_record(s, heat.slide_id).patient_id
        row = s.get(SlideQuality, heat.key) or SlideQuality(heatmap_key=heat.key)
        row.slide_id, row.patient_id, row.model_id = heat.slide_id, patient_id, heat.model_id
        row.worst_flag, row.worst_fraction = (worst, fraction) if fraction > 0 else ("", 0.0)
        row.fractions = {f: summary.tissue_fraction[f] for f in FLAGS}
        row.computed_at = utc_now()
        s.merge(row)
    return summary


def _flag_variant(layers: Layers, variant: str) -> str:
    if variant not in (*FLAGS, ANY_FLAG):
        raise PathReviewError(f"a quality layer is one of {', '.join('quality-map:' + f for f in (*FLAGS, ANY_FLAG))}")
    return variant


def _method_variant(layers: Layers, variant: str) -> str:
    if variant not in METHODS:
        raise PathReviewError(f"reconstruction method must be one of {', '.join(METHODS)}")
    return variant


def _no_variant(layers: Layers, variant: str) -> str:
    if variant:
        raise PathReviewError("the quality layer has no variants")
    return variant


def _stored_quality(layers: Layers) -> PatchQuality | None:
    return load_quality(quality_cache_path(layers.workspace.cache_dir, layers.heat.key))


def _flag_map(layers: Layers, quality: PatchQuality, flag: str) -> np.ndarray:
    return flag_cells(layers.heat, patch_flags(layers, quality)[flag])


def _kept_reconstruction(layers: Layers, quality: PatchQuality, method: str) -> np.ndarray:
    """(C, rows, cols) class probability maps from the patches without a flag only."""
    h = layers.heat
    keep = ~patch_flags(layers, quality)[ANY_FLAG]
    if method == "overlap":
        return reconstruct_overlap_mean(h.probs[keep], h.cell_index[keep], CELLS_PER_PATCH, h.cell_shape)
    return reconstruct_bilinear(h.probs[keep], h.cell_index[keep], CELLS_PER_PATCH, h.stride_cells, h.cell_shape)


def _from_quality(build: Callable[[Layers, PatchQuality, str], Any]) -> tuple[Callable[[Layers, str], Any], Callable[[Layers, str, Progress | None], Any]]:
    """``stored`` and ``compute`` of a kind derived from the measures: stored once they are, computed by the job."""

    def stored(layers: Layers, variant: str) -> Any:
        quality = _stored_quality(layers)
        return None if quality is None else build(layers, quality, variant)

    def compute(layers: Layers, variant: str, progress: Progress | None) -> Any:
        quality = _stored_quality(layers) or measure_slide(layers.workspace, layers.heat, progress)
        return build(layers, quality, variant)

    return stored, compute


_quality_stored, _quality_compute = _from_quality(lambda layers, quality, variant: quality)
_map_stored, _map_compute = _from_quality(lambda layers, quality, flag: _flag_map(layers, quality, flag))
_kept_stored, _kept_compute = _from_quality(_kept_reconstruction)
_kept_map_stored, _kept_map_compute = _from_quality(
    lambda layers, quality, method: tissue_argmax(_kept_reconstruction(layers, quality, method), layers.heat.tissue))

QUALITY = LayerKind("quality", background=True, variant=_no_variant, stored=_quality_stored, compute=_quality_compute)
QUALITY_MAP = LayerKind("quality-map", background=True, variant=_flag_variant, stored=_map_stored, compute=_map_compute)
KEPT_RECONSTRUCTION = LayerKind("kept-reconstruction", background=True, variant=_method_variant, stored=_kept_stored, compute=_kept_compute)
# (rows, cols) class index per tissue cell from the kept patches (-1 elsewhere).
KEPT_CLASS_MAP = LayerKind("kept-class-map", background=True, variant=_method_variant, stored=_kept_map_stored, compute=_kept_map_compute)
QUALITY_KINDS = (QUALITY, QUALITY_MAP, KEPT_RECONSTRUCTION, KEPT_CLASS_MAP)


def quality_summary(layers: Layers) -> QualitySummary | None:
    """The slide's QC summary (``summarise_quality``); None until the measures are stored."""
    if not layers.ready("quality"):
        return None
    return summarise_quality(layers.workspace, layers.heat, layers.get("quality"))


def kept_grade_fractions(layers: Layers, method: str = "overlap") -> dict[str, float]:
    """Share of the tissue area per class from the class map of the patches without a QC flag."""
    names = layers.heat.class_names
    return dict(zip(names, class_area_fractions(layers.get(f"kept-class-map:{method}"), len(names)).round(4).tolist(), strict=True))


def kept_mil_probability(layers: Layers, model_id: str) -> float:
    """MIL head ``model_id``'s positive-class probability for the slide's bag without the QC-flagged patches."""
    heat = layers.heat
    if heat.embeddings is None:
        raise PathReviewError("this heatmap has no patch embeddings; recompute it to see the MIL prediction")
    keep = ~patch_flags(layers, layers.get("quality"))[ANY_FLAG]
    if not keep.any():
        raise PathReviewError("every patch of this slide carries a QC flag; there is nothing left for the MIL prediction")
    return bag_prediction(layers.workspace.model(model_id), heat.embeddings[keep]).probability
