"""Quality control detectors on generated patches with known defects: precision and recall of each flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.manifest import StainStatistics
from core.slides.quality import FLAGS, PatchQuality, QualityAccumulator, measure_patches, stain_outlier_scores, stain_statistics
from tests.synthetic_patches import INKS, blurred, he_patch, shifted_stain, with_fold, with_pen

N_PER_KIND = 40
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def labelled_set() -> tuple[np.ndarray, np.ndarray]:
    """Clean patches and patches with one known defect each, shuffled; labels: "clean" or the flag expected."""
    rng = np.random.default_rng(21)
    inks = list(INKS)
    patches = ([(he_patch(rng), "clean") for _ in range(2 * N_PER_KIND)]
               + [(blurred(he_patch(rng), rng), "blur") for _ in range(N_PER_KIND)]
               + [(with_pen(he_patch(rng), rng, inks[k % len(inks)]), "pen") for k in range(N_PER_KIND)]
               + [(with_fold(rng), "fold") for _ in range(N_PER_KIND)])
    order = rng.permutation(len(patches))
    return np.stack([patches[i][0] for i in order]), np.array([patches[i][1] for i in order])


@pytest.mark.parametrize("flag", ["blur", "pen", "fold"])
def test_detector_precision_and_recall(labelled_set, flag):
    images, labels = labelled_set
    flagged = measure_patches(images, CPU).flags()[flag]
    truth = labels == flag
    true_positives = (flagged & truth).sum()
    precision = true_positives / max(flagged.sum(), 1)
    recall = true_positives / truth.sum()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_clean_tissue_and_glass_carry_no_flag():
    rng = np.random.default_rng(5)
    flags = measure_patches(np.stack([he_patch(rng) for _ in range(20)]), CPU).flags()
    assert not any(flags[f].any() for f in FLAGS)


def test_measures_by_hand():
    # Half the patch green ink (hue 120, saturation 0.8), half glass; a flat image has no Laplacian.
    patch = np.full((1, 16, 16, 3), 240, np.uint8)
    patch[0, :, :8] = (40, 200, 40)
    lap, pen, dark = measure_patches(patch, CPU).metrics[0]
    assert pen == pytest.approx(0.5)
    assert dark == 0.0
    # The Laplacian of a vertical step from the ink's luma to 240 lives at the two columns beside it, +/- the step.
    # Only ink is tissue, and the valid interior's ink columns are image columns 1..7: the last holds +step.
    step = 240 - (0.299 * 40 + 0.587 * 200 + 0.114 * 40)
    inner_ink_columns = 7
    values = np.zeros(inner_ink_columns)
    values[-1] = step
    assert lap == pytest.approx(values.var(), rel=1e-4)


def test_stain_outlier_score_is_the_rms_z_score():
    stats = StainStatistics(vector_means=[0.6, 0.7, 0.3, 0.1, 0.9, 0.2], vector_stds=[0.1] * 6, n_patches=10)
    vectors = np.array([[0.6, 0.7, 0.3, 0.1, 0.9, 0.2], [0.9, 0.7, 0.3, 0.1, 0.9, 0.2], [np.nan] * 6])
    scores = stain_outlier_scores(vectors, stats)
    assert scores[0] == pytest.approx(0.0)
    assert scores[1] == pytest.approx(np.sqrt(9 / 6))  # one component 3 sd away
    assert np.isnan(scores[2])
    assert np.isnan(stain_outlier_scores(vectors, None)).all()


def test_another_labs_stain_is_a_stain_outlier():
    rng = np.random.default_rng(8)
    training = measure_patches(np.stack([he_patch(rng) for _ in range(40)]), CPU)
    stats = stain_statistics(training.stain_vectors)
    same = measure_patches(np.stack([he_patch(rng) for _ in range(20)]), CPU)
    other = []
    while len(other) < 20:
        h_vec, e_vec, intensity = shifted_stain(rng)
        if np.degrees(np.arccos(np.clip(h_vec @ (training.stain_vectors[:, :3].mean(0)), -1, 1))) > 12:  # clearly another stain
            other.append(he_patch(rng, h_vector=h_vec, e_vector=e_vec, intensity=intensity))
    shifted = measure_patches(np.stack(other), CPU)
    assert same.flags(statistics=stats)["stain"].mean() <= 0.1
    assert shifted.flags(statistics=stats)["stain"].mean() >= 0.9


def test_accumulator_puts_batches_in_grid_order():
    rng = np.random.default_rng(2)
    images = np.stack([he_patch(rng, 32) for _ in range(6)])
    accumulator = QualityAccumulator(6)
    accumulator(np.array([3, 4, 5]), images[3:], CPU)
    accumulator(np.array([0, 1, 2]), images[:3], CPU)
    whole = measure_patches(images, CPU)
    result = accumulator.result()
    assert isinstance(result, PatchQuality)
    assert np.allclose(result.metrics, whole.metrics) and np.allclose(result.stain_vectors, whole.stain_vectors, equal_nan=True)
