"""Maps from features: area-weighted placement on the patch-size cell grid, CLAM's percentiles and top-k, and a CLAM
head's attention and instance maps from a feature file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.features.files import FeatureFileError, FeatureSet, PatchGeometry, read_clam_h5
from core.features.maps import attention_map, instance_map, place_on_grid, predict, slide_attention_map, to_percentiles, top_k
from core.models.clam import CLAMSB
from tests.feature_files import clam_patch_attrs, write_clam

NAN = np.nan


def test_placement_by_hand():
    """Slide 1000 x 700 px, patch side 256: a 3 x 4 grid of cells."""
    coords = np.array([[0, 0], [512, 256], [512, 256], [128, 512], [384, 512]])
    values = np.array([1.0, 2.0, 4.0, 8.0, 0.0])
    grid = place_on_grid(values, coords, 256, (1000, 700))
    # (0,0): one patch. (1,2): two patches on one cell, averaged to 3. Row 2: the patch at x=128 covers half of
    # cells 0 and 1, the one at x=384 half of cells 1 and 2, so cell 1 is (0.5 * 8 + 0.5 * 0) / 1 = 4.
    expected = np.array([[1, NAN, NAN, NAN],
                         [NAN, NAN, 3, NAN],
                         [8, 4, 0, NAN]], dtype=np.float32)
    np.testing.assert_array_equal(grid.values, expected)
    np.testing.assert_array_equal(grid.coverage, [[1, 0, 0, 0], [0, 0, 2, 0], [0.5, 1, 0.5, 0]])
    assert grid.cell == 256


def test_placement_of_a_quarter_offset_patch_and_channels():
    coords = np.array([[64, 192], [256, 256]])  # the first covers 3/4 x 1/4 of cell (0,0), 3/4 x 3/4 of (1,0), ...
    values = np.array([[4.0, 1.0], [0.0, 1.0]])
    grid = place_on_grid(values, coords, 256, (512, 512))
    w11 = 0.25 * 0.75  # the first patch's share of cell (1,1), which the second patch fills
    assert grid.values.shape == (2, 2, 2)
    assert grid.values[0, 0, 0] == pytest.approx(4.0)
    assert grid.values[0, 1, 1] == pytest.approx(w11 * 4.0 / (w11 + 1.0))
    assert grid.coverage[1, 0] == pytest.approx(0.75 * 0.75)
    np.testing.assert_allclose(grid.values[1], 1.0)  # a constant channel stays constant wherever a patch lies
    np.testing.assert_array_equal(grid.values[0], place_on_grid(values[:, 0], coords, 256, (512, 512)).values)


def test_patches_past_the_last_cell_are_cut_at_the_grid():
    grid = place_on_grid(np.array([5.0]), np.array([[384, 0]]), 256, (512, 256))  # half of it lies past the slide
    np.testing.assert_array_equal(grid.values, [[NAN, 5.0]])
    np.testing.assert_array_equal(grid.coverage, [[0, 0.5]])


def test_clam_percentiles_and_top_k():
    assert to_percentiles(np.array([10.0, 30.0, 20.0, 20.0])).tolist() == [25.0, 100.0, 62.5, 62.5]
    scores = np.array([0.1, 0.5, 0.3, 0.9])
    assert top_k(scores, 2).tolist() == [3, 1]
    assert top_k(scores, 2, invert=True).tolist() == [0, 2]


def tiny_clam() -> CLAMSB:
    """Attention = tanh(x_0) * sigmoid(x_1) (x >= 0); class-1 instance score sigmoid(x_0); class 1 logit from h_0."""
    model = CLAMSB(gate=True, n_classes=2, embed_dim=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        net = model.attention_net
        net[0].weight[0, 0] = net[0].weight[1, 1] = 1.0
        net[3].attention_a[0].weight[0, 0] = 1.0
        net[3].attention_b[0].weight[0, 1] = 1.0
        net[3].attention_c.weight[0, 0] = 1.0
        model.classifiers.weight[1, 0] = 1.0
        model.instance_classifiers[1].weight[1, 0] = 1.0
    return model


def test_clam_head_maps_from_a_clam_feature_file(tmp_path):
    features = np.array([[1.0, 0.0], [2.0, 1.0], [0.5, 3.0], [0.0, 0.0]], dtype=np.float32)
    coords = np.array([[0, 0], [256, 0], [0, 256], [256, 256]])
    patches, h5, _ = write_clam(tmp_path, "s1", features, coords, clam_patch_attrs("s1", level_dim=(512, 512)))
    fs = read_clam_h5(h5, patches)
    prediction, grid = slide_attention_map(tiny_clam(), fs, (512, 512))
    raw = np.tanh(features[:, 0]) / (1 + np.exp(-features[:, 1]))
    np.testing.assert_allclose(prediction.attention_raw[0], raw, atol=1e-6)
    np.testing.assert_allclose(grid.values, raw.reshape(2, 2), atol=1e-6)
    weights = np.exp(raw) / np.exp(raw).sum()
    p1 = 1 / (1 + np.exp(-(weights @ features[:, 0])))  # softmax over logits (0, sum a_i x_i0)
    assert prediction.probabilities[1] == pytest.approx(p1, abs=1e-6) and prediction.predicted == 1
    top, bottom = prediction.top_patches(2)
    assert top.tolist() == [1, 2] and bottom.tolist() == [3, 0]
    pct = attention_map(prediction, fs, (512, 512), percentiles=True)
    np.testing.assert_array_equal(pct.values, [[50.0, 100.0], [75.0, 25.0]])
    inst = instance_map(prediction, fs, (512, 512))
    np.testing.assert_allclose(inst.values[1], (1 / (1 + np.exp(-features[:, 0]))).reshape(2, 2), atol=1e-6)
    np.testing.assert_allclose(inst.values[0], 0.5, atol=1e-6)  # class 0's instance classifier is all zero


def test_slide_map_refuses_another_encoders_features(tmp_path):
    features = np.ones((4, 3), dtype=np.float32)
    patches, h5, _ = write_clam(tmp_path, "s1", features, np.array([[0, 0], [256, 0], [0, 256], [256, 256]]))
    with pytest.raises(FeatureFileError, match="features have 3 dimensions but the model reads 2"):
        slide_attention_map(tiny_clam(), read_clam_h5(h5, patches), (512, 512))


def test_predict_matches_the_heads_forward():
    model = CLAMSB(n_classes=3, embed_dim=16).eval()
    fs = FeatureSet(np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32),
                    np.zeros((50, 2), dtype=np.int64), PatchGeometry(256, 256), "mem")
    with torch.no_grad():
        logits, raw = model(torch.from_numpy(fs.features))
    prediction = predict(model, fs)
    np.testing.assert_allclose(prediction.probabilities, torch.softmax(logits, 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(prediction.attention_raw, raw.numpy(), atol=1e-6)
    assert prediction.instance_scores is not None and prediction.instance_scores.shape == (50, 3)
