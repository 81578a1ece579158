"""Slide-map reconstruction on hand-made patch grids with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.heatmaps.groundtruth import dice, mask_on_cells, segmentation_scores, tumour_agreement
from core.heatmaps.localisation import MethodScores, mean_scores
from core.heatmaps.reconstruct import (
    class_area_fractions,
    normalise_per_slide,
    overlap_sums,
    reconstruct_bilinear,
    reconstruct_overlap_mean,
    smooth,
    tissue_argmax,
)

K = 4  # cells per patch


def two_class(values):
    v = np.asarray(values, float)
    return np.stack([v, 1 - v], 1)


def test_overlap_mean_without_overlap_paints_each_patch_block():
    scores = two_class([1.0, 0.0])
    cells = np.array([[0, 0], [0, 4]])
    out = reconstruct_overlap_mean(scores, cells, K, (4, 8))
    assert np.array_equal(out[0], np.hstack([np.ones((4, 4)), np.zeros((4, 4))]))
    assert np.array_equal(out[1], 1 - out[0])


def test_overlap_mean_averages_overlapping_patches_with_a_count_map():
    scores = two_class([1.0, 0.0, 0.5])  # 50 % overlap: stride 2 cells
    cells = np.array([[0, 0], [0, 2], [0, 4]])
    sums = overlap_sums(scores, cells, K, (4, 8))
    assert sums.counts[0].tolist() == [1, 1, 2, 2, 2, 2, 1, 1]
    assert sums.mean()[0, 0].tolist() == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5]


def test_overlap_mean_clips_edge_patches_and_leaves_uncovered_cells_nan():
    scores = two_class([0.2, 0.8])
    cells = np.array([[0, 0], [4, 4]])
    out = reconstruct_overlap_mean(scores, cells, K, (6, 7))  # the second patch hangs over both edges
    assert out[0, :4, :4].tolist() == [[pytest.approx(0.2)] * 4] * 4
    assert np.allclose(out[0, 4:6, 4:7], 0.8)
    assert np.isnan(out[0, 0, 5]) and np.isnan(out[0, 5, 0])


def test_bilinear_interpolates_between_patch_centres_and_holds_beyond_them():
    scores = two_class([0.0, 1.0])
    cells = np.array([[0, 0], [0, 4]])
    out = reconstruct_bilinear(scores, cells, K, stride_cells=4, shape=(4, 8))
    # Cell centres i + 0.5 against patch centres at 2 and 6.
    assert out[0, 0].tolist() == pytest.approx([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])
    assert np.allclose(out[0], out[0, :1])  # constant down the columns
    assert np.allclose(out[0] + out[1], 1)


def test_bilinear_in_two_dimensions_and_with_overlap():
    scores = two_class([0.0, 1.0, 1.0, 0.0])
    cells = np.array([[0, 0], [0, 2], [2, 0], [2, 2]])  # 50 % overlap: centres at 2 and 4
    out = reconstruct_bilinear(scores, cells, K, stride_cells=2, shape=(6, 6))
    # Cell (2, 2) has centre 2.5: a quarter of the way from centre 2 to 4 on both axes.
    expected = 0.75 * 0.75 * 0 + 0.75 * 0.25 * 1 + 0.25 * 0.75 * 1 + 0.25 * 0.25 * 0
    assert out[0, 2, 2] == pytest.approx(expected)
    assert out[0, 3, 3] == pytest.approx(0.75 * 0.25 * 2)


def test_bilinear_leaves_missing_patches_out_of_the_weights():
    scores = two_class([1.0, 0.0])
    cells = np.array([[0, 0], [0, 8]])  # the patch at cells 4..7 was skipped (no tissue)
    out = reconstruct_bilinear(scores, cells, K, stride_cells=4, shape=(4, 12))
    assert out[0, 0, :6].tolist() == pytest.approx([1.0] * 6)
    assert out[0, 0, 6:].tolist() == pytest.approx([0.0] * 6)


def test_normalisation_is_per_slide_and_keeps_nan():
    grid = np.array([[0.2, 0.4], [np.nan, 0.6]], np.float32)
    assert normalise_per_slide(grid, "raw") is grid
    mm = normalise_per_slide(grid, "minmax")
    assert mm[0].tolist() == pytest.approx([0.0, 0.5]) and mm[1, 1] == pytest.approx(1.0) and np.isnan(mm[1, 0])
    pct = normalise_per_slide(np.arange(101, dtype=np.float32).reshape(1, -1), "percentile", 10, 90)
    assert pct[0, 10] == pytest.approx(0.0) and pct[0, 50] == pytest.approx(0.5) and pct[0, 100] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        normalise_per_slide(grid, "per-patch")


def test_smoothing_ignores_missing_cells():
    grid = np.array([[1.0, 1.0, np.nan, 1.0]], np.float32)
    out = smooth(grid, 1.0)
    assert np.allclose(out[0, [0, 1, 3]], 1.0) and np.isnan(out[0, 2])


def test_tissue_masked_argmax_and_grade_percentages():
    probs = np.zeros((4, 2, 3), np.float32)
    probs[0, 0, 0] = probs[1, 0, 1] = probs[3, 0, 2] = probs[3, 1, 0] = probs[2, 1, 1] = 1
    probs[:, 1, 2] = np.nan
    tissue = np.array([[True, True, True], [True, False, True]])
    labels = tissue_argmax(probs, tissue)
    assert labels.tolist() == [[0, 1, 3], [3, -1, -1]]
    assert class_area_fractions(labels, 4).tolist() == pytest.approx([0.25, 0.25, 0.0, 0.5])


def test_segmentation_scores_on_a_hand_made_mask():
    pred = np.array([1, 1, 0, 0, 0], bool)
    true = np.array([1, 0, 0, 0, 0], bool)
    s = segmentation_scores(pred, true)
    assert s.dice == s.f1_foreground == pytest.approx(2 / 3)
    assert s.f1_background == pytest.approx(2 * 3 / (3 + 4))
    assert np.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))  # nothing to agree on: undefined, not a perfect 1.0
    ones = segmentation_scores(np.ones(5, bool), true)  # the all-ones lower bound: F1- is zero
    assert ones.f1_background == 0.0


def test_localisation_scores_count_tissue_cells_only():
    # 3 x 4 cells: the right column is glass. Truth: two tumour cells; prediction: one of them and one benign cell.
    tissue = np.array([[1, 1, 1, 0]] * 3, bool)
    true = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
    s = segmentation_scores(pred, true, within=tissue)
    assert s.f1_foreground == pytest.approx(2 * 1 / (2 + 2))
    # Background within tissue: 7 predicted negative, 7 true negative, 6 shared -> 12 / 14 (glass would add 3 + 3 + 3).
    assert s.f1_background == pytest.approx(2 * 6 / (7 + 7))
    ones = segmentation_scores(tissue, true, within=tissue)  # all-ones over tissue: every tissue cell marked
    assert ones.f1_foreground == pytest.approx(2 * 2 / (9 + 2)) and ones.f1_background == 0.0
    assert segmentation_scores(np.ones_like(true), true).f1_foreground == pytest.approx(2 * 2 / (12 + 2))  # over the grid, glass too
    assert s.predicted_fraction == pytest.approx(2 / 9) and not s.empty_truth


def test_slides_without_tumour_are_reported_apart():
    tissue = np.ones((2, 2), bool)
    benign = segmentation_scores(np.zeros((2, 2), bool), np.zeros((2, 2), bool), within=tissue)
    assert benign.empty_truth and np.isnan(benign.dice) and benign.f1_background == 1.0
    tumour = segmentation_scores(np.array([[1, 0], [0, 0]], bool), np.array([[1, 1], [0, 0]], bool), within=tissue)
    rows = [MethodScores("m", s.dice, s.f1_foreground, s.f1_background, np.zeros((2, 2), bool), s.empty_truth, s.predicted_fraction)
            for s in (benign, tumour)]
    table = mean_scores(rows)
    assert table["Dice"] == pytest.approx(2 / 3) and table["slides"] == 1  # the benign slide is not averaged in as 1.0
    assert table["benign slides"] == 1 and table["benign F1-"] == 1.0 and table["benign marked"] == 0.0


def test_tumour_agreement_resamples_the_mask_to_cells():
    labels = np.array([[0, 2], [1, 4]], np.uint8)  # 16 um per mask pixel
    tumour = np.array([[0.1, 0.1, 0.9, 0.9]] * 2 + [[0.2, 0.2, 0.7, 0.3]] * 2, np.float32)  # 8 um cells
    assert mask_on_cells(labels, 16.0, 8.0, (4, 4)).tolist() == [[0, 0, 2, 2]] * 2 + [[1, 1, 4, 4]] * 2
    s = tumour_agreement(tumour, np.ones((4, 4), bool), labels, 16.0, 8.0, threshold=0.5)
    assert s.dice == pytest.approx(2 * 6 / (6 + 8))
