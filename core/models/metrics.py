"""Held-out test metrics: those recorded in a model's manifest, and the patient-level bootstrap, operating points and
calibration the Models page computes from stored held-out predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve


def _thin_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 200) -> tuple[list[float], list[float]]:
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(v), 5) for v in fpr], [round(float(v), 5) for v in tpr]


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5, split: str = "") -> dict:
    """AUC, F1, accuracy, ROC points and the confusion matrix of a binary score."""
    y_true = np.asarray(y_true).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    fpr, tpr, _ = roc_curve(y_true, score)
    fpr_l, tpr_l = _thin_roc(fpr, tpr)
    return {
        "auc": round(float(roc_auc_score(y_true, score)), 4),
        "f1": round(float(f1_score(y_true, pred, zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "n_test": int(len(y_true)),
        "split": split,
        "roc_fpr": fpr_l,
        "roc_tpr": tpr_l,
        "confusion": confusion_matrix(y_true, pred, labels=[0, 1]).tolist(),
    }


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray, split: str = "") -> dict:
    """Macro one-vs-rest AUC, macro F1, accuracy; the ROC is the micro-average over classes."""
    y_true = np.asarray(y_true).astype(int)
    n_classes = probs.shape[1]
    onehot = np.eye(n_classes)[y_true]
    pred = probs.argmax(1)
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    fpr_l, tpr_l = _thin_roc(fpr, tpr)
    return {
        "auc": round(float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=list(range(n_classes)))), 4),
        "f1": round(float(f1_score(y_true, pred, average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(y_true, pred)), 4),
        "n_test": int(len(y_true)),
        "split": split,
        "roc_fpr": fpr_l,
        "roc_tpr": tpr_l,
        "confusion": confusion_matrix(y_true, pred, labels=list(range(n_classes))).tolist(),
    }


# -- Patient-level uncertainty, operating points and calibration (the Models page) ------------------------------------

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
BINARY_METRICS = ("auc", "f1", "accuracy")


@dataclass(frozen=True)
class ConfidenceInterval:
    estimate: float  # on all the held-out data
    low: float
    high: float
    resamples: int  # resamples the interval is taken from (those where the metric is defined)


def rank_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count a half), the same number as scikit-learn's, at a fraction of
    its cost: the bootstrap computes it thousands of times."""
    ranks = rankdata(score)
    positive = y_true == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metric(name: str, y_true: np.ndarray, score: np.ndarray, threshold: float) -> float:
    if name == "auc":
        return rank_auc(y_true, score)
    pred = score >= threshold
    if name == "accuracy":
        return float((pred == (y_true == 1)).mean())
    tp = int((pred & (y_true == 1)).sum())
    wrong = int((pred != (y_true == 1)).sum())
    return 2 * tp / (2 * tp + wrong) if tp else 0.0  # F1 = 2 TP / (2 TP + FP + FN); 0 without true positives, as sklearn's zero_division=0


def patient_bootstrap_replicates(patients: Sequence[str], y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5,
                                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                                 metrics: Sequence[str] = BINARY_METRICS) -> dict[str, np.ndarray]:
    """Each metric on each of ``resamples`` patient resamples (see ``patient_bootstrap``); a resample with one class only
    has no AUC and adds no AUC value."""
    y_true, score = np.asarray(y_true).astype(int), np.asarray(score, dtype=float)
    ids = np.asarray(patients)
    if not len(ids) == len(y_true) == len(score) or len(ids) == 0:
        raise ValueError("patients, labels and scores must be non-empty and of one length")
    unique, owner = np.unique(ids, return_inverse=True)
    members = [np.flatnonzero(owner == i) for i in range(len(unique))]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(resamples):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        y, s = y_true[rows], score[rows]
        for m in metrics:
            if m != "auc" or len(np.unique(y)) == 2:
                values[m].append(binary_metric(m, y, s, threshold))
    return {m: np.array(v) for m, v in values.items()}


def patient_bootstrap(patients: Sequence[str], y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95,
                      metrics: Sequence[str] = BINARY_METRICS) -> dict[str, ConfidenceInterval]:
    """Percentile bootstrap intervals of AUC, F1 and accuracy that resample *patients*, not samples: each resample draws
    as many patients as there are, with replacement, and takes all the samples (slides, visits, reports) of each drawn
    patient, as often as it is drawn. Samples of one patient are not independent, so resampling them one by one would
    make the interval too narrow. The interval is the (1 - level) / 2 and (1 + level) / 2 quantiles of the resamples'
    values (numpy's linear interpolation); ``resamples`` and ``seed`` fix it exactly."""
    y_true, score = np.asarray(y_true).astype(int), np.asarray(score, dtype=float)
    replicates = patient_bootstrap_replicates(patients, y_true, score, threshold, resamples, seed, metrics)
    alpha = (1 - level) / 2
    intervals = {}
    for m in metrics:
        defined = m != "auc" or len(np.unique(y_true)) == 2
        estimate = binary_metric(m, y_true, score, threshold) if defined else float("nan")
        low, high = np.quantile(replicates[m], [alpha, 1 - alpha]) if len(replicates[m]) else (float("nan"), float("nan"))
        intervals[m] = ConfidenceInterval(estimate, float(low), float(high), len(replicates[m]))
    return intervals


@dataclass(frozen=True)
class OperatingPoint:
    """A binary score cut at a threshold (positive when score >= threshold). A rate whose denominator is empty is NaN."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @staticmethod
    def _ratio(num: int, den: int) -> float:
        return num / den if den else float("nan")

    @property
    def sensitivity(self) -> float:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self._ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return self._ratio(self.tn, self.tn + self.fn)

    @property
    def confusion(self) -> list[list[int]]:
        """Rows true (negative, positive), columns predicted, as ``binary_metrics`` records it."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def operating_point(y_true: np.ndarray, score: np.ndarray, threshold: float) -> OperatingPoint:
    y_true, pred = np.asarray(y_true).astype(bool), np.asarray(score, dtype=float) >= threshold
    return OperatingPoint(threshold, tp=int((pred & y_true).sum()), fp=int((pred & ~y_true).sum()),
                          tn=int((~pred & ~y_true).sum()), fn=int((~pred & y_true).sum()))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Equal-width bins of the predicted probability: per non-empty bin, the mean prediction, the observed share of
    positives and the count; with the Brier score and the expected calibration error (count-weighted |observed - mean|)."""

    bin_edges: list[float]
    mean_predicted: list[float]
    observed: list[float]
    counts: list[int]
    brier: float
    ece: float


def reliability_curve(y_true: np.ndarray, probability: np.ndarray, bins: int = 10) -> ReliabilityCurve:
    y_true, p = np.asarray(y_true).astype(float), np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((p * bins).astype(int), bins - 1)  # a probability of exactly 1 falls in the last bin
    mean_predicted, observed, counts = [], [], []
    ece = 0.0
    for b in range(bins):
        inside = index == b
        if not inside.any():
            continue
        mean_predicted.append(float(p[inside].mean()))
        observed.append(float(y_true[inside].mean()))
        counts.append(int(inside.sum()))
        ece += inside.sum() / len(p) * abs(observed[-1] - mean_predicted[-1])
    return ReliabilityCurve([float(e) for e in edges], mean_predicted, observed, counts, float(((p - y_true) ** 2).mean()), float(ece))
