"""Batched slide inference on the demo: agreement with ground truth, caching, progress and cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sqlalchemy import select

from core.heatmaps.groundtruth import read_label_mask, tumour_agreement
from core.heatmaps.inference import InferenceCancelled
from core.heatmaps.overlay import OverlayStyle, grade_fractions, layer_grid, render_overlay_tile
from core.heatmaps.slide_heatmap import HeatmapParams, cached_heatmap, compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.store.schema import Slide


@pytest.fixture(scope="module")
def held_out_slides(workspace, held_out):
    with workspace.store.session() as s:
        return list(s.scalars(select(Slide).where(Slide.patient_id.in_(held_out)).order_by(Slide.id)))


def test_heatmaps_match_the_ground_truth_on_held_out_slides(workspace, held_out_slides):
    intersections = totals = 0.0
    per_slide = []
    for slide in held_out_slides:
        heat = compute_heatmap(workspace, slide.id, "patch-cnn", HeatmapParams(overlap=0.5))
        for method in ("overlap", "bilinear"):
            tumour = layer_grid(slide_layers(workspace, heat), OverlayStyle(method=method))
            labels = read_label_mask(workspace.slides_dir / slide.mask_file)
            scores = tumour_agreement(tumour, heat.tissue, labels, slide.mask_mpp, heat.cell_um, 0.5)
            if method == "overlap":
                pred_area, true_area = scores.predicted_fraction, scores.true_fraction
                intersections += np.nan_to_num(scores.dice) * (pred_area + true_area)  # NaN only where both areas are 0
                totals += pred_area + true_area
                if true_area > 0:
                    per_slide.append(scores.dice)
            assert scores.f1_background > 0.9
    assert len(per_slide) >= 4
    assert intersections / totals >= 0.7  # pooled Dice over all held-out slides
    assert np.mean(per_slide) >= 0.7


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
