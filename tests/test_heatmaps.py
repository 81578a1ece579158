"""Batched slide inference on the demo: agreement with ground truth, caching, progress and cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import select

from core.heatmaps.groundtruth import TUMOUR_LABEL_MIN, mask_on_cells, read_label_mask, tumour_agreement
from core.heatmaps.inference import InferenceCancelled
from core.heatmaps.overlay import OverlayStyle, grade_fractions, layer_grid, render_overlay_tile
from core.heatmaps.slide_heatmap import HeatmapParams, cached_heatmap, compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.store.schema import Slide
from tests.helpers import HEATMAP_DICE_OF_BOUND, perfect_patch_tumour_map


@pytest.fixture(scope="module")
def held_out_slides(workspace, held_out):
    with workspace.store.session() as s:
        return list(s.scalars(select(Slide).where(Slide.patient_id.in_(held_out)).order_by(Slide.id)))


# The heatmap is judged against what a perfect patch classifier reaches through the same patches and reconstruction
# (``perfect_patch_tumour_map``), not against a fixed score: the demo's biopsy cores are about 160 um wide and their
# tumour foci run along them, while a patch is 128 um, so even perfect patch labels mark a core's width and reach a
# mean Dice of only about 0.77 and an F1- as low as 0.77 on a biopsy slide whose tissue is 40 % tumour. On the demo,
# whose slides hold minimal pattern-4 foci and glands that annotators grade either way, the patch CNN reaches
# 0.68-0.72 of that bound's mean Dice over slides with tumour, 0.78-0.79 of its pooled Dice and 0.97-0.98 of its mean
# F1- (overlap mean and bilinear); a map shifted by one stride reaches 0.58-0.61 and 0.68-0.69, patch scores shuffled
# within a slide 0.23-0.24 and 0.34, so the mean Dice tells them apart. On an earlier, easier demo, patches read
# without the declared stain normalisation reached 0.23 of the bound and at twice or half the declared um/px
# 0.56-0.61, against 0.85-0.88 for the working pipeline. Marking all tissue scores F1- 0.
F1_BACKGROUND_OF_BOUND = 0.9
BENIGN_SLIDE_F1_BACKGROUND = 0.95  # a slide without tumour keeps nearly all its tissue unmarked (the bound keeps all)


def _pooled_dice(scores) -> float:
    """Dice over all slides' cells: each slide's Dice weighted by its predicted plus true tumour share."""
    areas = np.array([s.predicted_fraction + s.true_fraction for s in scores])
    return float((np.nan_to_num([s.dice for s in scores]) * areas).sum() / areas.sum())  # NaN only where both areas are 0


def test_heatmaps_match_the_ground_truth_on_held_out_slides(workspace, held_out_slides):
    scores: dict[tuple[str, str], list] = {}
    for slide in held_out_slides:
        heat = compute_heatmap(workspace, slide.id, "patch-cnn", HeatmapParams(overlap=0.5))
        labels = read_label_mask(workspace.slides_dir / slide.mask_file)
        true = mask_on_cells(labels, slide.mask_mpp, heat.cell_um, heat.cell_shape) >= TUMOUR_LABEL_MIN
        for method in ("overlap", "bilinear"):
            maps = {"heatmap": layer_grid(slide_layers(workspace, heat), OverlayStyle(method=method)),
                    "bound": perfect_patch_tumour_map(heat, true, method)}
            for who, tumour in maps.items():
                scores.setdefault((method, who), []).append(tumour_agreement(tumour, heat.tissue, labels, slide.mask_mpp, heat.cell_um, 0.5))
    for method in ("overlap", "bilinear"):
        heatmap, bound = scores[(method, "heatmap")], scores[(method, "bound")]
        with_tumour = [i for i, s in enumerate(bound) if not s.empty_truth]
        assert len(with_tumour) >= 4 and len(with_tumour) < len(bound)  # slides with tumour and slides without
        assert _pooled_dice(heatmap) >= HEATMAP_DICE_OF_BOUND * _pooled_dice(bound), method
        mean_dice = [np.mean([run[i].dice for i in with_tumour]) for run in (heatmap, bound)]
        assert mean_dice[0] >= HEATMAP_DICE_OF_BOUND * mean_dice[1], (method, mean_dice)
        mean_f1_background = [np.mean([s.f1_background for s in run]) for run in (heatmap, bound)]
        assert mean_f1_background[0] >= F1_BACKGROUND_OF_BOUND * mean_f1_background[1], (method, mean_f1_background)
        assert all(s.f1_background >= BENIGN_SLIDE_F1_BACKGROUND for s in heatmap if s.empty_truth), method


def test_heatmap_is_cached_and_reused(workspace, held_out_slides):
    slide = held_out_slides[0]
    params = HeatmapParams(overlap=0.0, min_tissue=0.3)
    assert cached_heatmap(workspace, slide.id, "patch-cnn", params) is None
    calls = []
    first = compute_heatmap(workspace, slide.id, "patch-cnn", params, progress=lambda d, t: calls.append((d, t)), batch_size=16)
    assert calls and calls[-1][0] == calls[-1][1] == len(first.probs)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    again = compute_heatmap(workspace, slide.id, "patch-cnn", params, progress=lambda d, t: calls.append("recomputed"))
    assert again.key == first.key and "recomputed" not in calls
    assert np.allclose(first.probs.sum(1), 1, atol=1e-4)
    assert not list((workspace.cache_dir / "heatmaps").glob("*.part"))
    fractions = grade_fractions(slide_layers(workspace, again))
    assert set(fractions) == {"benign", "GG3", "GG4", "GG5"} and sum(fractions.values()) == pytest.approx(1, abs=1e-3)


def test_cancelled_job_stores_nothing(workspace, held_out_slides):
    slide = held_out_slides[1]
    params = HeatmapParams(overlap=0.75)
    cancel = threading.Event()

    def cancel_after_first_batch(done, total):
        cancel.set()

    with pytest.raises(InferenceCancelled):
        compute_heatmap(workspace, slide.id, "patch-cnn", params, progress=cancel_after_first_batch, cancel=cancel, batch_size=8)
    assert cached_heatmap(workspace, slide.id, "patch-cnn", params) is None


def test_overlay_tiles_are_transparent_outside_tissue(workspace, held_out_slides):
    from io import BytesIO

    from PIL import Image

    heat = compute_heatmap(workspace, held_out_slides[0].id, "patch-cnn", HeatmapParams(overlap=0.5))
    max_zoom = int(np.ceil(np.log2(max(heat.slide_size))))
    tile = np.asarray(Image.open(BytesIO(render_overlay_tile(slide_layers(workspace, heat), OverlayStyle(), max_zoom - 4, 0, 0, max_zoom))))
    assert tile.shape[2] == 4 and tile[0, 0, 3] == 0  # the slide corner is background
    assert (tile[..., 3] == 255).any()  # tissue is coloured
    hot = OverlayStyle(threshold=1.0)
    hot_tile = np.asarray(Image.open(BytesIO(render_overlay_tile(slide_layers(workspace, heat), hot, max_zoom - 4, 0, 0, max_zoom))))
    assert (hot_tile[..., 3] > 0).sum() < (tile[..., 3] > 0).sum()
