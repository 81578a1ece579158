"""Region statistics and annotation-based Dice on hand-made cell grids, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.annotations.statistics import (
    annotation_agreement,
    class_union,
    heatmap_agreement,
    heatmap_region_statistics,
    region_cells,
    region_statistics,
)
from core.errors import PathReviewError
from core.heatmaps.slide_heatmap import HeatmapParams, SlideHeatmap
from core.heatmaps.slide_layers import SlideLayers
from core.workspace import Workspace, WorkspaceConfig

CELL = 10.0  # level-0 pixels per cell side
MPP = 0.5
NAMES = ("benign", "GG3", "GG4", "GG5")


def rect(x0: float, y0: float, x1: float, y1: float, *holes: list) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], *holes]}


# Region x 10..40, y 0..20: cell centres x 15, 25, 35 (columns 1-3) and y 5, 15 (rows 0-1) are inside; 6 cells.
REGION = rect(10, 0, 40, 20)
LABELS = np.array([[0, 1, 1, 2, -1, 0],
                   [0, 1, 3, -1, 2, 2],
                   [0, 0, 0, 0, 0, 0],
                   [0, 0, 0, 0, 0, 0]])
SCORE = np.array([[0.9, 0.2, 0.4, 0.6, 0.0, 0.0],
                  [0.9, 0.8, np.nan, 1.0, 0.0, 0.0],
                  [0.0] * 6, [0.0] * 6])


def test_cells_are_those_whose_centre_lies_in_the_region():
    inside = region_cells(REGION, CELL, LABELS.shape)
    assert np.argwhere(inside).tolist() == [[0, 1], [0, 2], [0, 3], [1, 1], [1, 2], [1, 3]]
    # A 40 x 40 square with a 20 x 20 hole: the hole holds 4 of the 16 centres.
    holed = rect(0, 0, 40, 40, [[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]])
    assert region_cells(holed, CELL, (6, 6)).sum() == 16 - 4
    assert not region_cells({"type": "Point", "coordinates": [15, 15]}, CELL, (6, 6)).any()
    assert region_cells(rect(0, 0, 100, 100), CELL, (3, 2)).all()  # cut at the grid's edge


def test_region_statistics_by_hand():
    # Patches of 2 x 2 cells: patch 0 has 2 of its 4 cells inside, patch 1 all 4, patch 2 none, patch 3 (cut at the
    # edge to 2 cells) none. Mass = 0.4 * 0.5 + 0.3 * 1 = 0.5.
    cell_index = np.array([[0, 0], [0, 2], [2, 0], [0, 5]])
    attention = np.array([0.4, 0.3, 0.2, 0.1])
    stats = region_statistics(REGION, CELL, MPP, LABELS, NAMES, SCORE, attention, cell_index, cells_per_patch=2)
    assert stats.area_mm2 == pytest.approx(30 * 20 * MPP**2 / 1e6)  # 150 µm²
    assert (stats.cells, stats.labelled_cells) == (6, 5)
    # Labelled cells inside: GG3, GG3, GG4, GG3, GG5 (one cell is -1).
    assert stats.grade_fractions == pytest.approx({"benign": 0.0, "GG3": 0.6, "GG4": 0.2, "GG5": 0.2})
    assert stats.mean_score == pytest.approx((0.2 + 0.4 + 0.6 + 0.8 + 1.0) / 5)  # the NaN cell has no score
    assert stats.attention_mass == pytest.approx(0.5)
    whole = region_statistics(rect(0, 0, 60, 40), CELL, MPP, LABELS, NAMES, None, attention, cell_index, cells_per_patch=2)
    assert whole.attention_mass == pytest.approx(1.0) and whole.mean_score is None


def test_no_labelled_cell_and_point_markers():
    empty = region_statistics(rect(40, 0, 50, 10), CELL, MPP, LABELS, NAMES)  # the one cell is -1
    assert (empty.cells, empty.labelled_cells, empty.grade_fractions) == (1, 0, {})
    with pytest.raises(PathReviewError, match="point marker"):
        region_statistics({"type": "Point", "coordinates": [5, 5]}, CELL, MPP, LABELS, NAMES)


def test_a_class_counts_overlapping_regions_once():
    union = class_union([rect(0, 0, 20, 20), rect(10, 0, 30, 20)])
    assert union.area == 600
    assert region_statistics(union, CELL, MPP, LABELS, NAMES).cells == 6


def test_annotation_dice_by_hand():
    predicted = np.zeros(LABELS.shape, bool)
    predicted[0, 0:3] = True
    predicted[1, 2] = True
    # Truth: the 6 cells of REGION. Predicted 4 cells, 3 of them in the truth: Dice = 2 * 3 / (4 + 6).
    scores = annotation_agreement([REGION], predicted, CELL)
    assert scores.dice == scores.f1_foreground == pytest.approx(0.6)
    # Background: 20 predicted, 18 true, 24 - |P or T| = 17 both: F1- = 34 / 38.
    assert scores.f1_background == pytest.approx(34 / 38)
    # Scored within rows 0-2 only (18 cells): background 14 predicted, 12 true, 11 both.
    within = np.zeros(LABELS.shape, bool)
    within[:3] = True
    scored = annotation_agreement([REGION], predicted, CELL, within)
    assert scored.f1_foreground == pytest.approx(0.6) and scored.f1_background == pytest.approx(22 / 26)
    none = annotation_agreement([], predicted, CELL)
    assert none.empty_truth and none.dice == 0.0


def _layers(tmp_path) -> SlideLayers:
    """Two 4 x 4-cell patches side by side on a 4 x 8 grid: the left benign (0.9), the right mostly GG4 (0.7). The
    reconstruction and class-map layers need no case store."""
    workspace = Workspace(tmp_path, WorkspaceConfig(name="test"), None, {})  # type: ignore[arg-type]
    return SlideLayers(workspace, SlideHeatmap(key="k", slide_id="S1", model_id="m", weights_sha256="0" * 64, params=HeatmapParams(),
                        class_names=list(NAMES), cell_level0=CELL, cell_shape=(4, 8), stride_cells=4, slide_mpp=MPP,
                        slide_size=(80, 40), origins=np.array([[0, 0], [40, 0]]), cell_index=np.array([[0, 0], [0, 4]]),
                        probs=np.array([[0.9, 0.1, 0.0, 0.0], [0.1, 0.2, 0.7, 0.0]]), tissue=np.ones((4, 8), bool)))


def test_statistics_and_dice_on_a_heatmap(tmp_path):
    heat = _layers(tmp_path)
    whole = heatmap_region_statistics(heat, rect(0, 0, 80, 40), attention=np.array([0.25, 0.75]))
    assert whole.grade_fractions == pytest.approx({"benign": 0.5, "GG3": 0.0, "GG4": 0.5, "GG5": 0.0})
    assert whole.mean_score == pytest.approx((0.1 + 0.9) / 2)  # tumour score 1 - P(benign)
    assert whole.attention_mass == pytest.approx(1.0) and whole.area_mm2 == pytest.approx(80 * 40 * MPP**2 / 1e6)
    right = heatmap_region_statistics(heat, rect(40, 0, 80, 40), attention=np.array([0.25, 0.75]))
    assert right.grade_fractions["GG4"] == 1.0 and right.attention_mass == pytest.approx(0.75)
    # The reviewer outlines the right half and one column more: 20 true cells, 16 predicted, all inside.
    scores = heatmap_agreement(heat, [rect(30, 0, 80, 40)])
    assert scores.dice == pytest.approx(2 * 16 / (16 + 20)) and not math.isnan(scores.f1_background)
