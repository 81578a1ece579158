"""Numbers inside a region, on the heatmap's cell grid (never a full-resolution mask), and annotation-based Dice.

A cell belongs to a region when its centre lies in the region (boundary included): cell (r, c) of side ``cell`` level-0
pixels has its centre at ((c + 0.5) * cell, (r + 0.5) * cell). Only the cells inside the region's bounding box are
tested. The area is exact, from the polygon itself; the other numbers use the region's cells:

- grade percentages: the share of each class among the region's labelled cells (a class map such as
  ``tissue_argmax``, -1 outside tissue or where no patch informs the cell);
- mean model score: the mean of a score grid (the viewer's tumour score, 1 - P(benign)) over the region's cells with
  a score;
- MIL attention mass: the sum over patches of the patch's attention times the share of the patch's cells inside the
  region, so a patch half inside counts half, and the whole slide's mass is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from core.errors import PathReviewError
from core.heatmaps.groundtruth import SegmentationScores, segmentation_scores
from core.heatmaps.slide_layers import SlideLayers
from core.slides.grid import CELLS_PER_PATCH


def as_geometry(geometry: dict | BaseGeometry) -> BaseGeometry:
    return geometry if isinstance(geometry, BaseGeometry) else shape(geometry)


def region_cells(geometry: dict | BaseGeometry, cell_level0: float, grid_shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: the cells whose centre lies in the region. Markers (points) cover no cell."""
    geom = as_geometry(geometry)
    mask = np.zeros(grid_shape, bool)
    if geom.is_empty or geom.area == 0:
        return mask
    xmin, ymin, xmax, ymax = geom.bounds
    c0, c1 = max(int(np.floor(xmin / cell_level0 - 0.5)), 0), min(int(np.ceil(xmax / cell_level0 - 0.5)) + 1, grid_shape[1])
    r0, r1 = max(int(np.floor(ymin / cell_level0 - 0.5)), 0), min(int(np.ceil(ymax / cell_level0 - 0.5)) + 1, grid_shape[0])
    if c0 >= c1 or r0 >= r1:
        return mask
    cols, rows = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
    shapely.prepare(geom)
    mask[r0:r1, c0:c1] = shapely.intersects_xy(geom, (cols + 0.5) * cell_level0, (rows + 0.5) * cell_level0)
    return mask


@dataclass(frozen=True)
class RegionStatistics:
    area_mm2: float  # of the polygon itself
    cells: int  # cells of the grid inside the region
    labelled_cells: int  # of those, cells with a class
    grade_fractions: dict[str, float]  # class -> share of the labelled cells (empty when none is labelled)
    mean_score: float | None  # None when no cell inside has a score
    attention_mass: float | None  # None when no attention was given


def patch_shares(inside: np.ndarray, cell_index: np.ndarray, cells_per_patch: int) -> np.ndarray:
    """(N,) share of each patch's cells (a k x k block from ``cell_index[i]``, cut at the grid's edge) inside the region."""
    inside_n = np.zeros(len(cell_index))
    total_n = np.zeros(len(cell_index))
    rows, cols = inside.shape
    for dr in range(cells_per_patch):
        for dc in range(cells_per_patch):
            r, c = cell_index[:, 0] + dr, cell_index[:, 1] + dc
            on_grid = (r < rows) & (c < cols)
            total_n += on_grid
            inside_n[on_grid] += inside[r[on_grid], c[on_grid]]
    return np.divide(inside_n, total_n, out=np.zeros_like(inside_n), where=total_n > 0)


def region_statistics(geometry: dict | BaseGeometry, cell_level0: float, mpp: float, labels: np.ndarray, class_names: Sequence[str],
                      score: np.ndarray | None = None, attention: np.ndarray | None = None, cell_index: np.ndarray | None = None,
                      cells_per_patch: int = CELLS_PER_PATCH) -> RegionStatistics:
    """The module's numbers for one region on a grid of ``labels.shape`` cells of ``cell_level0`` level-0 pixels."""
    geom = as_geometry(geometry)
    if geom.area == 0:
        raise PathReviewError("statistics need a region with an area; a point marker has none")
    inside = region_cells(geom, cell_level0, labels.shape)
    region_labels = labels[inside]
    region_labels = region_labels[region_labels >= 0]
    counts = np.bincount(region_labels, minlength=len(class_names))
    fractions = {n: float(counts[i] / counts.sum()) for i, n in enumerate(class_names)} if counts.sum() else {}
    mean_score = None
    if score is not None:
        values = score[inside]
        values = values[np.isfinite(values)]
        mean_score = float(values.mean()) if values.size else None
    mass = None
    if attention is not None:
        if cell_index is None or len(cell_index) != len(attention):
            raise ValueError("attention needs the cell index of each of its patches")
        mass = float((attention * patch_shares(inside, cell_index, cells_per_patch)).sum())
    return RegionStatistics(area_mm2=geom.area * mpp**2 / 1e6, cells=int(inside.sum()), labelled_cells=int(counts.sum()),
                            grade_fractions=fractions, mean_score=mean_score, attention_mass=mass)


def class_union(geometries: Sequence[dict | BaseGeometry]) -> BaseGeometry:
    """All regions of a class as one geometry (overlaps counted once), for the class's statistics."""
    return shapely.union_all([as_geometry(g) for g in geometries])


def annotation_agreement(tumour_regions: Sequence[dict | BaseGeometry], predicted: np.ndarray, cell_level0: float,
                         within: np.ndarray | None = None) -> SegmentationScores:
    """Dice, F1+ and F1- of a predicted tumour cell mask against a reviewer's tumour regions rasterised on the same
    grid (a cell is tumour when its centre lies in one of the regions), over the cells ``within``."""
    truth = region_cells(class_union(tumour_regions), cell_level0, predicted.shape) if tumour_regions else np.zeros(predicted.shape, bool)
    return segmentation_scores(predicted, truth, within)


def tumour_score(layers: SlideLayers, method: str = "overlap") -> np.ndarray:
    """The viewer's tumour layer: 1 - P(benign) per cell (NaN where no patch informs the cell)."""
    maps = layers.get(f"reconstruction:{method}")
    names = layers.heat.class_names
    return 1 - maps[names.index("benign") if "benign" in names else 0]


def heatmap_region_statistics(layers: SlideLayers, geometry: dict | BaseGeometry, method: str = "overlap",
                              attention: np.ndarray | None = None) -> RegionStatistics:
    """``region_statistics`` on a heatmap's layers: its class map (tissue argmax) and tumour score by ``method`` and,
    when given, the MIL attention of its patches (the ``attention`` layer's weights)."""
    heat = layers.heat
    return region_statistics(geometry, heat.cell_level0, heat.slide_mpp, layers.get(f"class-map:{method}"), heat.class_names,
                             tumour_score(layers, method), attention, heat.cell_index if attention is not None else None)


def heatmap_agreement(layers: SlideLayers, tumour_regions: Sequence[dict | BaseGeometry], method: str = "overlap",
                      threshold: float = 0.5) -> SegmentationScores:
    """The heatmap's tumour cells (score >= ``threshold``) against the regions, over tissue cells, as the mask-based
    comparison (``core.heatmaps.groundtruth.tumour_agreement``) scores them."""
    predicted = np.nan_to_num(tumour_score(layers, method), nan=0.0) >= threshold
    return annotation_agreement(tumour_regions, predicted, layers.heat.cell_level0, within=layers.heat.tissue)
