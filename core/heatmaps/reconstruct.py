"""Slide maps from patch predictions, on a grid of cells (4 x 4 cells per patch).

(a) ``reconstruct_overlap_mean``: every cell of a patch gets the patch's scores; overlapping
    patches are averaged with a count map (thesis ch. 5; TIAToolbox / CLAM).
(b) ``reconstruct_bilinear``: each cell's scores are bilinearly interpolated from the nearest
    patch centres (thesis ch. 2 and 4).
Cells no patch informs are NaN. Both return (classes, rows, cols) float32 grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class OverlapSums:
    """Per-class score sums and the count map: what is stored, never a full-resolution canvas."""

    sums: np.ndarray  # (C, rows, cols)
    counts: np.ndarray  # (rows, cols)

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan).astype(np.float32)


def overlap_sums(scores: np.ndarray, cell_index: np.ndarray, cells_per_patch: int, shape: tuple[int, int]) -> OverlapSums:
    """Accumulate (N, C) patch scores onto a cell grid; patch i covers a k x k block from ``cell_index[i]``."""
    n_classes = scores.shape[1]
    sums = np.zeros((n_classes, *shape), np.float64)
    counts = np.zeros(shape, np.int32)
    k = cells_per_patch
    for dr in range(k):
        for dc in range(k):
            r, c = cell_index[:, 0] + dr, cell_index[:, 1] + dc
            inside = (r < shape[0]) & (c < shape[1])
            np.add.at(counts, (r[inside], c[inside]), 1)
            for cls in range(n_classes):
                np.add.at(sums[cls], (r[inside], c[inside]), scores[inside, cls])
    return OverlapSums(sums, counts)


def reconstruct_overlap_mean(scores: np.ndarray, cell_index: np.ndarray, cells_per_patch: int, shape: tuple[int, int]) -> np.ndarray:
    return overlap_sums(scores, cell_index, cells_per_patch, shape).mean()


def reconstruct_bilinear(
    scores: np.ndarray, cell_index: np.ndarray, cells_per_patch: int, stride_cells: int, shape: tuple[int, int]
) -> np.ndarray:
    """Bilinear interpolation between patch centres, with missing patches left out of the weights
    (normalised convolution); cells beyond the outermost centres take the nearest centre's value."""
    n_classes = scores.shape[1]
    stride_index = cell_index // stride_cells
    rows, cols = stride_index.max(0) + 1 if len(stride_index) else (0, 0)
    values = np.zeros((n_classes, rows, cols), np.float64)
    known = np.zeros((rows, cols), np.float64)
    values[:, stride_index[:, 0], stride_index[:, 1]] = scores.T
    known[stride_index[:, 0], stride_index[:, 1]] = 1.0
    # Cell centre (i + 0.5) in cell units; patch centre j lies at j * stride + k / 2.
    centre = cells_per_patch / 2
    rr = (np.arange(shape[0]) + 0.5 - centre) / stride_cells
    cc = (np.arange(shape[1]) + 0.5 - centre) / stride_cells
    coords = np.stack(np.meshgrid(rr, cc, indexing="ij"))
    out = np.full((n_classes, *shape), np.nan, np.float32)
    if rows == 0:
        return out
    weight = ndimage.map_coordinates(known, coords, order=1, mode="nearest")
    have = weight > 1e-6
    for cls in range(n_classes):
        num = ndimage.map_coordinates(values[cls] * known, coords, order=1, mode="nearest")
        out[cls][have] = (num[have] / weight[have]).astype(np.float32)
    return out


NORMALISATIONS = ("raw", "minmax", "percentile")


def normalise_per_slide(grid: np.ndarray, how: str = "raw", low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Normalise a (rows, cols) map over the whole slide (never per patch); NaN stays NaN."""
    if how not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
    if how == "raw":
        return grid
    finite = grid[np.isfinite(grid)]
    if finite.size == 0:
        return grid
    lo, hi = (finite.min(), finite.max()) if how == "minmax" else np.percentile(finite, [low_pct, high_pct])
    return np.clip((grid - lo) / max(hi - lo, 1e-12), 0, 1).astype(np.float32)


def smooth(grid: np.ndarray, sigma_cells: float) -> np.ndarray:
    """Gaussian smoothing that ignores NaN cells (normalised convolution)."""
    if sigma_cells <= 0:
        return grid
    known = np.isfinite(grid)
    num = ndimage.gaussian_filter(np.where(known, grid, 0.0), sigma_cells)
    den = ndimage.gaussian_filter(known.astype(float), sigma_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, num / den, np.nan).astype(np.float32)


def tissue_argmax(probs: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Class index per cell, -1 outside tissue or where no patch informs the cell."""
    informed = np.isfinite(probs).all(0)
    label = np.where(informed, np.nan_to_num(probs, nan=-1).argmax(0), -1)
    return np.where(tissue & informed, label, -1).astype(np.int16)


def class_area_fractions(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of the labelled tissue area per class."""
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=n_classes).astype(float)
    return counts / max(counts.sum(), 1.0)
