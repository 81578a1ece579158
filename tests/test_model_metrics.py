"""Patient-level bootstrap intervals, operating points and the reliability curve, on hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.models.metrics import operating_point, patient_bootstrap, patient_bootstrap_replicates, reliability_curve

# Patient A: both samples right; patient B: both wrong (scores swapped).
PATIENTS = ["A", "A", "B", "B"]
LABELS = np.array([1, 0, 1, 0])
SCORES = np.array([0.9, 0.1, 0.1, 0.9])


def test_resampling_patients_keeps_a_patients_samples_together():
    """Draws of two patients: AA (p 1/4) all right, AB or BA (p 1/2) half right, BB (p 1/4) all wrong. So every
    resample's accuracy, F1 and AUC is 0, 0.5 or 1, never the 0.25 or 0.75 that resampling samples one by one gives."""
    reps = patient_bootstrap_replicates(PATIENTS, LABELS, SCORES, resamples=4000, seed=3)
    for metric in ("accuracy", "f1", "auc"):
        values = reps[metric]
        assert set(np.round(values, 6)) <= {0.0, 0.5, 1.0}, metric
        assert abs(np.mean(values == 0.5) - 0.5) < 0.03 and abs(np.mean(values == 1.0) - 0.25) < 0.03, metric


def test_interval_is_the_percentiles_of_the_resamples():
    ci = patient_bootstrap(PATIENTS, LABELS, SCORES, resamples=4000, seed=3)
    assert ci["accuracy"].estimate == 0.5 and ci["f1"].estimate == 0.5 and ci["auc"].estimate == 0.5
    assert (ci["accuracy"].low, ci["accuracy"].high) == (0.0, 1.0)  # 25 % of the mass at each end
    narrow = patient_bootstrap(PATIENTS, LABELS, SCORES, resamples=4000, seed=3, level=0.4)
    assert (narrow["accuracy"].low, narrow["accuracy"].high) == (0.5, 0.5)  # quantiles 0.3 and 0.7 fall in the middle half
    assert ci["accuracy"].resamples == 4000


def test_seeded_and_resample_count_fixed():
    rng = np.random.default_rng(0)
    patients = [f"P{i // 3}" for i in range(60)]
    labels = rng.integers(0, 2, 60)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 60), 0, 1)
    a = patient_bootstrap(patients, labels, scores, resamples=300, seed=1)
    b = patient_bootstrap(patients, labels, scores, resamples=300, seed=1)
    c = patient_bootstrap(patients, labels, scores, resamples=300, seed=2)
    assert a == b and a != c
    assert a["auc"].low <= a["auc"].estimate <= a["auc"].high


def test_auc_resamples_with_one_class_are_left_out():
    # Patient A has only positives, B only negatives: a resample drawing one of them twice has one class and no AUC.
    reps = patient_bootstrap_replicates(["A", "A", "B"], np.array([1, 1, 0]), np.array([0.8, 0.7, 0.2]), resamples=1000, seed=0)
    assert 400 < len(reps["auc"]) < 600 and len(reps["accuracy"]) == 1000  # AB or BA: probability 1/2


def test_operating_point_counts_and_rates():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.3, 0.6, 0.2, 0.1, 0.5])
    p = operating_point(labels, scores, 0.5)  # predicted positive: 0.9, 0.6, 0.6, 0.5
    assert (p.tp, p.fp, p.tn, p.fn) == (2, 2, 2, 1)
    assert (p.sensitivity, p.specificity, p.ppv, p.npv) == pytest.approx((2 / 3, 2 / 4, 2 / 4, 2 / 3))
    assert p.confusion == [[2, 2], [1, 2]]
    none = operating_point(labels, scores, 0.95)
    assert (none.tp, none.fp) == (0, 0) and math.isnan(none.ppv) and none.specificity == 1.0


def test_reliability_curve_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 1.0])
    curve = reliability_curve(labels, probs, bins=2)  # bins [0, 0.5) and [0.5, 1]
    assert curve.counts == [3, 3]
    assert curve.mean_predicted == pytest.approx([0.35 / 3, 2.8 / 3])
    assert curve.observed == pytest.approx([1 / 3, 2 / 3])
    assert curve.ece == pytest.approx(0.5 * abs(1 / 3 - 0.35 / 3) + 0.5 * abs(2 / 3 - 2.8 / 3))
    assert curve.brier == pytest.approx(np.mean((probs - labels) ** 2))


def test_fast_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from core.models.metrics import binary_metric

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.uniform(0, 1, 200), 1)  # many ties
    assert binary_metric("auc", labels, scores, 0.5) == pytest.approx(roc_auc_score(labels, scores))
    assert binary_metric("f1", labels, scores, 0.5) == pytest.approx(f1_score(labels, scores >= 0.5))
    assert binary_metric("accuracy", labels, scores, 0.5) == pytest.approx(accuracy_score(labels, scores >= 0.5))
    assert binary_metric("f1", labels, np.zeros(200), 0.5) == 0.0
